// PKCS#12 keystores (keystore.p12) in the "modern" profile, the one OpenSSL 3
// and Java's keytool write and read by default:
//
//   PFX v3
//    ├─ authSafe: AuthenticatedSafe
//    │   ├─ EncryptedData (PBES2: PBKDF2-HMAC-SHA256 + AES-256-CBC)
//    │   │   └─ SafeContents: one CertBag per certificate (leaf, chain, CA)
//    │   └─ Data
//    │       └─ SafeContents: one PKCS8ShroudedKeyBag (PBES2 as above)
//    └─ macData: HMAC-SHA256 over the AuthenticatedSafe, key from the PKCS#12
//                KDF (RFC 7292 appendix B) with SHA-256
//
// This is the layout `openssl pkcs12 -export` produces in OpenSSL 3.0
// (certificates first, key second). The key bag and the leaf's CertBag carry
// the same localKeyId (SHA-1 of the leaf certificate's DER, as OpenSSL does),
// which is what ties them into one PrivateKeyEntry for Java.
//
// Passwords: PBES2 feeds PBKDF2 the password's UTF-8 bytes, the MAC's KDF the
// password as a big-endian BMPString (UTF-16 code units) with a trailing
// 0x0000, as RFC 7292 B.1 says and as OpenSSL 3 (OPENSSL_utf82uni) and Java
// do. pkijs's MAC KDF decodes the UTF-8 bytes it is given and re-encodes them
// that way. An empty password is a valid password: the MAC key then comes from
// the two bytes 0x0000, which `openssl pkcs12 -passin pass:` accepts.
//
// pkijs picks a global crypto engine when it is imported (globalThis.crypto on
// Node >= 19). This module never reads or changes that global: it makes its own
// engine on first use and passes it to every pkijs call explicitly.

import { isWellFormed, keystorePasswordProblem } from '../volume/shapes.js'
import { createHash, createPrivateKey, webcrypto, X509Certificate, type KeyObject } from 'node:crypto'
import * as asn1js from 'asn1js'
import * as pkijs from 'pkijs'

export interface KeystoreInput {
  /** PKCS#8, PKCS#1 (RSA) or SEC1 (EC) private key, PEM, unencrypted. */
  keyPem: string
  /** The leaf certificate first, then any chain, PEM. */
  certificatePem: string
  /** CA certificate(s), PEM; added after the chain. */
  caPem?: string
  /** May be empty. */
  password: string
  /** Set as friendlyName on the key bag and the leaf's CertBag (Java's alias). */
  friendlyName?: string
}

/** PBKDF2 iterations for both PBES2 encryptions, and the MAC's KDF iterations (Java 17's default; OpenSSL 3's is 2048). */
export const PKCS12_ITERATIONS = 10_000

const OID = {
  data: '1.2.840.113549.1.7.1',
  encryptedData: '1.2.840.113549.1.7.6',
  pkcs8ShroudedKeyBag: '1.2.840.113549.1.12.10.1.2',
  certBag: '1.2.840.113549.1.12.10.1.3',
  x509Certificate: '1.2.840.113549.1.9.22.1',
  friendlyName: '1.2.840.113549.1.9.20',
  localKeyId: '1.2.840.113549.1.9.21',
} as const

const PBES2_PARAMS: Omit<pkijs.CryptoEngineEncryptParams, 'password' | 'contentToEncrypt' | 'contentType'> = {
  // pkijs makes a fresh random IV per encryption; its type wants one here anyway.
  contentEncryptionAlgorithm: { name: 'AES-CBC', length: 256 } as pkijs.ContentEncryptionAlgorithm,
  hmacHashAlgorithm: 'SHA-256',
  iterationCount: PKCS12_ITERATIONS,
}

let engine: pkijs.CryptoEngine | undefined

function cryptoEngine(): pkijs.CryptoEngine {
  engine ??= new pkijs.CryptoEngine({
    name: 'cert-manager-csi-driver/pkcs12',
    crypto: webcrypto as unknown as Crypto,
  })
  return engine
}

export class KeystoreError extends Error {
  override name = 'KeystoreError'
}

