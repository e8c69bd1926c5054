// The files a volume shows its pod, derived from the stored key and
// certificate and the volume's spec: names, key encoding, modes, keystore.
import { createHash } from 'node:crypto'
import type { VolumeSpec } from '../volume/types.js'
import { encodePrivateKeyPem, parsePrivateKeyPem } from '../pki/keys.js'
import type { StoredPair } from '../state/volume-dir.js'

/** The issued pair as the volume's folder keeps it (key in PKCS#8 PEM, re-encoded per spec when rendered). */
export type StoredCertificate = StoredPair

export interface RenderedFile {
  name: string
  data: Buffer
  mode: number
}

export const sha256 = (data: Buffer | string): string => createHash('sha256').update(data).digest('hex')

/** 0400 for root, or 0440 with the pod's fs-group so a non-root pod can read. */
export const fileMode = (spec: VolumeSpec): number => (spec.fsGroup === undefined ? 0o400 : 0o440)

/** The stored key in the encoding the spec asks for. */
export const encodeKey = (spec: VolumeSpec, stored: StoredCertificate): string =>
  encodePrivateKeyPem(parsePrivateKeyPem(stored.keyPem), spec.key.encoding)

/** Every file except the keystore: byte-for-byte reproducible. `key` saves re-encoding a known key. */
export function renderDeterministic(spec: VolumeSpec, stored: StoredCertificate, key = encodeKey(spec, stored)): RenderedFile[] {
  const mode = fileMode(spec)
  const files = [
    { name: spec.files.privateKey, data: Buffer.from(key), mode },
    { name: spec.files.certificate, data: Buffer.from(stored.certificatePem), mode },
    { name: spec.files.ca, data: Buffer.from(stored.caPem ?? ''), mode },
  ]
  if (spec.files.credentialBundle !== undefined) files.push({ name: spec.files.credentialBundle, data: Buffer.from(credentialBundle(key, stored.certificatePem)), mode })
  return files
}

/**
 * The key, then the certificate chain: the shape of Kubernetes' pod
 * certificate credential bundle and of cert-manager's CombinedPEM output, so
 * a reader of one file can never see a key of one certificate beside another.
 */
export function credentialBundle(keyPem: string, certificatePem: string): string {
  const key = keyPem.endsWith('\n') ? keyPem : `${keyPem}\n`
  return key + certificatePem
}

/** The keystore is salted at random: it is compared by the hash recorded when written. */
export async function renderKeystore(spec: VolumeSpec, stored: StoredCertificate): Promise<RenderedFile | undefined> {
  if (!spec.pkcs12) return undefined
  // Loaded on the first keystore: pkijs is memory that most nodes never need.
  const { buildPkcs12 } = await import('../pki/pkcs12.js')
  const data = await buildPkcs12({
    keyPem: stored.keyPem,
    certificatePem: stored.certificatePem,
    ...(stored.caPem ? { caPem: stored.caPem } : {}),
    password: spec.pkcs12.password,
  })
  return { name: spec.pkcs12.filename, data, mode: fileMode(spec) }
}

/**
 * One digest of a folder's files, names and contents both (length-prefixed,
 * in name order), so no two different sets share one.
 */
export function publishedDigest(files: ReadonlyMap<string, Buffer> | readonly RenderedFile[]): string {
  const entries: Array<[string, Buffer]> = files instanceof Map
    ? [...(files as ReadonlyMap<string, Buffer>).entries()]
    : (files as readonly RenderedFile[]).map((f): [string, Buffer] => [f.name, f.data])
  entries.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
  const hash = createHash('sha256')
  for (const [name, data] of entries) hash.update(`${Buffer.byteLength(name)}:${name}:${data.length}:`).update(data)
  return hash.digest('hex')
}

/** True when the published files are exactly what the spec and stored certificate call for. */
export function isFresh(spec: VolumeSpec, stored: StoredCertificate, published: Map<string, Buffer> | undefined, keystoreSha256: string | undefined, key?: string): boolean {
  if (!published) return false
  const expected = renderDeterministic(spec, stored, key)
  const names = new Set(expected.map(f => f.name))
  if (spec.pkcs12) names.add(spec.pkcs12.filename)
  if (published.size !== names.size) return false
  for (const f of expected) if (!published.get(f.name)?.equals(f.data)) return false
  if (spec.pkcs12) {
    const keystore = published.get(spec.pkcs12.filename)
    if (!keystore || sha256(keystore) !== keystoreSha256) return false
  }
  return true
}
