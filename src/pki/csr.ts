// The PKCS#10 request for a volume: subject, SANs, key usages, extended key
// usages and CA constraints, signed with the volume's key.

// @peculiar/x509 declares its ASN.1 schemas with decorators that need this
// polyfill loaded before the library itself.
import 'reflect-metadata'
import * as x509 from '@peculiar/x509'
import * as asn1js from 'asn1js'
import { type KeyObject, createPublicKey, webcrypto } from 'node:crypto'
import { isIPv4, isIPv6 } from 'node:net'
import type { KeyUsage, Subject, VolumeSpec } from '../volume/types.js'
import { type DnAttribute, type Rdn, stringTypeFor, subjectRdns } from '../volume/dn.js'

const KEY_USAGE_FLAGS: Readonly<Record<string, x509.KeyUsageFlags>> = {
  signing: x509.KeyUsageFlags.digitalSignature,
  'digital signature': x509.KeyUsageFlags.digitalSignature,
  'content commitment': x509.KeyUsageFlags.nonRepudiation,
  'key encipherment': x509.KeyUsageFlags.keyEncipherment,
  'key agreement': x509.KeyUsageFlags.keyAgreement,
  'data encipherment': x509.KeyUsageFlags.dataEncipherment,
  'cert sign': x509.KeyUsageFlags.keyCertSign,
  'crl sign': x509.KeyUsageFlags.cRLSign,
  'encipher only': x509.KeyUsageFlags.encipherOnly,
  'decipher only': x509.KeyUsageFlags.decipherOnly,
}

/** cert-manager's extended usage names → OIDs (its apiutil ExtKeyUsageType table). */
export const EXTENDED_KEY_USAGE_OIDS: Readonly<Record<string, string>> = {
  any: '2.5.29.37.0',
  'server auth': '1.3.6.1.5.5.7.3.1',
  'client auth': '1.3.6.1.5.5.7.3.2',
  'code signing': '1.3.6.1.5.5.7.3.3',
  'email protection': '1.3.6.1.5.5.7.3.4',
  's/mime': '1.3.6.1.5.5.7.3.4',
  'ipsec end system': '1.3.6.1.5.5.7.3.5',
  'ipsec tunnel': '1.3.6.1.5.5.7.3.6',
  'ipsec user': '1.3.6.1.5.5.7.3.7',
  timestamping: '1.3.6.1.5.5.7.3.8',
  'ocsp signing': '1.3.6.1.5.5.7.3.9',
  'microsoft sgc': '1.3.6.1.4.1.311.10.3.3',
  'netscape sgc': '2.16.840.1.113730.4.1',
}

export interface UsageExtensions {
  /** Bit flags for the keyUsage extension (x509.KeyUsageFlags); 0 = no extension. */
  keyUsage: number
  /** extendedKeyUsage OIDs in the order given, without repeats; empty = no extension. */
  extendedKeyUsages: string[]
}

/** Splits cert-manager usage names into keyUsage bits and EKU OIDs. Throws on an unknown name. */
export function usagesToExtensions(usages: readonly KeyUsage[]): UsageExtensions {
  let keyUsage = 0
  const extendedKeyUsages: string[] = []
  for (const usage of usages) {
    const name = usage.toLowerCase()
    const flag = Object.hasOwn(KEY_USAGE_FLAGS, name) ? KEY_USAGE_FLAGS[name] : undefined
    const oid = Object.hasOwn(EXTENDED_KEY_USAGE_OIDS, name) ? EXTENDED_KEY_USAGE_OIDS[name] : undefined
    if (flag !== undefined) keyUsage |= flag
    else if (oid !== undefined) {
      if (!extendedKeyUsages.includes(oid)) extendedKeyUsages.push(oid)
    } else throw new TypeError(`unknown key usage ${JSON.stringify(usage)}`)
  }
  return { keyUsage, extendedKeyUsages }
}

type JsonValue = string | x509.JsonAttributeObject

function jsonValue(attribute: DnAttribute): JsonValue {
  // "#hex" is the library's way to take a BER value verbatim.
  if ('ber' in attribute) return `#${Buffer.from(attribute.ber).toString('hex')}`
  return { [stringTypeFor(attribute.oid, attribute.value)]: attribute.value }
}

/**
 * The subject as an x509.Name, built attribute by attribute (never through
 * the library's lenient string parser) and assembled as DER here: DER sorts
 * the members of a multi-valued RDN by their encoding, the library keeps
 * input order, and the CA copies our subject bytes into the certificate.
 */
export function subjectName(subject: Subject): x509.Name {
  const rdns = subjectRdns(subject)
  // Let the library encode each attribute once, as its own RDN, in one Name (each Name costs ~0.3 ms).
  const flat = new x509.Name(rdns.flat().map((a) => ({ [a.oid]: [jsonValue(a)] })) as x509.JsonNameParams)
  const sets = (asn1js.fromBER(flat.toArrayBuffer()).result as asn1js.Sequence).valueBlock.value as asn1js.Set[]
  // The bytes as the library wrote them: re-encoding could change a "#hex" BER value.
  const encoded = sets.map((set) => Buffer.from(set.valueBlock.value[0]!.valueBeforeDecodeView))
  let next = 0
  const sorted = rdns.map((rdn: Rdn) => derTlv(0x31, Buffer.concat(rdn.map(() => encoded[next++]!).sort((a, b) => Buffer.compare(a, b)))))
  return new x509.Name(Uint8Array.from(derTlv(0x30, Buffer.concat(sorted))))
}

/** A DER tag-length-value with a definite length. */
function derTlv(tag: number, content: Buffer): Buffer {
  const n = content.length
  const length = n < 0x80 ? [n] : n < 0x100 ? [0x81, n] : n < 0x10000 ? [0x82, n >> 8, n & 0xff] : [0x83, n >> 16, (n >> 8) & 0xff, n & 0xff]
  return Buffer.concat([Buffer.from([tag, ...length]), content])
}