/** Builds a password-protected PKCS#12 keystore holding the key, its certificate, chain and CA. */
export async function buildPkcs12(input: KeystoreInput): Promise<Buffer> {
  const password = passwordBytes(input.password)
  const key = parsePrivateKey(input.keyPem)
  const chain = parseCertificates(input.certificatePem, 'certificatePem')
  const leaf = chain[0]
  if (leaf === undefined) throw new KeystoreError('certificatePem holds no certificate')
  if (!leaf.x509.checkPrivateKey(key)) {
    throw new KeystoreError('the private key does not match the first certificate in certificatePem')
  }
  const ca = input.caPem === undefined ? [] : parseCertificates(input.caPem, 'caPem')

  // Leaf, chain, then CA certificates, each once (cert-manager's ca.crt often
  // repeats the chain's root, and a self-signed leaf is its own CA).
  const certs: Buffer[] = []
  for (const { der } of [...chain, ...ca]) {
    if (!certs.some((c) => c.equals(der))) certs.push(der)
  }

  const localKeyId = createHash('sha1').update(leaf.der).digest()
  const leafAttributes = bagAttributes(localKeyId, input.friendlyName)
  const crypto = cryptoEngine()

  const certSafe = new pkijs.SafeContents({
    safeBags: certs.map(
      (der, i) =>
        new pkijs.SafeBag({
          bagId: OID.certBag,
          // certValue set directly: pkijs would re-encode a parsed certificate.
          bagValue: new pkijs.CertBag({
            certId: OID.x509Certificate,
            certValue: new asn1js.OctetString({ valueHex: toArrayBuffer(der) }),
          }),
          ...(i === 0 ? { bagAttributes: leafAttributes } : {}),
        }),
    ),
  })

  const exported = key.export({ type: 'pkcs8', format: 'der' })
  const pkcs8 = toArrayBuffer(exported)
  exported.fill(0)
  let encryptedKey: Awaited<ReturnType<typeof pbes2Encrypt>>
  try {
    encryptedKey = await pbes2Encrypt(pkcs8, password, crypto)
  } finally {
    new Uint8Array(pkcs8).fill(0)
  }
  const keySafe = new pkijs.SafeContents({
    safeBags: [
      new pkijs.SafeBag({
        bagId: OID.pkcs8ShroudedKeyBag,
        bagValue: new pkijs.PKCS8ShroudedKeyBag({
          encryptionAlgorithm: encryptedKey.algorithm,
          encryptedData: new asn1js.OctetString({ valueHex: encryptedKey.ciphertext }),
        }),
        bagAttributes: bagAttributes(localKeyId, input.friendlyName),
      }),
    ],
  })

  const encryptedCertSafe = await pbes2Encrypt(der(certSafe), password, crypto)
  const encryptedCerts = new pkijs.EncryptedData({
    version: 0,
    encryptedContentInfo: new pkijs.EncryptedContentInfo({
      contentType: OID.data,
      contentEncryptionAlgorithm: encryptedCertSafe.algorithm,
      encryptedContent: new asn1js.OctetString({ valueHex: encryptedCertSafe.ciphertext }),
      disableSplit: true,
    }),
  })

  const authenticatedSafe = new pkijs.AuthenticatedSafe({
    safeContents: [
      new pkijs.ContentInfo({ contentType: OID.encryptedData, content: encryptedCerts.toSchema() }),
      new pkijs.ContentInfo({
        contentType: OID.data,
        content: new asn1js.OctetString({ valueHex: der(keySafe) }),
      }),
    ],
  })

  const pfx = new pkijs.PFX({ parsedValue: { integrityMode: 0, authenticatedSafe } })
  await pfx.makeInternalValues(
    {
      password,
      iterations: PKCS12_ITERATIONS,
      pbkdf2HashAlgorithm: { name: 'SHA-256' },
      hmacHashAlgorithm: 'SHA-256',
    },
    crypto,
  )
  // sha256 with NULL parameters in the MAC's DigestInfo, as OpenSSL and Java
  // write it (pkijs leaves them out; both forms are read).
  if (pfx.macData !== undefined) pfx.macData.mac.digestAlgorithm.algorithmParams = new asn1js.Null()
  return Buffer.from(pfx.toSchema().toBER(false))
}

