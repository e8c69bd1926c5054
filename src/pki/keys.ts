// Private keys through node:crypto: generated off the event loop by OpenSSL,
// written in the encoding the volume asked for, read back, and matched
// against certificates (a reused key must belong to the certificate it sits
// next to).

import { type KeyObject, X509Certificate, createPrivateKey, createPublicKey, generateKeyPair } from 'node:crypto'
import type { KeyEncoding, KeySpec } from '../volume/types.js'

const CURVES: Readonly<Record<number, string>> = { 256: 'P-256', 384: 'P-384', 521: 'P-521' }
const CURVE_SIZES: Readonly<Record<string, number>> = { prime256v1: 256, 'P-256': 256, secp384r1: 384, 'P-384': 384, secp521r1: 521, 'P-521': 521 }

/** Generates a key for the spec (the size is already validated by spec.ts; checked again here for direct callers). */
export function generatePrivateKey(spec: KeySpec): Promise<KeyObject> {
  return new Promise((resolve, reject) => {
    const done = (err: Error | null, _publicKey: KeyObject, privateKey: KeyObject) => (err ? reject(err) : resolve(privateKey))
    switch (spec.algorithm) {
      case 'RSA':
        if (!Number.isInteger(spec.size) || spec.size < 2048 || spec.size > 8192) return reject(new RangeError(`RSA key size ${spec.size} is outside 2048..8192`))
        return generateKeyPair('rsa', { modulusLength: spec.size, publicExponent: 0x10001 }, done)
      case 'ECDSA': {
        const namedCurve = CURVES[spec.size]
        if (namedCurve === undefined) return reject(new RangeError(`ECDSA key size ${spec.size} is not one of 256, 384, 521`))
        return generateKeyPair('ec', { namedCurve }, done)
      }
      case 'Ed25519':
        return generateKeyPair('ed25519', undefined, done)
      default:
        return reject(new TypeError(`unknown key algorithm ${String((spec).algorithm)}`))
    }
  })
}

/**
 * PEM for the volume. PKCS1 means the traditional per-algorithm form:
 * "RSA PRIVATE KEY" for RSA and SEC1 "EC PRIVATE KEY" for EC, as Go's
 * cert-manager writes them; PKCS8 is "PRIVATE KEY" for every algorithm.
 */
export function encodePrivateKeyPem(key: KeyObject, encoding: KeyEncoding): string {
  if (key.type !== 'private') throw new TypeError('not a private key')
  if (encoding === 'PKCS8') return key.export({ type: 'pkcs8', format: 'pem' }) as string
  switch (key.asymmetricKeyType) {
    case 'rsa':
      return key.export({ type: 'pkcs1', format: 'pem' }) as string
    case 'ec':
      return key.export({ type: 'sec1', format: 'pem' }) as string
    default:
      throw new TypeError(`PKCS1 encoding is not defined for ${key.asymmetricKeyType} keys: use PKCS8`)
  }
}

/** Reads an unencrypted private key in any of the PEM forms above. */
export function parsePrivateKeyPem(pem: string): KeyObject {
  return createPrivateKey({ key: pem, format: 'pem' })
}

/** The KeySpec a key satisfies (encoding aside), or undefined for a kind we never generate. */
export function describeKey(key: KeyObject): Omit<KeySpec, 'encoding'> | undefined {
  const details = key.asymmetricKeyDetails ?? {}
  switch (key.asymmetricKeyType) {
    case 'rsa':
      return details.modulusLength === undefined ? undefined : { algorithm: 'RSA', size: details.modulusLength }
    case 'ec': {
      const size = details.namedCurve === undefined ? undefined : CURVE_SIZES[details.namedCurve]
      return size === undefined ? undefined : { algorithm: 'ECDSA', size }
    }
    case 'ed25519':
      return { algorithm: 'Ed25519', size: 0 }
    default:
      return undefined
  }
}

/** Whether an existing key can be kept for this spec (reuse-private-key after a spec change). */
export function keyMatchesSpec(key: KeyObject, spec: KeySpec): boolean {
  const d = describeKey(key)
  return d !== undefined && d.algorithm === spec.algorithm && d.size === spec.size
}

/** Whether the first certificate in certPem carries this key's public half (compared as SPKI DER). */
export function publicKeyMatches(key: KeyObject, certPem: string): boolean {
  const spki = (k: KeyObject) => (k.type === 'public' ? k : createPublicKey(k)).export({ type: 'spki', format: 'der' })
  return spki(key).equals(spki(new X509Certificate(certPem).publicKey))
}