interface KeyAlgorithms {
  importParams: webcrypto.RsaHashedImportParams | webcrypto.EcKeyImportParams | webcrypto.Algorithm
  signingAlgorithm: webcrypto.Algorithm | webcrypto.EcdsaParams
}

/** SHA-256 for RSA (as Go signs), and the hash that matches each curve's strength. */
function algorithmsFor(key: KeyObject): KeyAlgorithms {
  switch (key.asymmetricKeyType) {
    case 'rsa':
      return {
        importParams: { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' },
        signingAlgorithm: { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' },
      }
    case 'ec': {
      const curve = key.asymmetricKeyDetails?.namedCurve
      const [namedCurve, hash] = curve === 'prime256v1' ? ['P-256', 'SHA-256'] : curve === 'secp384r1' ? ['P-384', 'SHA-384'] : curve === 'secp521r1' ? ['P-521', 'SHA-512'] : []
      if (namedCurve === undefined || hash === undefined) throw new TypeError(`unsupported EC curve ${String(curve)}`)
      return { importParams: { name: 'ECDSA', namedCurve }, signingAlgorithm: { name: 'ECDSA', hash } }
    }
    case 'ed25519':
      return { importParams: { name: 'Ed25519' }, signingAlgorithm: { name: 'Ed25519' } }
    default:
      throw new TypeError(`unsupported key type ${String(key.asymmetricKeyType)}`)
  }
}

/**
 * A node:crypto key as a WebCrypto pair. Node 20 cannot convert a KeyObject
 * directly (KeyObject.toCryptoKey is Node 23+), so go through DER.
 */
async function toCryptoKeyPair(key: KeyObject, params: KeyAlgorithms['importParams']): Promise<webcrypto.CryptoKeyPair> {
  const pkcs8 = key.export({ type: 'pkcs8', format: 'der' })
  const spki = createPublicKey(key).export({ type: 'spki', format: 'der' })
  const [privateKey, publicKey] = await Promise.all([
    webcrypto.subtle.importKey('pkcs8', pkcs8, params, false, ['sign']),
    webcrypto.subtle.importKey('spki', spki, params, true, ['verify']),
  ])
  return { privateKey, publicKey }
}

/**
 * @peculiar/x509's IPv6 parser misreads embedded IPv4 ("::ffff:1.2.3.4"):
 * hand it eight plain hex groups instead.
 */
export function canonicalIp(ip: string): string {
  if (isIPv4(ip)) return ip
  if (!isIPv6(ip)) throw new TypeError(`not an IP address: ${JSON.stringify(ip)}`)
  let text = ip
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(text)
  if (v4) {
    const [a, b, c, d] = v4[1]!.split('.').map(Number) as [number, number, number, number]
    text = `${text.slice(0, v4.index)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`
  }
  const [head = '', tail] = text.split('::')
  const left = head === '' ? [] : head.split(':')
  const right = tail === undefined || tail === '' ? [] : tail.split(':')
  const zeros = Array<string>(8 - left.length - right.length).fill('0')
  return [...left, ...zeros, ...right].map((g) => parseInt(g, 16).toString(16)).join(':')
}

function sanExtension(spec: VolumeSpec, subjectIsEmpty: boolean): x509.Extension | undefined {
  const names: x509.JsonGeneralNames = [
    ...spec.dnsNames.map((value) => ({ type: 'dns' as const, value })),
    ...spec.ipAddresses.map((value) => ({ type: 'ip' as const, value: canonicalIp(value) })),
    ...spec.uris.map((value) => ({ type: 'url' as const, value })),
    ...spec.emailAddresses.map((value) => ({ type: 'email' as const, value })),
  ]
  // RFC 5280 4.2.1.6: with an empty subject the SANs are the identity and must be critical.
  return names.length === 0 ? undefined : new x509.SubjectAlternativeNameExtension(names, subjectIsEmpty)
}

/** Builds and signs the CSR for a validated spec; PEM "CERTIFICATE REQUEST". */
export async function buildCsrPem(spec: VolumeSpec, key: KeyObject): Promise<string> {
  if (key.type !== 'private') throw new TypeError('a CSR must be signed with a private key')
  const algorithms = algorithmsFor(key)
  const name = subjectName(spec.subject)
  const subjectIsEmpty = name.toJSON().length === 0
  const usages = usagesToExtensions(spec.usages)
  const extendedKeyUsages = usages.extendedKeyUsages
  // cert-manager's signers add "cert sign" to the usages they expect of a CA
  // request and refuse a CSR whose key usage lacks it.
  const keyUsage = spec.isCA ? usages.keyUsage | x509.KeyUsageFlags.keyCertSign : usages.keyUsage

  const extensions: x509.Extension[] = []
  const san = sanExtension(spec, subjectIsEmpty)
  if (san) extensions.push(san)
  if (keyUsage !== 0) extensions.push(new x509.KeyUsagesExtension(keyUsage, true))
  if (extendedKeyUsages.length > 0) extensions.push(new x509.ExtendedKeyUsageExtension(extendedKeyUsages))
  if (spec.isCA) extensions.push(new x509.BasicConstraintsExtension(true, undefined, true))

  const csr = await x509.Pkcs10CertificateRequestGenerator.create(
    {
      name,
      keys: await toCryptoKeyPair(key, algorithms.importParams),
      signingAlgorithm: algorithms.signingAlgorithm,
      extensions,
    },
    // Passed explicitly: never depend on a process-wide provider someone else set.
    webcrypto as unknown as Crypto,
  )
  return csr.toString('pem')
}
