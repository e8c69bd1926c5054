// What a pod would read from its volume, checked: key, certificate and CA all
// there, the key the certificate's, the attributes asked for (DNS SAN, key
// type), signed by the CA file, and not expired. The files are read through
// the `..data` symlink twice-checked, so a renewal swapping them mid-read is
// not mistaken for a mismatch.
import { X509Certificate, createPrivateKey, createPublicKey } from 'node:crypto'
import { readFile, readlink } from 'node:fs/promises'
import { join } from 'node:path'

export type KeyKind = 'ECDSA-256' | 'Ed25519' | 'RSA-2048'

export const KEY_ATTRIBUTES: Record<KeyKind, Record<string, string>> = {
  'ECDSA-256': { 'csi.cert-manager.io/key-algorithm': 'ECDSA', 'csi.cert-manager.io/key-size': '256' },
  Ed25519: { 'csi.cert-manager.io/key-algorithm': 'Ed25519' },
  'RSA-2048': { 'csi.cert-manager.io/key-algorithm': 'RSA', 'csi.cert-manager.io/key-size': '2048' },
}

export interface Expected {
  dnsName: string
  key: KeyKind
}

export interface Served {
  problems: string[]
  /** Set when the pair is readable and consistent. */
  serial?: string
  notBefore?: number
  notAfter?: number
  expired: boolean
}

function keyProblem(keyPem: string, kind: KeyKind): string | undefined {
  const key = createPrivateKey(keyPem)
  const d = key.asymmetricKeyDetails ?? {}
  switch (kind) {
    case 'ECDSA-256': return key.asymmetricKeyType === 'ec' && d.namedCurve === 'prime256v1' ? undefined : `key is ${key.asymmetricKeyType}/${d.namedCurve}, expected EC P-256`
    case 'Ed25519': return key.asymmetricKeyType === 'ed25519' ? undefined : `key is ${key.asymmetricKeyType}, expected ed25519`
    case 'RSA-2048': return key.asymmetricKeyType === 'rsa' && d.modulusLength === 2048 ? undefined : `key is ${key.asymmetricKeyType}/${d.modulusLength}, expected RSA 2048`
  }
}

const spki = (k: ReturnType<typeof createPublicKey>): string => k.export({ type: 'spki', format: 'der' }).toString('base64')

async function readSet(target: string): Promise<{ files: Record<string, string>; consistent: boolean }> {
  const link = async (): Promise<string | undefined> => readlink(join(target, '..data')).catch(() => undefined)
  const before = await link()
  const dir = before === undefined ? target : join(target, before)
  const files: Record<string, string> = {}
  for (const name of ['key.pem', 'crt.pem', 'ca.pem']) {
    files[name] = await readFile(join(dir, name), 'utf8').catch(() => '')
  }
  return { files, consistent: before === (await link()) }
}

/** Reads and checks the files at target; retries a read that raced a renewal. */
export async function checkServed(target: string, expected: Expected, now = Date.now()): Promise<Served> {
  let files: Record<string, string> = {}
  for (let attempt = 0; attempt < 5; attempt++) {
    const r = await readSet(target)
    files = r.files
    if (r.consistent && files['key.pem'] && files['crt.pem']) break
    await new Promise(res => setTimeout(res, 50))
  }
  const problems: string[] = []
  for (const name of ['key.pem', 'crt.pem', 'ca.pem']) if (!files[name]) problems.push(`${name} missing or empty`)
  if (problems.length > 0) return { problems, expired: false }
  let cert: X509Certificate
  try {
    cert = new X509Certificate(files['crt.pem']!)
  } catch (err) {
    return { problems: [`crt.pem unreadable: ${String(err)}`], expired: false }
  }
  try {
    if (spki(createPublicKey(createPrivateKey(files['key.pem']!))) !== spki(cert.publicKey)) problems.push('key.pem does not match crt.pem')
    const kp = keyProblem(files['key.pem']!, expected.key)
    if (kp) problems.push(kp)
  } catch (err) {
    problems.push(`key.pem unreadable: ${String(err)}`)
  }
  const sans = (cert.subjectAltName ?? '').split(',').map(s => s.trim())
  if (!sans.includes(`DNS:${expected.dnsName}`)) problems.push(`no DNS SAN ${expected.dnsName} (has ${cert.subjectAltName ?? 'none'})`)
  try {
    const ca = new X509Certificate(files['ca.pem']!)
    if (!cert.verify(ca.publicKey)) problems.push('crt.pem is not signed by ca.pem')
  } catch (err) {
    problems.push(`ca.pem unreadable: ${String(err)}`)
  }
  const notBefore = Date.parse(cert.validFrom)
  const notAfter = Date.parse(cert.validTo)
  const expired = now >= notAfter
  if (expired) problems.push(`expired at ${new Date(notAfter).toISOString()}`)
  return { problems, serial: cert.serialNumber, notBefore, notAfter, expired }
}

/** The attributes of a volume the fault cases publish: one DNS name, a key type, the CA issuer. */
export function volumeAttributes(dnsName: string, key: KeyKind, extra: Record<string, string> = {}): Record<string, string> {
  return {
    'csi.cert-manager.io/issuer-name': 'ca-issuer',
    'csi.cert-manager.io/dns-names': dnsName,
    ...KEY_ATTRIBUTES[key],
    ...extra,
  }
}
