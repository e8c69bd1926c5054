// Hostile NodePublishVolume and NodeUnpublishVolume calls through the real
// gRPC surface (the CSI server on a unix socket): whatever a pod author or a
// caller on the socket sends, the driver answers, never crashes, names what
// is wrong, and hands nothing invalid to the publisher (which is what would
// create a CertificateRequest). CSI_FUZZ_RUNS=100000 is the long form: a
// tenth of it (10,000) runs here; test/README.md has its figures.
import t from 'tap'
import fc from 'fast-check'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { status, type ServiceError } from '@grpc/grpc-js'
import { createIdentityService } from '../../src/csi/identity.js'
import { createNodeService, type PublishOutcome, type PublishRequest, type VolumePublisher } from '../../src/csi/node.js'
import { CsiServer } from '../../src/csi/server.js'
import { createLogger } from '../../src/log/logger.js'
import * as A from '../../src/volume/attributes.js'
import { CsiTestClient, DEFAULT_POD } from '../helpers/csi-client.js'

const RUNS = Math.max(200, Math.round(Number(process.env.CSI_FUZZ_RUNS ?? 2000) / 10))
const KUBELET = '/var/lib/kubelet'
const GOOD_TARGET = `${KUBELET}/pods/${DEFAULT_POD.uid}/volumes/kubernetes.io~csi/tls/mount`

/** Records what passed validation: each would become a CertificateRequest. */
class RecordingPublisher implements VolumePublisher {
  published: PublishRequest[] = []
  async publish(req: PublishRequest): Promise<PublishOutcome> {
    this.published.push(req)
    return 'published'
  }
  async unpublish(): Promise<void> {}
}

const dir = mkdtempSync(join(tmpdir(), 'grpc-fuzz-'))
t.teardown(() => rmSync(dir, { recursive: true, force: true }))
const socketPath = join(dir, 'csi.sock')
const publisher = new RecordingPublisher()
const server = new CsiServer({
  socketPath,
  logger: createLogger({ level: 'error', format: 'json', destination: { write: () => {} } }),
  identity: createIdentityService({ driverName: 'csi.cert-manager.io', version: '0.0.0', readiness: async () => true }),
  node: createNodeService({ nodeId: 'n1', driverName: 'csi.cert-manager.io', publisher, publishTimeoutMs: 5_000, kubeletRootDir: KUBELET }),
})
await server.start()
const client = new CsiTestClient(socketPath)
t.teardown(async () => {
  client.close()
  await server.stop({ graceMs: 0, forceAfterMs: 0 })
})

const nasty = fc.string({ unit: fc.constantFrom('${', '}', '$', ',', '\\', '=', '/', '..', '.', '\u0000', '\n', 'é', 'a', 'POD_NAME', 'kubernetes.io~csi', 'pods', 'mount'), maxLength: 60 })
const big = fc.tuple(fc.constantFrom('${', 'a', ',', '/..'), fc.integer({ min: 1, max: 20_000 })).map(([u, n]) => u.repeat(n))
const text = fc.oneof({ weight: 4, arbitrary: nasty }, { weight: 1, arbitrary: big })
const targetPath = fc.oneof(
  { weight: 6, arbitrary: fc.constant(GOOD_TARGET) },
  text,
  nasty.map(s => `${KUBELET}/pods/${DEFAULT_POD.uid}/volumes/kubernetes.io~csi/${s}/mount`),
  nasty.map(s => `${KUBELET}/pods/${s}/volumes/kubernetes.io~csi/tls/mount`),
  nasty.map(s => `/${s}`),
)
const volumeId = fc.oneof({ weight: 3, arbitrary: fc.constant('csi-0123456789abcdef') }, { weight: 1, arbitrary: text })
const attrKey = fc.oneof(fc.constantFrom(...A.KNOWN_ATTRIBUTES), nasty, nasty.map(s => `example.com/${s}`), nasty.map(s => `csi.storage.k8s.io/${s}`))
const context = fc
  .tuple(fc.boolean(), fc.oneof(fc.constant({}), fc.dictionary(attrKey, text, { maxKeys: 3 })), fc.nat(4).map(n => n > 0))
  .map(([core, extra, podInfo]) => ({
    ...(core ? { [A.ISSUER_NAME]: 'ca', [A.DNS_NAMES]: 'a.example.com' } : {}),
    ...extra,
    ...(podInfo
      ? {
          'csi.storage.k8s.io/pod.name': DEFAULT_POD.name, 'csi.storage.k8s.io/pod.namespace': DEFAULT_POD.namespace,
          'csi.storage.k8s.io/pod.uid': DEFAULT_POD.uid, 'csi.storage.k8s.io/ephemeral': 'true',
        }
      : {}),
  }))
const capability = fc.constantFrom(
  { mount: {}, access_mode: { mode: 'SINGLE_NODE_WRITER' } },
  { mount: {}, access_mode: { mode: 'SINGLE_NODE_WRITER' } },
  { mount: {}, access_mode: { mode: 'SINGLE_NODE_WRITER' } },
  { block: {}, access_mode: { mode: 'SINGLE_NODE_WRITER' } },
  { mount: {}, access_mode: { mode: 'MULTI_NODE_MULTI_WRITER' } },
  undefined,
)
const publishRequest = fc.record({ volume_id: volumeId, target_path: targetPath, volume_capability: capability, readonly: fc.nat(4).map(n => n > 0), volume_context: context })

const ACCEPTABLE_TARGET = new RegExp(`^${KUBELET}/pods/${DEFAULT_POD.uid}/volumes/kubernetes\\.io~csi/[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?/mount$`)
const EXPECTED_REFUSALS = new Set([status.INVALID_ARGUMENT, status.FAILED_PRECONDITION])

t.test(`property: ${RUNS} hostile publishes are answered, never crash, and only valid ones reach the publisher`, async t => {
  let refused = 0
  let accepted = 0
  await fc.assert(
    fc.asyncProperty(publishRequest, async req => {
      const before = publisher.published.length
      const err = await client.call('NodePublishVolume', req as never).then(() => undefined, (e: ServiceError) => e)
      if (err) {
        refused++
        // Refused with a reason, and the publisher never saw it.
        return EXPECTED_REFUSALS.has(err.code) && err.details.length > 0 && err.details.length < 16_384 && publisher.published.length === before
      }
      accepted++
      const p = publisher.published.at(-1)
      return publisher.published.length === before + 1 && p !== undefined && ACCEPTABLE_TARGET.test(p.targetPath) && p.readonly && p.pod.uid === DEFAULT_POD.uid
    }),
    { numRuns: RUNS },
  )
  t.ok(refused > 0, `hostile calls refused: ${refused}`)
  t.ok(accepted > 0, `valid calls reached the publisher: ${accepted}`)
  t.same(await client.call('Probe', {}), { ready: { value: true } }, 'the server still answers afterwards')
})

t.test(`property: hostile unpublishes are answered and never crash`, async t => {
  await fc.assert(
    fc.asyncProperty(volumeId, targetPath, async (volume_id, target_path) => {
      const err = await client.call('NodeUnpublishVolume', { volume_id, target_path }).then(() => undefined, (e: ServiceError) => e)
      return err === undefined || (err.code === status.INVALID_ARGUMENT && err.details.length > 0)
    }),
    { numRuns: Math.max(100, Math.round(RUNS / 4)) },
  )
  t.same(await client.call('Probe', {}), { ready: { value: true } }, 'the server still answers afterwards')
})
