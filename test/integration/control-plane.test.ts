// Proves the test bed is real: cert-manager's own approver and CA signer
// handle CertificateRequests created through our Kubernetes client.
import 'reflect-metadata'
import t, { type Test } from 'tap'
import * as x509 from '@peculiar/x509'
import { webcrypto, X509Certificate } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { setTimeout as sleep } from 'node:timers/promises'
import { CustomObjectsApi } from '@kubernetes/client-node'
import { controlPlane } from '../fixtures/control-plane.js'

x509.cryptoProvider.set(webcrypto as unknown as Crypto)

const cp = await controlPlane(t)
const api = cp.kc.makeApiClient(CustomObjectsApi)
const crApi = { group: 'cert-manager.io', version: 'v1', plural: 'certificaterequests' }

async function csrPem(dnsName: string): Promise<string> {
  const alg = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' }
  const keys = (await webcrypto.subtle.generateKey(alg, true, ['sign', 'verify']))
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    name: `CN=${dnsName}`,
    keys,
    signingAlgorithm: alg,
    extensions: [new x509.SubjectAlternativeNameExtension([{ type: 'dns', value: dnsName }])],
  })
  return csr.toString('pem')
}

interface Condition { type: string; status: string; reason?: string; message?: string }
interface CertificateRequest {
  metadata: { name: string; namespace: string }
  status?: { certificate?: string; ca?: string; conditions?: Condition[] }
}

async function createRequest(name: string, namespace: string, issuerRef: object): Promise<CertificateRequest> {
  const body = {
    apiVersion: 'cert-manager.io/v1',
    kind: 'CertificateRequest',
    metadata: { name, namespace },
    spec: {
      request: Buffer.from(await csrPem(`${name}.example.com`)).toString('base64'),
      issuerRef,
      duration: '1h',
      usages: ['digital signature', 'key encipherment', 'server auth'],
    },
  }
  return (await api.createNamespacedCustomObject({ ...crApi, namespace, body })) as CertificateRequest
}

async function getRequest(name: string, namespace: string): Promise<CertificateRequest> {
  return (await api.getNamespacedCustomObject({ ...crApi, namespace, name })) as CertificateRequest
}

async function waitForCondition(name: string, namespace: string, pred: (cr: CertificateRequest) => boolean, timeoutMs = 30_000): Promise<CertificateRequest> {
  const deadline = Date.now() + timeoutMs
  let cr = await getRequest(name, namespace)
  while (!pred(cr)) {
    if (Date.now() > deadline) throw new Error(`timed out; last status: ${JSON.stringify(cr.status)}`)
    await sleep(200)
    cr = await getRequest(name, namespace)
  }
  return cr
}

const condition = (cr: CertificateRequest, type: string): Condition | undefined => cr.status?.conditions?.find(c => c.type === type)
const issuerRoot = new X509Certificate(readFileSync(cp.issuerCaFile))

function verifySigned(t: Test, cr: CertificateRequest, dnsName: string): void {
  t.ok(cr.status?.certificate, 'status.certificate is set')
  const cert = new X509Certificate(Buffer.from(cr.status!.certificate!, 'base64'))
  t.ok(cert.verify(issuerRoot.publicKey), 'certificate verifies against the issuer CA')
  t.equal(cert.issuer, issuerRoot.subject, 'issued by the test root')
  t.match(cert.subjectAltName ?? '', `DNS:${dnsName}`, 'carries the requested DNS name')
  t.equal(Buffer.from(cr.status!.ca ?? '', 'base64').toString().trim(), readFileSync(cp.issuerCaFile, 'utf8').trim(), 'status.ca is the root')
}

const run = Date.now().toString(36)

t.test('a request to the CA Issuer is approved and signed', async t => {
  const name = `bed-issuer-${run}`
  await createRequest(name, cp.issuer.namespace, { name: cp.issuer.name, kind: 'Issuer', group: 'cert-manager.io' })
  const cr = await waitForCondition(name, cp.issuer.namespace, c => condition(c, 'Ready')?.status === 'True')
  t.equal(condition(cr, 'Approved')?.status, 'True', 'approved by cert-manager\'s approver')
  verifySigned(t, cr, `${name}.example.com`)
})

t.test('a request to the CA ClusterIssuer is signed too', async t => {
  const name = `bed-cluster-${run}`
  await createRequest(name, cp.issuer.namespace, { name: cp.clusterIssuer.name, kind: 'ClusterIssuer', group: 'cert-manager.io' })
  const cr = await waitForCondition(name, cp.issuer.namespace, c => condition(c, 'Ready')?.status === 'True')
  verifySigned(t, cr, `${name}.example.com`)
})

t.test('a request naming a missing Issuer stays pending and says so', async t => {
  const name = `bed-missing-${run}`
  await createRequest(name, cp.issuer.namespace, { name: 'no-such-issuer', kind: 'Issuer', group: 'cert-manager.io' })
  const cr = await waitForCondition(name, cp.issuer.namespace, c => condition(c, 'Ready')?.reason === 'Pending')
  const ready = condition(cr, 'Ready')!
  t.equal(ready.status, 'False')
  t.match(ready.message ?? '', /no-such-issuer.*not found/, 'the condition names the missing issuer')
  // Give the signer time to (wrongly) act, then check it did not.
  await sleep(2000)
  const later = await getRequest(name, cp.issuer.namespace)
  t.notOk(later.status?.certificate, 'no certificate was issued')
})
