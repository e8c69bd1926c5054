// Volume attributes → VolumeSpec: defaults applied, every issue collected
// (not just the first), each naming its attribute with a stable code. Pure:
// the CSI edge turns issues into InvalidArgument, nothing here does I/O.

import type { KeyAlgorithm, KeyEncoding, KeySpec, ParseResult, Pkcs12Spec, PodInfo, Subject, VolumeSpec } from './types.js'
import * as A from './attributes.js'
import { IssueCode } from './attributes.js'
import { formatDuration, parseDuration } from './duration.js'
import { type Read, type Reader, bool, has, list, quote, report, scalar } from './reader.js'
import * as shape from './shapes.js'
import { checkLimits } from './limits.js'
import { commonNames, parseRfc4514 } from './dn.js'

export interface ParseOptions {
  /**
   * Prefixes (the part of a key before "/") whose attributes may become
   * CertificateRequest annotations: the node's --annotation-prefixes. '*'
   * passes any, which is what records already accepted are parsed with.
   */
  annotationPrefixes: readonly string[] | '*'
  /**
   * The pod's fsGroup as the kubelet passed it (volume_mount_group, with
   * the CSIDriver's fsGroupPolicy File): the files' group when fs-group is
   * not set. Checked by the CSI edge.
   */
  mountGroup?: number
}

export function parseVolumeAttributes(attributes: Record<string, string>, pod: PodInfo, options: ParseOptions = { annotationPrefixes: '*' }): ParseResult {
  // Too large to be worth reading: say so and read nothing more.
  const tooLarge = checkLimits(attributes)
  if (tooLarge.length > 0) return { ok: false, issues: tooLarge }
  const r: Reader = { attributes, pod, issues: [] }
  const annotations = readKeys(r, options.annotationPrefixes)
  const issuer = readIssuer(r)
  const { durationMs, renewBeforeMs } = readLifetime(r)
  const key = readKey(r)
  const usages = readUsages(r)
  const sans = readSans(r)
  const subject = readSubject(r)
  requireIdentity(r, subject)
  const isCA = bool(r, A.IS_CA, A.DEFAULTS.isCA)
  const disableAutoRenew = bool(r, A.DISABLE_AUTO_RENEW, A.DEFAULTS.disableAutoRenew)
  const reusePrivateKey = bool(r, A.REUSE_PRIVATE_KEY, A.DEFAULTS.reusePrivateKey)
  const pkcs12 = readPkcs12(r)
  const files = readFiles(r, pkcs12.filename)
  const fsGroup = readFsGroup(r)

  if (r.issues.length > 0) return { ok: false, issues: r.issues }
  // With no issues every read above returned a value; the casts only tell the compiler so.
  const spec: VolumeSpec = {
    issuer: issuer as VolumeSpec['issuer'],
    subject: subject as Subject,
    ...(sans as Sans),
    usages: usages as string[],
    durationMs: durationMs as number,
    isCA: isCA as boolean,
    key: key as KeySpec,
    files: files as VolumeSpec['files'],
    reusePrivateKey: reusePrivateKey as boolean,
    disableAutoRenew: disableAutoRenew as boolean,
    annotations,
  }
  if (typeof renewBeforeMs === 'number') spec.renewBeforeMs = renewBeforeMs
  if (pkcs12.spec) spec.pkcs12 = pkcs12.spec
  // The attribute, when set, wins: it is what the pod author wrote for this volume.
  if (typeof fsGroup === 'number') spec.fsGroup = fsGroup
  else if (options.mountGroup !== undefined) spec.fsGroup = options.mountGroup
  return { ok: true, spec }
}

/**
 * Sorts every key: ours (must be known), the kubelet's (dropped: they include
 * service account tokens, which must never reach an annotation), and the
 * rest, which become CertificateRequest annotations.
 */
