// Shape checks for single attribute values. Each returns undefined when the
// value is fine, or a phrase saying what is wrong and what is allowed, ready
// to be put after the value in an issue message; groupId parses a group id.

import { isIP } from 'node:net'
import { FS_GROUP_MAX } from './attributes.js'

const DNS_LABEL = /^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/
const DNS1123_LABEL = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/
const QUALIFIED_NAME = /^[A-Za-z0-9](?:[A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?$/
const KIND = /^[A-Z][A-Za-z0-9]{0,62}$/
const URI_SCHEME = /^[A-Za-z][A-Za-z0-9+.-]*:/
// C0 controls and DEL have no business in names or certificate subjects.
const CONTROL = /[\u0000-\u001f\u007f]/

/** A group id in decimal, 0 to 2^31 - 1 (no sign, no leading zeros), or undefined. */
export function groupId(text: string): number | undefined {
  const n = /^(0|[1-9][0-9]{0,9})$/.test(text) ? Number(text) : NaN
  return n <= FS_GROUP_MAX ? n : undefined
}

/** A DNS SAN: letters, digits and '-' in labels of 1–63, 253 in all, optionally "*." first. */
export function checkDnsName(name: string): string | undefined {
  const bare = name.startsWith('*.') ? name.slice(2) : name
  if (name.length > 253) return 'is longer than 253 characters'
  const labels = bare.split('.')
  if (labels.some((l) => l === '*')) return 'may only use "*" as the whole first label ("*.example.com")'
  if (labels.some((l) => !DNS_LABEL.test(l))) {
    return 'is not a DNS name: dot-separated labels of 1–63 letters, digits and "-", not starting or ending with "-", optionally preceded by "*."'
  }
  return undefined
}

/** Kubernetes DNS-1123 subdomain: object names, API groups, annotation prefixes. */
export function checkDns1123Subdomain(value: string): string | undefined {
  if (value.length > 253) return 'is longer than 253 characters'
  if (!value.split('.').every((l) => DNS1123_LABEL.test(l))) {
    return 'is not a DNS-1123 subdomain: lower-case letters, digits, "-" and ".", starting and ending with a letter or digit'
  }
  return undefined
}

/** A Kubernetes kind: CamelCase, starting with an upper-case letter. */
export function checkKind(value: string): string | undefined {
  return KIND.test(value) ? undefined : 'is not a kind: a CamelCase name of letters and digits starting with an upper-case letter (e.g. "Issuer", "ClusterIssuer"), at most 63 characters'
}

/** IPv4 or IPv6 address literal, no zone (a SAN cannot carry one), no CIDR. */
export function checkIpAddress(value: string): string | undefined {
  return isIP(value) !== 0 && !value.includes('%') ? undefined : 'is not an IPv4 or IPv6 address'
}

/** An absolute URI with a scheme, as a URI SAN requires (e.g. spiffe://cluster.local/ns/a/sa/b). */
export function checkUri(value: string): string | undefined {
  // URL() silently drops surrounding spaces and inner tabs/newlines: refuse them first.
  if (/\s/.test(value) || CONTROL.test(value)) return 'is not a URI: it contains whitespace or control characters'
  if (!URI_SCHEME.test(value)) return 'is not an absolute URI: it needs a scheme such as "spiffe://" or "https://"'
  try {
    new URL(value)
  } catch {
    return 'is not a valid absolute URI'
  }
  return undefined
}

/** Sanity check only: one "@", a non-empty local part without spaces, and a DNS domain. */
export function checkEmail(value: string): string | undefined {
  const at = value.lastIndexOf('@')
  const local = value.slice(0, at)
  const domain = value.slice(at + 1)
  if (at <= 0 || local.includes('@') || /[\s<>()\[\],;:"\\]/.test(local) || CONTROL.test(local)) {
    return 'is not an email address of the form local@domain'
  }
  return checkDnsName(domain) === undefined && !domain.startsWith('*.') ? undefined : 'is not an email address: its domain is not a DNS name'
}

/**
 * A bare file name inside the volume. Names starting with "." are refused
 * because the driver keeps its own dot-files next to the user's files.
 */
export function checkFileName(value: string): string | undefined {
  if (value === '') return 'is empty'
  if (Buffer.byteLength(value, 'utf8') > 255) return 'is longer than 255 bytes'
  if (value.includes('/') || value.includes('\0')) return 'must be a bare file name without "/" or NUL'
  if (value.startsWith('.')) return 'must not start with "." (".", ".." and dot-files are reserved)'
  return undefined
}

/**
 * A Kubernetes annotation key with the mandatory prefix: "prefix/name" where
 * prefix is a DNS-1123 subdomain and name is at most 63 characters.
 */
export function checkAnnotationKey(key: string): string | undefined {
  const parts = key.split('/')
  if (parts.length !== 2) return 'is not of the form prefix/name (e.g. "example.com/team")'
  const [prefix = '', name = ''] = parts
  if (prefix === '') return 'has an empty prefix'
  const prefixProblem = checkDns1123Subdomain(prefix)
  if (prefixProblem) return `has a prefix that ${prefixProblem}`
  if (!QUALIFIED_NAME.test(name)) {
    return 'has a name part that is not 1–63 characters of letters, digits, "-", "_" and ".", starting and ending with a letter or digit'
  }
  return undefined
}

/** Free-text subject values (organization, locality...). */
export function checkSubjectValue(value: string): string | undefined {
  return CONTROL.test(value) ? 'contains control characters' : undefined
}

/** X.520 countryName is a two-letter ISO 3166 code. */
export function checkCountry(value: string): string | undefined {
  return /^[A-Za-z]{2}$/.test(value) ? undefined : 'is not a two-letter ISO 3166 country code (e.g. "US", "DE")'
}

/** X.520 serialNumber is a PrintableString of at most 64 characters. */
export function checkSerialNumber(value: string): string | undefined {
  if (value.length > 64) return 'is longer than 64 characters'
  return isPrintableString(value) ? undefined : 'may only contain letters, digits, space and \' ( ) + , - . / : = ?'
}

/** The ASN.1 PrintableString alphabet. */
export function isPrintableString(value: string): boolean {
  return /^[A-Za-z0-9 '()+,\-./:=?]*$/.test(value)
}

/** Levenshtein distance, for "did you mean" suggestions on short keys. */
export function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j)
  for (let i = 1; i <= a.length; i++) {
    const row = [i]
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1
      row.push(Math.min(prev[j]! + 1, row[j - 1]! + 1, prev[j - 1]! + cost))
    }
    prev = row
  }
  return prev[b.length]!
}

/**
 * What makes a password unusable for a keystore, or undefined. The attribute
 * parser asks this too, so a bad password is refused at publish, not after
 * issuance. A lone surrogate has no UTF-8 form (TextEncoder would turn it
 * into U+FFFD, so two different passwords would open the same keystore), and
 * OpenSSL's command line and C API end passwords at the first NUL.
 */
export function keystorePasswordProblem(password: string): string | undefined {
  if (!isWellFormed(password)) return 'is not well-formed UTF-16'
  if (password.includes('\0')) return 'contains a NUL character, which OpenSSL and Java read as the end of the password'
  return undefined
}

/** No lone surrogates (String.prototype.isWellFormed is ES2024, not in this lib). */
export function isWellFormed(s: string): boolean {
  return Buffer.from(s, 'utf8').toString('utf8') === s
}