/**
 * PBES2-encrypts content: the AlgorithmIdentifier and the ciphertext. pkijs
 * wraps the ciphertext in a constructed OCTET STRING of 1 KiB pieces (valid
 * BER, but not what OpenSSL writes, and an EncryptedPrivateKeyInfo's
 * encryptedData should be primitive), so callers wrap it themselves.
 */
async function pbes2Encrypt(
  content: ArrayBuffer,
  password: ArrayBuffer,
  crypto: pkijs.CryptoEngine,
): Promise<{ algorithm: pkijs.AlgorithmIdentifier; ciphertext: ArrayBuffer }> {
  const encrypted = await crypto.encryptEncryptedContentInfo({
    ...PBES2_PARAMS,
    password,
    contentToEncrypt: content,
    contentType: OID.data,
  })
  return { algorithm: encrypted.contentEncryptionAlgorithm, ciphertext: encrypted.getEncryptedContent() }
}

function bagAttributes(localKeyId: Buffer, friendlyName: string | undefined): pkijs.Attribute[] {
  const attributes: pkijs.Attribute[] = []
  if (friendlyName !== undefined && friendlyName !== '') {
    if (!isWellFormed(friendlyName)) throw new KeystoreError('friendlyName is not well-formed UTF-16')
    attributes.push(
      new pkijs.Attribute({ type: OID.friendlyName, values: [new asn1js.BmpString({ value: friendlyName })] }),
    )
  }
  attributes.push(
    new pkijs.Attribute({
      type: OID.localKeyId,
      values: [new asn1js.OctetString({ valueHex: toArrayBuffer(localKeyId) })],
    }),
  )
  return attributes
}

function passwordBytes(password: string): ArrayBuffer {
  const problem = keystorePasswordProblem(password)
  if (problem) throw new KeystoreError(`the keystore password ${problem}`)
  return toArrayBuffer(Buffer.from(password, 'utf8'))
}


function parsePrivateKey(pem: string): KeyObject {
  let key: KeyObject
  try {
    key = createPrivateKey({ key: pem, format: 'pem' })
  } catch (err) {
    throw new KeystoreError(`keyPem is not a readable unencrypted private key: ${(err as Error).message}`)
  }
  switch (key.asymmetricKeyType) {
    case 'rsa':
    case 'ec':
    case 'ed25519':
      return key
    default:
      throw new KeystoreError(`unsupported private key type ${key.asymmetricKeyType ?? 'unknown'}`)
  }
}

interface ParsedCertificate {
  der: Buffer
  x509: X509Certificate
}

const PEM_BLOCK = /-----BEGIN ([A-Z0-9 ]+)-----([\s\S]*?)-----END \1-----/g

function parseCertificates(pem: string, field: string): ParsedCertificate[] {
  const certs: ParsedCertificate[] = []
  for (const match of pem.matchAll(PEM_BLOCK)) {
    if (match[1] !== 'CERTIFICATE') continue
    const body = (match[2] ?? '').replace(/\s+/g, '')
    if (!/^[A-Za-z0-9+/]*={0,2}$/.test(body)) throw new KeystoreError(`${field}: malformed base64 in a CERTIFICATE block`)
    const der = Buffer.from(body, 'base64')
    let x509: X509Certificate
    try {
      x509 = new X509Certificate(der)
    } catch (err) {
      throw new KeystoreError(`${field}: certificate ${certs.length + 1} is not valid: ${(err as Error).message}`)
    }
    // Keep the input bytes only if they are exactly one certificate (no trailing data).
    if (!x509.raw.equals(der)) throw new KeystoreError(`${field}: certificate ${certs.length + 1} has trailing data`)
    certs.push({ der, x509 })
  }
  return certs
}

function der(obj: { toSchema(): asn1js.BaseBlock }): ArrayBuffer {
  return obj.toSchema().toBER(false)
}

function toArrayBuffer(buf: Uint8Array): ArrayBuffer {
  const out = new ArrayBuffer(buf.byteLength)
  new Uint8Array(out).set(buf)
  return out
}
