// The real driver process, spoken to over its real unix socket, the way the
// kubelet, node-driver-registrar and livenessprobe do. No Kubernetes needed.

import { spawn } from 'node:child_process'
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { status, type ServiceError } from '@grpc/grpc-js'
import t from 'tap'
import { CsiTestClient, DEFAULT_POD, ROOT, startDriver, type DriverProcess } from '../helpers/csi-client.js'

const VALID = { 'csi.cert-manager.io/issuer-name': 'ca-issuer', 'csi.cert-manager.io/dns-names': 'example.com' }
const PKCS12_PASSWORD = 'hunter2-do-not-log'
const SA_TOKEN = 'eyJhbGciOi.sa-token-do-not-log'
const pkgVersion = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version

const dir = mkdtempSync(join(tmpdir(), 'csi-grpc-'))
const socketPath = join(dir, 'csi.sock')
const dataRoot = join(dir, 'data')
mkdirSync(dataRoot)
const target = join(dir, 'kubelet', 'pods', DEFAULT_POD.uid, 'volumes', 'kubernetes.io~csi', 'tls', 'mount')

t.teardown(() => rmSync(dir, { recursive: true, force: true }))

async function expectStatus(t: Tap, p: Promise<unknown>, code: status, details?: RegExp, name?: string) {
  const err = await p.then(
    () => undefined,
    (e: ServiceError) => e,
  )
  t.ok(err, `${name ?? ''}: fails`)
  t.equal(err?.code, code, `${name ?? ''}: ${status[code]} (got ${err ? status[err.code] : 'OK'}: ${err?.details ?? ''})`)
  if (details) t.match(err?.details, details, `${name ?? ''}: message`)
}
type Tap = Pick<typeof t, 'ok' | 'equal' | 'match'>

t.test('a stale socket file is replaced at start', async (t) => {
  // A process killed with SIGKILL leaves its listening socket file behind.
  await new Promise<void>((resolve, reject) => {
    const p = spawn(process.execPath, [
      '-e',
      `require('net').createServer().listen(${JSON.stringify(socketPath)}, () => process.kill(process.pid, 'SIGKILL'))`,
    ])
    p.once('exit', () => resolve())
    p.once('error', reject)
  })
  t.ok(statSync(socketPath).isSocket(), 'stale socket present before start')
})

let driver: DriverProcess
let client: CsiTestClient

t.test('driver starts on the stale socket path', async (t) => {
  driver = await startDriver({ socketPath, dataRoot, extraArgs: ['--log-level', 'debug', '--kubelet-root-dir', join(dir, 'kubelet')] })
  client = new CsiTestClient(socketPath)
  t.match(driver.logs(), /removed stale socket/)
})

t.test('identity', async (t) => {
  const info = await client.call('GetPluginInfo', {})
  t.equal(info.name, 'csi.cert-manager.io')
  t.equal(info.vendor_version, pkgVersion)

  const caps = await client.call('GetPluginCapabilities', {})
  t.same(caps.capabilities, [], 'node-only: no CONTROLLER_SERVICE')

  const probe = await client.call('Probe', {})
  t.same(probe.ready, { value: true }, 'ready: data root is writable')

  rmSync(dataRoot, { recursive: true })
  const notReady = await client.call('Probe', {})
  t.same(notReady.ready, { value: false }, 'not ready without a data root')
  mkdirSync(dataRoot)
})

t.test('node info and capabilities', async (t) => {
  const info = await client.call('NodeGetInfo', {})
  t.equal(info.node_id, 'test-node')
  t.equal(info.max_volumes_per_node, '0')
  t.equal(info.accessible_topology, null, 'no topology')
  const caps = await client.call('NodeGetCapabilities', {})
  t.same(caps.capabilities, [{ rpc: { type: 'VOLUME_MOUNT_GROUP' }, type: 'rpc' }], 'VOLUME_MOUNT_GROUP: the kubelet passes the pod\'s fsGroup')
})