function readKeys(r: Reader, allowed: ParseOptions['annotationPrefixes']): Record<string, string> {
  const annotations: Record<string, string> = {}
  for (const [key, value] of Object.entries(r.attributes)) {
    if (key.startsWith(A.ATTRIBUTE_PREFIX)) {
      if (!A.KNOWN_ATTRIBUTES.includes(key)) report(r, key, IssueCode.unknownAttribute, `unknown attribute${suggestion(key)}`)
      continue
    }
    if (key.startsWith(A.KUBELET_PREFIX)) continue
    const problem = shape.checkAnnotationKey(key)
    if (problem) {
      report(r, key, IssueCode.invalidAttributeKey, `${problem}: attributes outside ${A.ATTRIBUTE_PREFIX} become CertificateRequest annotations and need a valid prefix/name key${suggestion(key)}`)
      continue
    }
    // A near miss of our prefix is a typo, not an annotation anyone wants.
    if (nearOurPrefix(key.slice(0, key.indexOf('/') + 1))) {
      report(r, key, IssueCode.unknownAttribute, `unknown attribute: the prefix looks like a misspelled ${A.ATTRIBUTE_PREFIX}${suggestion(key)}`)
      continue
    }
    // Issuers and approvers may trust annotations: only the node's admin opens a prefix to pod authors.
    const prefix = key.slice(0, key.indexOf('/'))
    if (allowed !== '*' && !allowed.includes(prefix)) {
      const list = allowed.length === 0 ? 'none' : allowed.join(',')
      report(r, key, IssueCode.annotationNotAllowed, `would become a CertificateRequest annotation, but this node's driver passes on no annotations with prefix ${JSON.stringify(prefix)} (--annotation-prefixes: ${list}); remove the attribute or ask the cluster admin to allow the prefix`)
      continue
    }
    annotations[key] = value
  }
  return annotations
}

/** Within two edits of our prefix; lengths further apart than that cannot be, and cost nothing to rule out. */
function nearOurPrefix(prefix: string): boolean {
  return Math.abs(prefix.length - A.ATTRIBUTE_PREFIX.length) <= 2 && shape.editDistance(prefix, A.ATTRIBUTE_PREFIX) <= 2
}

const SUGGEST_MAX_KEY = Math.max(...A.KNOWN_ATTRIBUTES.map(k => k.length)) + 2

/** `; did you mean "…"?` for the closest known key within edit distance 2, else "". */
function suggestion(key: string): string {
  // Edit distance costs the product of the lengths: a long key is no typo of ours.
  if (key.length > SUGGEST_MAX_KEY) return ''
  const slash = key.lastIndexOf('/')
  const name = key.slice(slash + 1)
  // A bare "dns-names" or a misspelled prefix: compare the name parts too.
  const compareNames = slash === -1 || nearOurPrefix(key.slice(0, slash + 1))
  let best: string | undefined
  let bestDistance = 3
  for (const known of A.KNOWN_ATTRIBUTES) {
    let distance = shape.editDistance(key, known)
    if (compareNames) distance = Math.min(distance, shape.editDistance(name, known.slice(A.ATTRIBUTE_PREFIX.length)))
    if (distance < bestDistance) {
      best = known
      bestDistance = distance
    }
  }
  return best === undefined ? '' : `; did you mean ${JSON.stringify(best)}?`
}

/** A scalar, or the default when absent; null when present but unusable. */
function withDefault(r: Reader, key: string, fallback: string): Read<string> {
  const value = scalar(r, key)
  return value === undefined ? fallback : value
}

/** Runs a shape check on a read value; true when the value is absent or passes. */
function check(r: Reader, key: string, value: Read<string>, fn: (v: string) => string | undefined, code: IssueCode): boolean {
  if (value === undefined || value === null) return value === undefined
  const problem = fn(value)
  if (problem) report(r, key, code, `${quote(value)} ${problem}`)
  return problem === undefined
}

function checkEach(r: Reader, key: string, values: Read<string[]>, fn: (v: string) => string | undefined, code: IssueCode): Read<string[]> {
  if (values === undefined || values === null) return values
  const ok = values.map((v) => check(r, key, v, fn, code)).every(Boolean)
  return ok ? values : null
}

