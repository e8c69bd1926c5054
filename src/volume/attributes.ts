// The volume attribute keys a Pod may set on a csi.cert-manager.io volume,
// their defaults, and the stable issue codes parseVolumeAttributes reports.
// Constants only: the parsing rules live in spec.ts.

export const ATTRIBUTE_PREFIX = 'csi.cert-manager.io/'
/** Keys the kubelet adds itself (podInfoOnMount, ephemeral, token requests). */
export const KUBELET_PREFIX = 'csi.storage.k8s.io/'

const key = <N extends string>(name: N): `csi.cert-manager.io/${N}` => `${ATTRIBUTE_PREFIX}${name}`

export const ISSUER_NAME = key('issuer-name')
export const ISSUER_KIND = key('issuer-kind')
export const ISSUER_GROUP = key('issuer-group')
export const COMMON_NAME = key('common-name')
export const KEY_USAGES = key('key-usages')
export const DNS_NAMES = key('dns-names')
export const IP_SANS = key('ip-sans')
export const URI_SANS = key('uri-sans')
export const EMAIL_SANS = key('email-sans')
export const DURATION = key('duration')
export const IS_CA = key('is-ca')
export const CERTIFICATE_FILE = key('certificate-file')
export const PRIVATE_KEY_FILE = key('privatekey-file')
export const CA_FILE = key('ca-file')
/** Optional: the key followed by the certificate chain, in one file. */
export const CREDENTIAL_BUNDLE_FILE = key('credential-bundle-file')
export const RENEW_BEFORE = key('renew-before')
export const DISABLE_AUTO_RENEW = key('disable-auto-renew')
export const REUSE_PRIVATE_KEY = key('reuse-private-key')
export const KEY_ALGORITHM = key('key-algorithm')
export const KEY_SIZE = key('key-size')
export const KEY_ENCODING = key('key-encoding')
export const ORGANIZATIONS = key('organizations')
export const ORGANIZATIONAL_UNITS = key('organizational-units')
export const COUNTRIES = key('countries')
export const PROVINCES = key('provinces')
export const LOCALITIES = key('localities')
export const STREET_ADDRESSES = key('street-addresses')
export const POSTAL_CODES = key('postal-codes')
export const SERIAL_NUMBER = key('serial-number')
export const LITERAL_SUBJECT = key('literal-subject')
export const FS_GROUP = key('fs-group')
export const PKCS12_ENABLE = key('pkcs12-enable')
export const PKCS12_FILENAME = key('pkcs12-filename')
export const PKCS12_PASSWORD = key('pkcs12-password')

export const KNOWN_ATTRIBUTES: readonly string[] = [
  ISSUER_NAME, ISSUER_KIND, ISSUER_GROUP, COMMON_NAME, KEY_USAGES, DNS_NAMES, IP_SANS, URI_SANS,
  EMAIL_SANS, DURATION, IS_CA, CERTIFICATE_FILE, PRIVATE_KEY_FILE, CA_FILE, CREDENTIAL_BUNDLE_FILE, RENEW_BEFORE,
  DISABLE_AUTO_RENEW, REUSE_PRIVATE_KEY, KEY_ALGORITHM, KEY_SIZE, KEY_ENCODING, ORGANIZATIONS,
  ORGANIZATIONAL_UNITS, COUNTRIES, PROVINCES, LOCALITIES, STREET_ADDRESSES, POSTAL_CODES,
  SERIAL_NUMBER, LITERAL_SUBJECT, FS_GROUP, PKCS12_ENABLE, PKCS12_FILENAME, PKCS12_PASSWORD,
]

/**
 * Attributes an issue may name although the input lacks them: issuer-name is
 * always required, pkcs12-password when pkcs12-enable is true, and the
 * "no identity at all" issue is reported on dns-names, the usual fix.
 */
export const REQUIRED_ATTRIBUTES: readonly string[] = [ISSUER_NAME, DNS_NAMES, PKCS12_PASSWORD]

/** Structured subject keys; literal-subject excludes all of them. */
export const STRUCTURED_SUBJECT_ATTRIBUTES: readonly string[] = [
  COMMON_NAME, ORGANIZATIONS, ORGANIZATIONAL_UNITS, COUNTRIES, PROVINCES, LOCALITIES,
  STREET_ADDRESSES, POSTAL_CODES, SERIAL_NUMBER,
]

/** Keys whose values may use ${POD_NAME} and friends. */
export const EXPANDED_ATTRIBUTES: readonly string[] = [
  ...STRUCTURED_SUBJECT_ATTRIBUTES, LITERAL_SUBJECT, DNS_NAMES, IP_SANS, URI_SANS, EMAIL_SANS,
]