t.test('unimplemented node RPCs', async (t) => {
  await expectStatus(t, client.call('NodeStageVolume', { volume_id: 'v', staging_target_path: '/s' }), status.UNIMPLEMENTED, /STAGE_UNSTAGE_VOLUME/, 'NodeStageVolume')
  await expectStatus(t, client.call('NodeUnstageVolume', { volume_id: 'v', staging_target_path: '/s' }), status.UNIMPLEMENTED, undefined, 'NodeUnstageVolume')
  await expectStatus(t, client.call('NodeGetVolumeStats', { volume_id: 'v', volume_path: '/p' }), status.UNIMPLEMENTED, /GET_VOLUME_STATS/, 'NodeGetVolumeStats')
  await expectStatus(t, client.call('NodeExpandVolume', { volume_id: 'v', volume_path: '/p' }), status.UNIMPLEMENTED, /EXPAND_VOLUME/, 'NodeExpandVolume')
})

t.test('publish argument checks', async (t) => {
  const good = client.publishRequest({ volumeId: 'csi-abc', targetPath: target, attributes: VALID })
  const ctx = good.volume_context as Record<string, string>
  const without = (k: string) => Object.fromEntries(Object.entries(ctx).filter(([key]) => key !== k))
  const cases: Array<{ name: string; req: object; code: status; msg: RegExp }> = [
    { name: 'no volume id', req: { ...good, volume_id: '' }, code: status.INVALID_ARGUMENT, msg: /volume_id is required/ },
    { name: 'no target path', req: { ...good, target_path: '' }, code: status.INVALID_ARGUMENT, msg: /target_path is required/ },
    { name: 'relative target path', req: { ...good, target_path: 'mnt' }, code: status.INVALID_ARGUMENT, msg: /must be an absolute path/ },
    { name: 'a host directory as target', req: { ...good, target_path: '/etc/ssl' }, code: status.INVALID_ARGUMENT, msg: /is not under the kubelet's root .*\/kubelet \(--kubelet-root-dir\)/ },
    { name: "another pod's volume as target", req: { ...good, target_path: target.replace(DEFAULT_POD.uid, 'another-pod-uid') }, code: status.INVALID_ARGUMENT, msg: /belongs to pod "another-pod-uid"/ },
    { name: 'an annotation prefix not allowed (the default: none)', req: { ...good, volume_context: { ...good.volume_context, 'example.com/team': 'web' } }, code: status.INVALID_ARGUMENT, msg: /example\.com\/team: .*--annotation-prefixes: none/ },
    { name: 'no capability', req: { ...good, volume_capability: null }, code: status.INVALID_ARGUMENT, msg: /volume_capability is required/ },
    { name: 'block', req: { ...good, volume_capability: { block: {}, access_mode: { mode: 'SINGLE_NODE_WRITER' } } }, code: status.INVALID_ARGUMENT, msg: /block access is not supported/ },
    { name: 'multi-node', req: { ...good, volume_capability: { mount: {}, access_mode: { mode: 'MULTI_NODE_READER_ONLY' } } }, code: status.INVALID_ARGUMENT, msg: /MULTI_NODE_READER_ONLY is not supported/ },
    { name: 'persistent', req: { ...good, volume_context: { ...ctx, 'csi.storage.k8s.io/ephemeral': 'false' } }, code: status.INVALID_ARGUMENT, msg: /only supports inline ephemeral volumes/ },
    { name: 'writable', req: { ...good, readonly: false }, code: status.INVALID_ARGUMENT, msg: /set readOnly: true/ },
    { name: 'no pod info', req: { ...good, volume_context: VALID }, code: status.FAILED_PRECONDITION, msg: /podInfoOnMount: true/ },
    { name: 'no pod uid', req: { ...good, volume_context: without('csi.storage.k8s.io/pod.uid') }, code: status.FAILED_PRECONDITION, msg: /csi.storage.k8s.io\/pod.uid/ },
  ]
  for (const c of cases) {
    await expectStatus(t, client.call('NodePublishVolume', c.req), c.code, c.msg, c.name)
  }
})

t.test('bad attributes: INVALID_ARGUMENT naming each attribute', async (t) => {
  await expectStatus(
    t,
    client.publish({ volumeId: 'csi-bad', targetPath: target, attributes: { ...VALID, 'csi.cert-manager.io/duration': 'soon' } }),
    status.INVALID_ARGUMENT,
    /csi\.cert-manager\.io\/duration: /,
    'bad duration',
  )
  await expectStatus(
    t,
    client.publish({ volumeId: 'csi-bad', targetPath: target, attributes: { 'csi.cert-manager.io/dns-names': 'example.com' } }),
    status.INVALID_ARGUMENT,
    /csi\.cert-manager\.io\/issuer-name: /,
    'no issuer',
  )
  const err = (await client
    .publish({
      volumeId: 'csi-bad',
      targetPath: target,
      attributes: { ...VALID, 'csi.cert-manager.io/duration': 'soon', 'csi.cert-manager.io/is-ca': 'maybe' },
    })
    .catch((e: ServiceError) => e)) as ServiceError
  t.match(err.details, /csi\.cert-manager\.io\/duration: .*; .*csi\.cert-manager\.io\/is-ca: |csi\.cert-manager\.io\/is-ca: .*; .*csi\.cert-manager\.io\/duration: /, 'every issue in one message')
})

t.test('a valid publish is UNAVAILABLE until the reconciler exists, never OK', async (t) => {
  await expectStatus(t, client.publish({ volumeId: 'csi-ok', targetPath: target, attributes: VALID }), status.UNAVAILABLE, /reconciler not running/, 'publish')
  t.notOk(existsSync(target), 'nothing created at the target path')
})

t.test('unpublish is OK, twice', async (t) => {
  t.same(await client.unpublish('csi-ok', target), {})
  t.same(await client.unpublish('csi-ok', target), {})
  await expectStatus(t, client.unpublish('', target), status.INVALID_ARGUMENT, /volume_id is required/, 'no volume id')
  await expectStatus(t, client.unpublish('csi-ok', ''), status.INVALID_ARGUMENT, /target_path is required/, 'no target path')
})

t.test('secrets never reach the log', async (t) => {
  const req = client.publishRequest({
    volumeId: 'csi-secret',
    targetPath: target,
    attributes: { ...VALID, 'csi.cert-manager.io/pkcs12-enable': 'true', 'csi.cert-manager.io/pkcs12-password': PKCS12_PASSWORD },
  })
  req.volume_context = { ...req.volume_context, 'csi.storage.k8s.io/serviceAccount.tokens': JSON.stringify({ '': { token: SA_TOKEN } }) }
  req.secrets = { 'api-key': 'node-publish-secret-do-not-log' }
  await expectStatus(t, client.call('NodePublishVolume', req), status.UNAVAILABLE, undefined, 'publish with secrets')
  await driver.waitForLog(/"volume_id":"csi-secret".*"call failed"/)
  const logs = driver.logs()
  t.match(logs, /"method":"NodePublishVolume","volume_id":"csi-secret","req":/, 'the request was logged (debug)')
  t.notMatch(logs, PKCS12_PASSWORD)
  t.notMatch(logs, SA_TOKEN)
  t.notMatch(logs, 'node-publish-secret-do-not-log')
})

t.test('every call is logged with method, volume id, duration and code', async (t) => {
  const lines = driver
    .logs()
    .split('\n')
    .filter((l) => l.includes('"call finished"') || l.includes('"call failed"'))
    .map((l) => JSON.parse(l) as Record<string, unknown>)
  const publish = lines.find((l) => l.method === 'NodePublishVolume' && l.volume_id === 'csi-ok')
  t.match(publish, { code: 'UNAVAILABLE', duration_ms: Number })
  const unpublish = lines.find((l) => l.method === 'NodeUnpublishVolume' && l.code === 'OK')
  t.ok(unpublish, 'unpublish logged')
})

t.test('SIGTERM: socket removed, exit 0', async (t) => {
  client.close()
  const code = await driver.stop('SIGTERM')
  t.equal(code, 0)
  t.notOk(existsSync(socketPath), 'socket file removed')
  t.match(driver.logs(), /CSI server stopped/)
})
