// Certificates for the local control plane: a root CA made for each run, the
// apiserver's serving certificate and client certificates for kubeconfigs.
// Test tooling only; the driver's own key and CSR code lives in src/pki.
import 'reflect-metadata'
import * as x509 from '@peculiar/x509'
import { webcrypto, generateKeyPairSync, randomBytes } from 'node:crypto'

x509.cryptoProvider.set(webcrypto as unknown as Crypto)

const ecdsa = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const
const DAY_MS = 24 * 3600 * 1000

export interface Pem {
  certPem: string
  keyPem: string
}

export interface Authority extends Pem {
  cert: x509.X509Certificate
  keys: CryptoKeyPair
}

async function keyToPem(key: CryptoKey): Promise<string> {
  const der = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', key))
  const body = der.toString('base64').replace(/.{64}/g, '$&\n').replace(/\n$/, '')
  return `-----BEGIN PRIVATE KEY-----\n${body}\n-----END PRIVATE KEY-----\n`
}

function serial(): string {
  // Positive, 16 bytes: clear the top bit so it is never read as negative.
  const bytes = randomBytes(16)
  bytes[0] = bytes[0]! & 0x7f
  return bytes.toString('hex')
}

async function newKeys(): Promise<CryptoKeyPair> {
  return (await webcrypto.subtle.generateKey(ecdsa, true, ['sign', 'verify']))
}

export async function makeAuthority(commonName: string, days = 30): Promise<Authority> {
  const keys = await newKeys()
  const now = Date.now()
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serial(),
    name: `CN=${commonName}`,
    notBefore: new Date(now - 60_000),
    notAfter: new Date(now + days * DAY_MS),
    signingAlgorithm: ecdsa,
    keys,
    extensions: [
      new x509.BasicConstraintsExtension(true, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign | x509.KeyUsageFlags.digitalSignature, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  })
  return { cert, keys, certPem: cert.toString('pem') + '\n', keyPem: await keyToPem(keys.privateKey) }
}

export interface LeafOptions {
  commonName: string
  organizations?: string[]
  dnsNames?: string[]
  ips?: string[]
  server?: boolean
  client?: boolean
  days?: number
}

export async function issueLeaf(ca: Authority, opts: LeafOptions): Promise<Pem> {
  const keys = await newKeys()
  const now = Date.now()
  const subject = [`CN=${opts.commonName}`, ...(opts.organizations ?? []).map(o => `O=${o}`)].join(', ')
  const usages: string[] = []
  if (opts.server) usages.push(x509.ExtendedKeyUsage.serverAuth)
  if (opts.client) usages.push(x509.ExtendedKeyUsage.clientAuth)
  const sans = [
    ...(opts.dnsNames ?? []).map(value => ({ type: 'dns' as const, value })),
    ...(opts.ips ?? []).map(value => ({ type: 'ip' as const, value })),
  ]
  const extensions: x509.Extension[] = [
    new x509.BasicConstraintsExtension(false, undefined, true),
    new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment, true),
    new x509.ExtendedKeyUsageExtension(usages),
    await x509.AuthorityKeyIdentifierExtension.create(ca.cert),
  ]
  if (sans.length > 0) extensions.push(new x509.SubjectAlternativeNameExtension(sans))
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: serial(),
    subject,
    issuer: ca.cert.subject,
    notBefore: new Date(now - 60_000),
    notAfter: new Date(now + (opts.days ?? 30) * DAY_MS),
    signingAlgorithm: ecdsa,
    publicKey: keys.publicKey,
    signingKey: ca.keys.privateKey,
    extensions,
  })
  return { certPem: cert.toString('pem') + '\n', keyPem: await keyToPem(keys.privateKey) }
}

/** The key pair kube-apiserver signs and verifies service account tokens with. */
export function serviceAccountKeyPair(): { publicPem: string; privatePem: string } {
  const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' })
  return {
    publicPem: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
    privatePem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
  }
}