function readIssuer(r: Reader): Read<VolumeSpec['issuer']> {
  const name = scalar(r, A.ISSUER_NAME)
  if (name === undefined) report(r, A.ISSUER_NAME, IssueCode.required, 'is required: the name of the Issuer or ClusterIssuer that signs the request')
  const kind = withDefault(r, A.ISSUER_KIND, A.DEFAULTS.issuerKind)
  const group = withDefault(r, A.ISSUER_GROUP, A.DEFAULTS.issuerGroup)
  const ok = [
    check(r, A.ISSUER_NAME, name, shape.checkDns1123Subdomain, IssueCode.invalidIssuerName),
    check(r, A.ISSUER_KIND, kind, shape.checkKind, IssueCode.invalidIssuerKind),
    check(r, A.ISSUER_GROUP, group, shape.checkDns1123Subdomain, IssueCode.invalidIssuerGroup),
  ].every(Boolean)
  return ok && name && kind && group ? { name, kind, group } : null
}

function readLifetime(r: Reader): { durationMs: Read<number>; renewBeforeMs: Read<number> } {
  const durationMs = readDuration(r)
  const text = scalar(r, A.RENEW_BEFORE)
  if (text === undefined || text === null) return { durationMs, renewBeforeMs: text }
  const renew = parseDuration(text)
  if (!renew.ok) {
    report(r, A.RENEW_BEFORE, IssueCode.invalidDuration, renew.reason)
    return { durationMs, renewBeforeMs: null }
  }
  const known = typeof durationMs === 'number'
  if (renew.ms <= 0 || (known && renew.ms >= durationMs)) {
    const limit = known ? ` (${formatDuration(durationMs)})` : ''
    report(r, A.RENEW_BEFORE, IssueCode.invalidRenewBefore, `${quote(text)} must be more than 0 and less than the duration${limit}; leave it out to renew when a third of the lifetime is left`)
    return { durationMs, renewBeforeMs: null }
  }
  return { durationMs, renewBeforeMs: renew.ms }
}

function readDuration(r: Reader): Read<number> {
  const text = scalar(r, A.DURATION)
  if (text === null) return null
  const parsed = parseDuration(text ?? A.DEFAULTS.duration)
  if (!parsed.ok) {
    report(r, A.DURATION, IssueCode.invalidDuration, parsed.reason)
    return null
  }
  if (parsed.ms < A.MIN_DURATION_MS) {
    report(r, A.DURATION, IssueCode.durationTooShort, `${quote(text ?? '')} is shorter than the minimum of ${formatDuration(A.MIN_DURATION_MS)} (default ${A.DEFAULTS.duration})`)
    return null
  }
  return parsed.ms
}

const ALGORITHMS: Readonly<Record<string, KeyAlgorithm>> = { rsa: 'RSA', ecdsa: 'ECDSA', ed25519: 'Ed25519' }
const ENCODINGS: Readonly<Record<string, KeyEncoding>> = { pkcs1: 'PKCS1', pkcs8: 'PKCS8' }

function readKey(r: Reader): Read<KeySpec> {
  const algorithm = readAlgorithm(r)
  const size = readKeySize(r, algorithm)
  const encoding = readKeyEncoding(r, algorithm)
  return algorithm && size !== null && encoding ? { algorithm, size, encoding } : null
}

function readAlgorithm(r: Reader): KeyAlgorithm | null {
  const text = scalar(r, A.KEY_ALGORITHM)
  if (text === undefined) return A.DEFAULTS.keyAlgorithm
  if (text === null) return null
  const algorithm = Object.hasOwn(ALGORITHMS, text.toLowerCase()) ? ALGORITHMS[text.toLowerCase()] : undefined
  if (algorithm) return algorithm
  report(r, A.KEY_ALGORITHM, IssueCode.invalidKeyAlgorithm, `${quote(text)} is not a key algorithm: use RSA, ECDSA or Ed25519 (default ${A.DEFAULTS.keyAlgorithm})`)
  return null
}

