// The CSI server in-process, over a real unix socket, with fake publishers.

import { mkdtempSync, rmSync, writeFileSync, existsSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { status, type ServiceError } from '@grpc/grpc-js'
import t from 'tap'
import { createIdentityService } from '../../src/csi/identity.js'
import { createNodeService, type PublishOutcome, type PublishRequest, type VolumePublisher } from '../../src/csi/node.js'
import { CsiServer } from '../../src/csi/server.js'
import { grpcStatusOf, toStatus } from '../../src/csi/status.js'
import { AbortedError, DeadlineExceededError, ErrorCode, InvalidArgumentError, UnavailableError } from '../../src/errors.js'
import { createLogger } from '../../src/log/logger.js'
import { CsiTestClient, DEFAULT_POD } from '../helpers/csi-client.js'

const VALID = { 'csi.cert-manager.io/issuer-name': 'ca-issuer', 'csi.cert-manager.io/dns-names': 'example.com' }
const dir = mkdtempSync(join(tmpdir(), 'csi-server-'))
t.teardown(() => rmSync(dir, { recursive: true, force: true }))
let n = 0

/** A publisher whose behaviour each test sets. */
class FakePublisher implements VolumePublisher {
  published: PublishRequest[] = []
  unpublished: Array<[string, string]> = []
  behaviour: (req: PublishRequest, signal: AbortSignal) => Promise<PublishOutcome | void> = async () => {}
  async publish(req: PublishRequest, signal: AbortSignal): Promise<PublishOutcome> {
    this.published.push(req)
    return (await this.behaviour(req, signal)) ?? 'published'
  }
  async unpublish(volumeId: string, targetPath: string) {
    this.unpublished.push([volumeId, targetPath])
  }
}

// Rejects like a plain `await once(signal, 'abort')` would: with the signal's reason, not a DriverError.
const waitForAbort = (signal: AbortSignal) =>
  // eslint-disable-next-line @typescript-eslint/prefer-promise-reject-errors -- exactly what the signal carries
  new Promise<void>((_, reject) => signal.addEventListener('abort', () => reject(signal.reason), { once: true }))

async function setup(t: { teardown: (fn: () => unknown) => void }, publishTimeoutMs = 5_000) {
  const socketPath = join(dir, `s${n++}`, 'csi.sock') // parent directory does not exist yet
  let logs = ''
  const logger = createLogger({ level: 'debug', format: 'json', destination: { write: (s: string) => void (logs += s) } })
  const publisher = new FakePublisher()
  const server = new CsiServer({
    socketPath,
    logger,
    identity: createIdentityService({ driverName: 'csi.cert-manager.io', version: '9.9.9', readiness: async () => true }),
    node: createNodeService({ nodeId: 'n1', driverName: 'csi.cert-manager.io', publisher, publishTimeoutMs }),
  })
  await server.start()
  const client = new CsiTestClient(socketPath)
  t.teardown(async () => {
    client.close()
    await server.stop({ graceMs: 0, forceAfterMs: 0 })
  })
  return { socketPath, server, client, publisher, logs: () => logs }
}

const publishArgs = (volumeId = 'csi-1') => ({ volumeId, targetPath: `/var/lib/kubelet/pods/${DEFAULT_POD.uid}/volumes/kubernetes.io~csi/tls/mount`, attributes: VALID })

async function failure(p: Promise<unknown>): Promise<ServiceError> {
  return p.then(
    () => {
      throw new Error('expected the call to fail')
    },
    (e: ServiceError) => e,
  )
}

t.test('status mapping: one place, every code', async (t) => {
  const want: Record<string, status> = {
    INVALID_ARGUMENT: status.INVALID_ARGUMENT,
    NOT_FOUND: status.NOT_FOUND,
    UNAVAILABLE: status.UNAVAILABLE,
    DEADLINE_EXCEEDED: status.DEADLINE_EXCEEDED,
    FAILED_PRECONDITION: status.FAILED_PRECONDITION,
    ABORTED: status.ABORTED,
    RESOURCE_EXHAUSTED: status.RESOURCE_EXHAUSTED,
    UNIMPLEMENTED: status.UNIMPLEMENTED,
    INTERNAL: status.INTERNAL,
  }
  for (const code of Object.values(ErrorCode)) t.equal(grpcStatusOf(code), want[code], code)
  t.same(toStatus(new AbortedError('volume v busy')), { code: status.ABORTED, details: 'volume v busy' })
  t.same(toStatus(new TypeError('x is undefined')), { code: status.INTERNAL, details: 'internal error: x is undefined' })
  t.same(toStatus('weird'), { code: status.INTERNAL, details: 'internal error: weird' })
})

t.test('publish hands the validated request to the publisher and answers OK only when it resolves', async (t) => {
  const { client, publisher } = await setup(t)
  t.same(await client.publish(publishArgs()), {})
  const req = publisher.published[0]
  t.match(req, {
    volumeId: 'csi-1',
    readonly: true,
    pod: { name: 'app-0', namespace: 'default', serviceAccountName: 'default' },
    attributes: VALID,
  })
  t.same(await client.unpublish('csi-1', '/t'), {})
  t.same(publisher.unpublished, [['csi-1', '/t']])
})

t.test('invalid requests never reach the publisher', async (t) => {
  const { client, publisher } = await setup(t)
  const err = await failure(client.publish({ ...publishArgs(), attributes: { 'csi.cert-manager.io/dns-names': 'example.com' } }))
  t.equal(err.code, status.INVALID_ARGUMENT)
  t.match(err.details, /csi\.cert-manager\.io\/issuer-name/)
  t.equal(publisher.published.length, 0)
})

t.test('publisher errors keep their code and reason', async (t) => {
  const { client, publisher } = await setup(t)
  const cases = [
    { err: new DeadlineExceededError('CertificateRequest default/x is pending: issuer ca-issuer not ready'), code: status.DEADLINE_EXCEEDED, msg: /issuer ca-issuer not ready/ },
    { err: new AbortedError('an operation for volume csi-1 is already in progress'), code: status.ABORTED, msg: /already in progress/ },
    { err: new UnavailableError('API server unreachable'), code: status.UNAVAILABLE, msg: /API server unreachable/ },
    { err: new InvalidArgumentError('bad'), code: status.INVALID_ARGUMENT, msg: /bad/ },
    { err: new Error('boom'), code: status.INTERNAL, msg: /^internal error: boom$/ },
  ]
  for (const c of cases) {
    publisher.behaviour = async () => {
      throw c.err
    }
    const err = await failure(client.publish(publishArgs()))
    t.equal(err.code, c.code, c.err.message)
    t.match(err.details, c.msg)
  }
})

t.test('a publisher that only gives up on the signal yields DEADLINE_EXCEEDED at the publish timeout', async (t) => {
  const { client, publisher } = await setup(t, 200)
  let signalled: AbortSignal | undefined
  publisher.behaviour = (_req, signal) => {
    signalled = signal
    return waitForAbort(signal)
  }
  const started = Date.now()
  const err = await failure(client.publish(publishArgs()))
  t.equal(err.code, status.DEADLINE_EXCEEDED)
  t.match(err.details, /not ready within 0.2s/)
  t.ok(Date.now() - started >= 180, 'waited for the timeout')
  t.ok(signalled?.aborted)
})

t.test('a kubelet cancel aborts the publisher', async (t) => {
  const { client, publisher } = await setup(t)
  let aborted: Promise<void> | undefined
  publisher.behaviour = (_req, signal) => {
    aborted = new Promise((resolve) => signal.addEventListener('abort', () => resolve(), { once: true }))
    return waitForAbort(signal)
  }
  const err = await failure(client.publish(publishArgs(), 200)) // client deadline 200 ms
  t.equal(err.code, status.DEADLINE_EXCEEDED)
  await aborted
  t.pass('publisher saw the abort')
})

t.test('graceful stop lets an in-flight call finish, refuses new ones, removes the socket', async (t) => {
  const { client, publisher, server, socketPath } = await setup(t)
  publisher.behaviour = () => new Promise((r) => setTimeout(r, 300))
  const inFlight = client.publish(publishArgs())
  await new Promise((r) => setTimeout(r, 50))
  const stopped = server.stop({ graceMs: 5_000 })
  t.same(await inFlight, {}, 'the in-flight publish completed OK')
  await stopped
  t.notOk(existsSync(socketPath), 'socket removed')
  const err = await failure(client.call('Probe', {}, 1_000))
  t.equal(err.code, status.UNAVAILABLE, 'no longer serving')
})

t.test('stop aborts calls that outlive the grace period', async (t) => {
  const { client, publisher, server, logs } = await setup(t)
  publisher.behaviour = async (_req, signal) => {
    await waitForAbort(signal).catch(() => {
      throw new UnavailableError('driver shutting down; the kubelet will retry')
    })
  }
  const inFlight = failure(client.publish(publishArgs()))
  await new Promise((r) => setTimeout(r, 50))
  await server.stop({ graceMs: 50, forceAfterMs: 2_000 })
  const err = await inFlight
  t.equal(err.code, status.UNAVAILABLE)
  t.match(err.details, /shutting down/)
  t.match(logs(), /"in_flight":1,"msg":"CSI server stopping"/)
})

t.test('a publisher that only gives up on a shutdown abort yields UNAVAILABLE, not INTERNAL', async (t) => {
  const { client, publisher, server } = await setup(t)
  publisher.behaviour = (_req, signal) => waitForAbort(signal)
  const inFlight = failure(client.publish(publishArgs()))
  await new Promise((r) => setTimeout(r, 50))
  await server.stop({ graceMs: 20, forceAfterMs: 2_000 })
  const err = await inFlight
  t.equal(err.code, status.UNAVAILABLE)
  t.match(err.details, /publish of volume csi-1 abandoned: driver shutting down/)
})

t.test('kill cuts a graceful stop short', async (t) => {
  const { client, publisher, server, socketPath } = await setup(t)
  publisher.behaviour = () => new Promise(() => {}) // ignores its signal entirely
  const inFlight = failure(client.publish(publishArgs()))
  await new Promise((r) => setTimeout(r, 50))
  const started = Date.now()
  const stopped = server.stop({ graceMs: 60_000 })
  server.kill()
  await stopped
  t.ok(Date.now() - started < 5_000, 'stop resolved without waiting for the grace period')
  t.notOk(existsSync(socketPath), 'socket removed')
  t.ok((await inFlight).code, 'the client got an error')
})

t.test('start refuses to replace something that is not a socket', async (t) => {
  const path = join(dir, 'not-a-socket')
  writeFileSync(path, 'important')
  const server = new CsiServer({
    socketPath: path,
    logger: createLogger({ level: 'error', format: 'json', destination: { write: () => {} } }),
    identity: createIdentityService({ driverName: 'd', version: 'v', readiness: async () => true }),
    node: createNodeService({ nodeId: 'n', driverName: 'd', publisher: new FakePublisher(), publishTimeoutMs: 1_000 }),
  })
  await t.rejects(server.start(), /exists and is not a socket/)
  t.ok(existsSync(path), 'file left alone')
})

t.test('Probe reports the readiness callback, and a throwing callback as not ready', async (t) => {
  const probe = (readiness: () => Promise<boolean>) => createIdentityService({ driverName: 'd', version: 'v', readiness }).Probe({}, { signal: new AbortController().signal, routine: () => {} })
  t.same(await probe(async () => true), { ready: { value: true } })
  t.same(await probe(async () => false), { ready: { value: false } })
  t.same(await probe(async () => Promise.reject(new Error('EIO'))), { ready: { value: false } })
})

t.test('a republish that changed nothing finishes at debug; a publish that did, at info', async (t) => {
  const { client, publisher, logs } = await setup(t)
  const finished = (volumeId: string) => logs().split('\n').filter(l => l.includes('"msg":"call finished"') && l.includes(volumeId)).map(l => (JSON.parse(l) as { level: string }).level)
  publisher.behaviour = async () => 'published'
  await client.publish(publishArgs('csi-new'))
  publisher.behaviour = async () => 'unchanged'
  await client.publish(publishArgs('csi-again'))
  t.same(finished('csi-new'), ['info'])
  t.same(finished('csi-again'), ['debug'])
})