export const DEFAULTS = {
  issuerKind: 'Issuer',
  issuerGroup: 'cert-manager.io',
  keyUsages: ['digital signature', 'key encipherment'],
  duration: '720h',
  isCA: false,
  certificateFile: 'crt.pem',
  privateKeyFile: 'key.pem',
  caFile: 'ca.pem',
  disableAutoRenew: false,
  reusePrivateKey: false,
  keyAlgorithm: 'RSA',
  rsaKeySize: 2048,
  ecdsaKeySize: 256,
  /** Ed25519 has no PKCS#1/SEC1 form, so its default differs. */
  keyEncoding: 'PKCS1',
  ed25519KeyEncoding: 'PKCS8',
  pkcs12Enable: false,
  pkcs12Filename: 'keystore.p12',
} as const

/** The shortest lifetime we accept; CertificateRequests have no minimum, tests renew quickly. */
export const MIN_DURATION_MS = 60_000
export const RSA_MIN_BITS = 2048
export const RSA_MAX_BITS = 8192
export const ECDSA_SIZES: readonly number[] = [256, 384, 521]
export const FS_GROUP_MAX = 2_147_483_647
/** X.520 ub-common-name; cert-manager rejects longer common names too. */
export const COMMON_NAME_MAX = 64

export const POD_VARIABLES = ['POD_NAME', 'POD_NAMESPACE', 'POD_UID', 'SERVICE_ACCOUNT_NAME'] as const

/** Stable issue codes: clients and tests match on these, never on messages. */
export const IssueCode = {
  required: 'required',
  emptyValue: 'empty-value',
  emptyItem: 'empty-item',
  duplicateItem: 'duplicate-item',
  unknownAttribute: 'unknown-attribute',
  invalidAttributeKey: 'invalid-attribute-key',
  unknownVariable: 'unknown-variable',
  unterminatedVariable: 'unterminated-variable',
  unbracedVariable: 'unbraced-variable',
  emptyVariable: 'empty-variable',
  invalidBoolean: 'invalid-boolean',
  invalidDuration: 'invalid-duration',
  durationTooShort: 'duration-too-short',
  invalidRenewBefore: 'invalid-renew-before',
  invalidIssuerName: 'invalid-issuer-name',
  invalidIssuerKind: 'invalid-issuer-kind',
  invalidIssuerGroup: 'invalid-issuer-group',
  invalidKeyAlgorithm: 'invalid-key-algorithm',
  invalidKeySize: 'invalid-key-size',
  invalidKeyEncoding: 'invalid-key-encoding',
  invalidKeyUsage: 'invalid-key-usage',
  invalidDnsName: 'invalid-dns-name',
  invalidIpAddress: 'invalid-ip-address',
  invalidUri: 'invalid-uri',
  invalidEmail: 'invalid-email',
  invalidSubjectValue: 'invalid-subject-value',
  invalidCountry: 'invalid-country',
  invalidSerialNumber: 'invalid-serial-number',
  tooLong: 'too-long',
  invalidLiteralSubject: 'invalid-literal-subject',
  conflictsWithLiteralSubject: 'conflicts-with-literal-subject',
  missingIdentity: 'missing-identity',
  invalidFileName: 'invalid-file-name',
  duplicateFileName: 'duplicate-file-name',
  invalidFsGroup: 'invalid-fs-group',
  requiresPkcs12Enable: 'requires-pkcs12-enable',
  limitExceeded: 'limit-exceeded',
  invalidPkcs12Password: 'invalid-pkcs12-password',
  annotationNotAllowed: 'annotation-not-allowed',
} as const
export type IssueCode = (typeof IssueCode)[keyof typeof IssueCode]

/** cert-manager's KeyUsage names (cert-manager.io/v1), in its documentation's order. */
export const KEY_USAGE_NAMES: readonly string[] = [
  'signing', 'digital signature', 'content commitment', 'key encipherment', 'key agreement',
  'data encipherment', 'cert sign', 'crl sign', 'encipher only', 'decipher only', 'any',
  'server auth', 'client auth', 'code signing', 'email protection', 's/mime', 'ipsec end system',
  'ipsec tunnel', 'ipsec user', 'timestamping', 'ocsp signing', 'microsoft sgc', 'netscape sgc',
]

/** Names cert-manager treats as the same usage; listing both is a duplicate. */
export const KEY_USAGE_SYNONYMS: Readonly<Record<string, string>> = {
  signing: 'digital signature',
  's/mime': 'email protection',
}