/** Bits for RSA, the curve size for ECDSA, 0 for Ed25519. */
function readKeySize(r: Reader, algorithm: KeyAlgorithm | null): number | null {
  const text = scalar(r, A.KEY_SIZE)
  if (text === undefined) return algorithm === 'ECDSA' ? A.DEFAULTS.ecdsaKeySize : algorithm === 'Ed25519' ? 0 : A.DEFAULTS.rsaKeySize
  if (text === null) return null
  if (algorithm === 'Ed25519') {
    report(r, A.KEY_SIZE, IssueCode.invalidKeySize, 'must not be set for Ed25519 keys, which have one fixed size')
    return null
  }
  const n = /^[1-9][0-9]{0,5}$/.test(text) ? Number(text) : NaN
  const valid = algorithm === 'ECDSA' ? A.ECDSA_SIZES.includes(n) : n >= A.RSA_MIN_BITS && n <= A.RSA_MAX_BITS
  // With an invalid algorithm only the number itself can be checked.
  if (algorithm === null ? !Number.isNaN(n) : valid) return n
  const rule = algorithm === 'ECDSA'
    ? `ECDSA sizes are ${A.ECDSA_SIZES.join(', ')} (default ${A.DEFAULTS.ecdsaKeySize})`
    : `RSA sizes are ${A.RSA_MIN_BITS} to ${A.RSA_MAX_BITS} bits (default ${A.DEFAULTS.rsaKeySize})`
  report(r, A.KEY_SIZE, IssueCode.invalidKeySize, `${quote(text)} is not a valid key size: ${rule}`)
  return null
}

function readKeyEncoding(r: Reader, algorithm: KeyAlgorithm | null): KeyEncoding | null {
  const text = scalar(r, A.KEY_ENCODING)
  if (text === undefined) return algorithm === 'Ed25519' ? A.DEFAULTS.ed25519KeyEncoding : A.DEFAULTS.keyEncoding
  if (text === null) return null
  const encoding = Object.hasOwn(ENCODINGS, text.toLowerCase()) ? ENCODINGS[text.toLowerCase()] : undefined
  if (!encoding) {
    report(r, A.KEY_ENCODING, IssueCode.invalidKeyEncoding, `${quote(text)} is not a key encoding: use PKCS1 or PKCS8 (default PKCS1, PKCS8 for Ed25519)`)
    return null
  }
  if (encoding === 'PKCS1' && algorithm === 'Ed25519') {
    report(r, A.KEY_ENCODING, IssueCode.invalidKeyEncoding, 'PKCS1 has no form for Ed25519 keys (it covers RSA, and EC keys as SEC1): use PKCS8')
    return null
  }
  return encoding
}

function readUsages(r: Reader): Read<string[]> {
  // "signing" and "digital signature" are one usage to cert-manager: listing both is a duplicate.
  const meaning = (u: string) => {
    const lower = u.toLowerCase()
    return Object.hasOwn(A.KEY_USAGE_SYNONYMS, lower) ? A.KEY_USAGE_SYNONYMS[lower]! : lower
  }
  const given = list(r, A.KEY_USAGES, { identity: meaning })
  if (given === null) return null
  if (given === undefined) return [...A.DEFAULTS.keyUsages]
  const usages = given.map((u) => u.toLowerCase())
  const unknown = usages.filter((u) => !A.KEY_USAGE_NAMES.includes(u))
  for (const u of unknown) {
    report(r, A.KEY_USAGES, IssueCode.invalidKeyUsage, `${quote(u)} is not a cert-manager key usage; use any of: ${A.KEY_USAGE_NAMES.join(', ')}`)
  }
  return unknown.length === 0 ? usages : null
}

type Sans = Pick<VolumeSpec, 'dnsNames' | 'ipAddresses' | 'uris' | 'emailAddresses'>

function readSans(r: Reader): Read<Sans> {
  const lower = (s: string) => s.toLowerCase()
  const dnsNames = checkEach(r, A.DNS_NAMES, list(r, A.DNS_NAMES, { expand: true, identity: lower }), shape.checkDnsName, IssueCode.invalidDnsName)
  const ipAddresses = checkEach(r, A.IP_SANS, list(r, A.IP_SANS, { expand: true, identity: lower }), shape.checkIpAddress, IssueCode.invalidIpAddress)
  const uris = checkEach(r, A.URI_SANS, list(r, A.URI_SANS, { expand: true }), shape.checkUri, IssueCode.invalidUri)
  const emailAddresses = checkEach(r, A.EMAIL_SANS, list(r, A.EMAIL_SANS, { expand: true }), shape.checkEmail, IssueCode.invalidEmail)
  if (dnsNames === null || ipAddresses === null || uris === null || emailAddresses === null) return null
  return { dnsNames: dnsNames ?? [], ipAddresses: ipAddresses ?? [], uris: uris ?? [], emailAddresses: emailAddresses ?? [] }
}

