// Reading raw attribute values for spec.ts: presence, emptiness, pod
// variables, comma lists and booleans, each problem recorded as an issue so
// the caller can carry on and report everything in one go.

import type { AttributeIssue, PodInfo } from './types.js'
import { IssueCode, POD_VARIABLES } from './attributes.js'
import { LIMITS } from './limits.js'

/** Parsing state: the input and the issues found so far. */
export interface Reader {
  readonly attributes: Readonly<Record<string, string>>
  readonly pod: PodInfo
  readonly issues: AttributeIssue[]
}

/**
 * A read value: undefined when the attribute is absent (apply the default),
 * null when present but unusable (already reported: skip checks that depend
 * on it, so one mistake is not reported three times).
 */
export type Read<T> = T | undefined | null

export function report(r: Reader, attribute: string, code: IssueCode, message: string): void {
  r.issues.push({ attribute, code, message })
}

export function has(r: Reader, key: string): boolean {
  return Object.hasOwn(r.attributes, key)
}

export { quote } from './quote.js'
import { quote } from './quote.js'

interface ScalarOptions {
  /** Expand ${POD_NAME} and friends. */
  expand?: boolean
  /** Keep surrounding whitespace (passwords, RFC 4514 escapes like "CN=a\ "). */
  raw?: boolean
}

/** A single value; whitespace-only counts as empty, which is an issue, not "absent". */
export function scalar(r: Reader, key: string, options: ScalarOptions = {}): Read<string> {
  if (!has(r, key)) return undefined
  const given = r.attributes[key]!
  if (given.trim() === '') {
    report(r, key, IssueCode.emptyValue, 'is empty; remove the attribute to use the default, or give a value')
    return null
  }
  const value = options.raw ? given : given.trim()
  return options.expand ? expand(r, key, value) : value
}

/**
 * A comma-separated list: items trimmed, empty items and duplicates are
 * issues. `identity` maps an item to what makes two items the same.
 */
export function list(
  r: Reader,
  key: string,
  options: { expand?: boolean; identity?: (item: string) => string } = {},
): Read<string[]> {
  const value = scalar(r, key, { expand: options.expand })
  if (value === undefined || value === null) return value
  const items = value.split(',').map((item) => item.trim())
  if (items.length > LIMITS.listItems) {
    report(r, key, IssueCode.limitExceeded, `lists ${items.length} items; at most ${LIMITS.listItems} are allowed`)
    return null
  }
  let ok = true
  items.forEach((item, index) => {
    if (item === '') {
      report(r, key, IssueCode.emptyItem, `item ${index + 1} of ${quote(value)} is empty; separate items with single commas`)
      ok = false
    }
  })
  const seen = new Set<string>()
  for (const item of items) {
    if (item === '') continue
    const id = options.identity ? options.identity(item) : item
    if (seen.has(id)) {
      report(r, key, IssueCode.duplicateItem, `${quote(item)} is listed more than once`)
      ok = false
    }
    seen.add(id)
  }
  return ok ? items : null
}

/** Exactly "true" or "false", any case: "yes", "1" and "on" are mistakes, not booleans. */
export function bool(r: Reader, key: string, fallback: boolean): Read<boolean> {
  const value = scalar(r, key)
  if (value === undefined || value === null) return value === undefined ? fallback : null
  const lower = value.toLowerCase()
  if (lower === 'true') return true
  if (lower === 'false') return false
  report(r, key, IssueCode.invalidBoolean, `${quote(value)} is not a boolean: use "true" or "false"`)
  return null
}

const KNOWN_VARIABLES = POD_VARIABLES.map((v) => `\${${v}}`).join(', ')

/**
 * Replaces ${POD_NAME}, ${POD_NAMESPACE}, ${POD_UID} and
 * ${SERVICE_ACCOUNT_NAME}. Only the braced form is a variable, so a "$" in a
 * subject stays literal; a bare "$POD_NAME" (which Go's os.Expand, used by
 * cert-manager's own driver, would expand) is reported rather than kept.
 */
export function expand(r: Reader, key: string, value: string): Read<string> {
  const values: Record<(typeof POD_VARIABLES)[number], string> = {
    POD_NAME: r.pod.name,
    POD_NAMESPACE: r.pod.namespace,
    POD_UID: r.pod.uid,
    SERVICE_ACCOUNT_NAME: r.pod.serviceAccountName,
  }
  let ok = true
  const bare = /\$([A-Za-z_][A-Za-z0-9_]*)/g
  for (const m of value.matchAll(bare)) {
    if ((POD_VARIABLES as readonly string[]).includes(m[1]!)) {
      report(r, key, IssueCode.unbracedVariable, `$${m[1]} is not expanded: write \${${m[1]}}`)
      ok = false
    }
  }
  // A scanner, not a regex: each character is looked at a bounded number of
  // times, whatever a pod author puts in (a backtracking /\$\{[^}]*$/ on
  // 300 KB of "${" took 80 s).
  let out = ''
  for (let at = 0; ;) {
    const open = value.indexOf('${', at)
    if (open === -1) {
      out += value.slice(at)
      break
    }
    const close = value.indexOf('}', open + 2)
    if (close === -1) {
      report(r, key, IssueCode.unterminatedVariable, `${quote(value)} has a "\${" without its closing "}"`)
      return null
    }
    const name = value.slice(open + 2, close)
    out += value.slice(at, open)
    at = close + 1
    if (!Object.hasOwn(values, name)) {
      report(r, key, IssueCode.unknownVariable, `unknown variable \${${name.length > 40 ? `${name.slice(0, 40)}…` : name}}; known variables: ${KNOWN_VARIABLES}`)
      ok = false
      continue
    }
    const replacement = values[name as keyof typeof values]
    if (replacement === '') {
      report(r, key, IssueCode.emptyVariable, `variable \${${name}} is empty for this pod (the CSIDriver needs podInfoOnMount: true)`)
      ok = false
    }
    out += replacement
  }
  return ok ? out : null
}
