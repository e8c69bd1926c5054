// Size limits on a volume's attributes, checked before anything is parsed:
// a pod author controls every byte of them, and one huge value must not cost
// the node's driver more than a bounded, linear amount of work. Chosen from
// real use, each well above it; the README's attribute table lists them.
import type { AttributeIssue } from './types.js'
import { IssueCode } from './attributes.js'

export const LIMITS = {
  /** A Kubernetes annotation key at its longest: a 253-character prefix, "/", a 63-character name. */
  keyLength: 317,
  /** 16 KiB: a hundred 63-character DNS names, or a long literal subject, fit many times over. */
  valueLength: 16 * 1024,
  /** Keys and values together: a quarter of what Kubernetes allows a CertificateRequest's annotations (256 KiB). */
  totalLength: 64 * 1024,
  /** Our 20-odd attributes plus room for annotations passed through. */
  attributes: 128,
  /** Items in one SAN or subject list: Let's Encrypt signs at most 100 names per certificate. */
  listItems: 100,
} as const

/**
 * Every limit the attributes break, one issue each, naming the attribute and
 * the limit; no issue when within all of them. Linear in the input.
 */
export function checkLimits(attributes: Readonly<Record<string, string>>): AttributeIssue[] {
  const issues: AttributeIssue[] = []
  const keys = Object.keys(attributes)
  if (keys.length > LIMITS.attributes) {
    issues.push({ attribute: '(volume attributes)', code: IssueCode.limitExceeded, message: `${keys.length} attributes given; at most ${LIMITS.attributes} are allowed` })
  }
  let total = 0
  for (const key of keys) {
    const value = attributes[key]!
    total += key.length + value.length
    if (key.length > LIMITS.keyLength) {
      issues.push({ attribute: `${key.slice(0, 64)}…`, code: IssueCode.limitExceeded, message: `the key is ${key.length} characters long; at most ${LIMITS.keyLength} are allowed` })
    } else if (value.length > LIMITS.valueLength) {
      issues.push({ attribute: key, code: IssueCode.limitExceeded, message: `the value is ${value.length} characters long; at most ${LIMITS.valueLength} are allowed` })
    }
  }
  // One value over its own limit says enough; the total is news only when each is within.
  if (total > LIMITS.totalLength && issues.length === 0) {
    issues.push({ attribute: '(volume attributes)', code: IssueCode.limitExceeded, message: `keys and values total ${total} characters; at most ${LIMITS.totalLength} are allowed` })
  }
  return issues.slice(0, 20)
}