const SUBJECT_LISTS = [
  [A.ORGANIZATIONS, 'organizations'],
  [A.ORGANIZATIONAL_UNITS, 'organizationalUnits'],
  [A.COUNTRIES, 'countries'],
  [A.PROVINCES, 'provinces'],
  [A.LOCALITIES, 'localities'],
  [A.STREET_ADDRESSES, 'streetAddresses'],
  [A.POSTAL_CODES, 'postalCodes'],
] as const

function emptySubject(): Subject {
  return { organizations: [], organizationalUnits: [], countries: [], provinces: [], localities: [], streetAddresses: [], postalCodes: [] }
}

function readSubject(r: Reader): Read<Subject> {
  return has(r, A.LITERAL_SUBJECT) ? readLiteralSubject(r) : readStructuredSubject(r)
}

function readLiteralSubject(r: Reader): Read<Subject> {
  for (const key of A.STRUCTURED_SUBJECT_ATTRIBUTES) {
    if (has(r, key)) report(r, key, IssueCode.conflictsWithLiteralSubject, `cannot be combined with ${A.LITERAL_SUBJECT}: put the whole subject in the literal, or use only the structured subject attributes`)
  }
  // Raw: trimming could eat an escaped trailing space ("CN=a\ "); the parser skips unescaped ones.
  const literal = scalar(r, A.LITERAL_SUBJECT, { expand: true, raw: true })
  if (literal === null || literal === undefined) return null
  const parsed = parseRfc4514(literal)
  if (!parsed.ok) {
    report(r, A.LITERAL_SUBJECT, IssueCode.invalidLiteralSubject, `${quote(literal)} is not an RFC 4514 distinguished name: ${parsed.reason}`)
    return null
  }
  return { ...emptySubject(), literal }
}

function readStructuredSubject(r: Reader): Read<Subject> {
  let ok = true
  const subject = emptySubject()
  const commonName = scalar(r, A.COMMON_NAME, { expand: true })
  if (commonName === null || !check(r, A.COMMON_NAME, commonName, shape.checkSubjectValue, IssueCode.invalidSubjectValue)) {
    ok = false
  } else if (commonName !== undefined && [...commonName].length > A.COMMON_NAME_MAX) {
    report(r, A.COMMON_NAME, IssueCode.tooLong, `${quote(commonName)} is longer than ${A.COMMON_NAME_MAX} characters, the X.509 limit for a common name; put long names in dns-names`)
    ok = false
  } else if (commonName !== undefined) {
    subject.commonName = commonName
  }

  for (const [key, field] of SUBJECT_LISTS) {
    const country = key === A.COUNTRIES
    const fn = country ? shape.checkCountry : shape.checkSubjectValue
    const values = checkEach(r, key, list(r, key, { expand: true }), fn, country ? IssueCode.invalidCountry : IssueCode.invalidSubjectValue)
    if (values === null) ok = false
    else if (values !== undefined) subject[field] = values
  }

  const serial = scalar(r, A.SERIAL_NUMBER, { expand: true })
  if (serial === null || !check(r, A.SERIAL_NUMBER, serial, shape.checkSerialNumber, IssueCode.invalidSerialNumber)) ok = false
  else if (serial !== undefined) subject.serialNumber = serial
  return ok ? subject : null
}

/** A certificate must name something: a SAN, a common name, or a literal subject with a CN. */
function requireIdentity(r: Reader, subject: Read<Subject>): void {
  // Present-but-invalid identities were reported already; don't pile on.
  const keys = [A.DNS_NAMES, A.IP_SANS, A.URI_SANS, A.EMAIL_SANS, A.COMMON_NAME]
  if (keys.some((k) => has(r, k))) return
  if (has(r, A.LITERAL_SUBJECT)) {
    if (!subject?.literal) return
    const parsed = parseRfc4514(subject.literal)
    if (parsed.ok && commonNames(parsed.rdns).length > 0) return
  }
  report(r, A.DNS_NAMES, IssueCode.missingIdentity, `the certificate names nothing: set at least one of ${keys.join(', ')}, or a ${A.LITERAL_SUBJECT} with a CN`)
}

