// The validated, defaulted form of a volume's attributes: everything the
// reconciler needs to build a key, a CertificateRequest and the files.
// Produced only by parseVolumeAttributes (spec.ts); never built by hand.

export type KeyAlgorithm = 'RSA' | 'ECDSA' | 'Ed25519'
export type KeyEncoding = 'PKCS1' | 'PKCS8'

/** cert-manager's KeyUsage names (cert-manager.io/v1 CertificateRequest spec.usages). */
export type KeyUsage = string

export interface PodInfo {
  name: string
  namespace: string
  uid: string
  serviceAccountName: string
}

export interface IssuerRef {
  name: string
  kind: string
  group: string
}

export interface Subject {
  commonName?: string
  organizations: string[]
  organizationalUnits: string[]
  countries: string[]
  provinces: string[]
  localities: string[]
  streetAddresses: string[]
  postalCodes: string[]
  serialNumber?: string
  /** A literal RFC 4514 subject; when set the structured fields above are empty. */
  literal?: string
}

export interface KeySpec {
  algorithm: KeyAlgorithm
  /** RSA modulus bits, or ECDSA curve size (256, 384, 521); 0 for Ed25519. */
  size: number
  encoding: KeyEncoding
}

export interface FileNames {
  certificate: string
  privateKey: string
  ca: string
  /** Set only when asked for: the key, then the certificate chain (one read gets a matching pair). */
  credentialBundle?: string
  /** Set only when PKCS#12 is enabled. */
  pkcs12?: string
}

export interface Pkcs12Spec {
  filename: string
  password: string
}

export interface VolumeSpec {
  issuer: IssuerRef
  subject: Subject
  dnsNames: string[]
  ipAddresses: string[]
  uris: string[]
  emailAddresses: string[]
  usages: KeyUsage[]
  /** Requested lifetime, milliseconds. */
  durationMs: number
  /** Renew this long before notAfter, milliseconds; undefined = a third of the actual lifetime. */
  renewBeforeMs?: number
  isCA: boolean
  key: KeySpec
  files: FileNames
  pkcs12?: Pkcs12Spec
  /** Group id owning the files (mode 0440) when set; else files are 0400 root. */
  fsGroup?: number
  reusePrivateKey: boolean
  disableAutoRenew: boolean
  /** Attributes outside csi.cert-manager.io/ passed on as CertificateRequest annotations. */
  annotations: Record<string, string>
}

export interface AttributeIssue {
  /** The full attribute key, e.g. "csi.cert-manager.io/duration". */
  attribute: string
  /** Stable machine-readable code, e.g. "required", "invalid-duration". */
  code: string
  /** Human sentence saying what is wrong and what is allowed. */
  message: string
}

export type ParseResult =
  | { ok: true; spec: VolumeSpec }
  | { ok: false; issues: AttributeIssue[] }