interface Pkcs12Read {
  /** The keystore's file name when enabled, checked later with the other file names. */
  filename?: Read<string>
  spec?: Pkcs12Spec
}

function readPkcs12(r: Reader): Pkcs12Read {
  const enable = bool(r, A.PKCS12_ENABLE, A.DEFAULTS.pkcs12Enable)
  if (enable !== true) {
    // With an invalid pkcs12-enable the user's intent is unknown: that one issue is enough.
    if (enable === false) {
      for (const key of [A.PKCS12_FILENAME, A.PKCS12_PASSWORD]) {
        if (has(r, key)) report(r, key, IssueCode.requiresPkcs12Enable, `is only used with ${A.PKCS12_ENABLE}: "true"; set that or remove this attribute`)
      }
    }
    return {}
  }
  // The password is used exactly as given, and never quoted back in a message.
  const password = scalar(r, A.PKCS12_PASSWORD, { raw: true })
  if (password === undefined) report(r, A.PKCS12_PASSWORD, IssueCode.required, `is required when ${A.PKCS12_ENABLE} is "true"`)
  const problem = typeof password === 'string' ? shape.keystorePasswordProblem(password) : undefined
  if (problem) report(r, A.PKCS12_PASSWORD, IssueCode.invalidPkcs12Password, `the password ${problem}`)
  const filename = withDefault(r, A.PKCS12_FILENAME, A.DEFAULTS.pkcs12Filename)
  return typeof password === 'string' && !problem && typeof filename === 'string' ? { filename, spec: { filename, password } } : { filename }
}

function readFiles(r: Reader, pkcs12Filename: Read<string>): Read<VolumeSpec['files']> {
  const entries: Array<[string, Read<string>]> = [
    [A.CERTIFICATE_FILE, withDefault(r, A.CERTIFICATE_FILE, A.DEFAULTS.certificateFile)],
    [A.PRIVATE_KEY_FILE, withDefault(r, A.PRIVATE_KEY_FILE, A.DEFAULTS.privateKeyFile)],
    [A.CA_FILE, withDefault(r, A.CA_FILE, A.DEFAULTS.caFile)],
  ]
  const bundle = scalar(r, A.CREDENTIAL_BUNDLE_FILE)
  if (bundle !== undefined) entries.push([A.CREDENTIAL_BUNDLE_FILE, bundle])
  if (pkcs12Filename !== undefined) entries.push([A.PKCS12_FILENAME, pkcs12Filename])
  let ok = entries.map(([key, name]) => check(r, key, name, shape.checkFileName, IssueCode.invalidFileName) && name !== null).every(Boolean)

  const owner = new Map<string, string>()
  for (const [key, name] of entries) {
    if (typeof name !== 'string') continue
    const other = owner.get(name)
    if (other === undefined) {
      owner.set(name, key)
      continue
    }
    // Name whichever side the user wrote: a default cannot be fixed by editing it.
    const [blamed, partner] = has(r, key) ? [key, other] : [other, key]
    report(r, blamed, IssueCode.duplicateFileName, `${quote(name)} is also the file name of ${partner}; every file in the volume needs its own name`)
    ok = false
  }
  if (!ok) return null
  const name = (key: string): string | undefined => entries.find(([k]) => k === key)?.[1] as string | undefined
  const files: VolumeSpec['files'] = { certificate: name(A.CERTIFICATE_FILE)!, privateKey: name(A.PRIVATE_KEY_FILE)!, ca: name(A.CA_FILE)! }
  if (bundle !== undefined) files.credentialBundle = bundle as string
  if (pkcs12Filename !== undefined) files.pkcs12 = pkcs12Filename as string
  return files
}

function readFsGroup(r: Reader): Read<number> {
  const text = scalar(r, A.FS_GROUP)
  if (text === undefined || text === null) return text
  const n = shape.groupId(text)
  if (n === undefined) {
    report(r, A.FS_GROUP, IssueCode.invalidFsGroup, `${quote(text)} is not a group id: use a whole number from 0 to ${A.FS_GROUP_MAX}`)
    return null
  }
  return n
}
