// The kubelet plugin registration service over a real unix socket. The client
// speaks raw protobuf bytes, encoded and decoded here by hand with the field
// numbers of the kubelet's k8s.io/kubelet/pkg/apis/pluginregistration/v1
// api.proto, so a wrong number in proto/pluginregistration.proto fails here
// and not only against a kubelet.

import { spawn } from 'node:child_process'
import { existsSync, lstatSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { Client, credentials } from '@grpc/grpc-js'
import t from 'tap'
import { RegistrationServer, registrationSocketPath } from '../../src/csi/registration.js'
import { createLogger } from '../../src/log/logger.js'

const root = fileURLToPath(new URL('../..', import.meta.url))
const dir = mkdtempSync(join(tmpdir(), 'csi-reg-'))
t.teardown(() => rmSync(dir, { recursive: true, force: true }))
let n = 0

const DRIVER = 'csi.cert-manager.io'
const ENDPOINT = '/var/lib/kubelet/plugins/csi.cert-manager.io/csi.sock'

// --- a minimal protobuf codec: varints, and length-delimited or varint fields.
function varint(n: number): Buffer {
  const out: number[] = []
  while (n > 0x7f) {
    out.push((n & 0x7f) | 0x80)
    n >>>= 7
  }
  out.push(n)
  return Buffer.from(out)
}
const stringField = (field: number, s: string) => Buffer.concat([varint((field << 3) | 2), varint(Buffer.byteLength(s)), Buffer.from(s)])
const boolField = (field: number, b: boolean) => Buffer.concat([varint(field << 3), varint(b ? 1 : 0)])

function decode(buf: Buffer): Array<{ field: number; wire: number; value: Buffer | number }> {
  const fields: Array<{ field: number; wire: number; value: Buffer | number }> = []
  let i = 0
  const readVarint = (): number => {
    let shift = 0
    let v = 0
    for (;;) {
      const b = buf[i++]!
      v += (b & 0x7f) * 2 ** shift
      if ((b & 0x80) === 0) return v
      shift += 7
    }
  }
  while (i < buf.length) {
    const tag = readVarint()
    const wire = tag & 7
    if (wire === 0) fields.push({ field: tag >>> 3, wire, value: readVarint() })
    else if (wire === 2) {
      const len = readVarint()
      fields.push({ field: tag >>> 3, wire, value: buf.subarray(i, i + len) })
      i += len
    } else throw new Error(`unexpected wire type ${wire}`)
  }
  return fields
}

function rawCall(socketPath: string, method: 'GetInfo' | 'NotifyRegistrationStatus', body: Buffer): Promise<Buffer> {
  const client = new Client(`unix://${socketPath}`, credentials.createInsecure())
  return new Promise<Buffer>((resolve, reject) => {
    client.makeUnaryRequest(
      `/pluginregistration.Registration/${method}`,
      (b: Buffer) => b,
      (b: Buffer) => b,
      body,
      { deadline: Date.now() + 5_000 },
      (err, res) => (err ? reject(err) : resolve(res!)),
    )
  }).finally(() => client.close())
}

async function setup(t: { teardown: (fn: () => unknown) => void }, registrationDir = join(dir, `r${n++}`)) {
  let logs = ''
  const logger = createLogger({ level: 'debug', format: 'json', destination: { write: (s: string) => void (logs += s) } })
  const server = new RegistrationServer({ registrationDir, driverName: DRIVER, endpoint: ENDPOINT, logger })
  t.teardown(() => server.stop())
  return { server, registrationDir, logs: () => logs }
}

t.test('socket name is node-driver-registrar\'s', async (t) => {
  t.equal(registrationSocketPath('/var/lib/kubelet/plugins_registry', DRIVER), '/var/lib/kubelet/plugins_registry/csi.cert-manager.io-reg.sock')
})

t.test('GetInfo answers with the kubelet\'s field numbers', async (t) => {
  const { server, registrationDir } = await setup(t)
  await server.start() // creates the missing directory
  const sock = join(registrationDir, 'csi.cert-manager.io-reg.sock')
  t.ok(lstatSync(sock).isSocket(), 'socket in the registration directory')

  const fields = decode(await rawCall(sock, 'GetInfo', Buffer.alloc(0)))
  const strings = (f: number) => fields.filter((x) => x.field === f && x.wire === 2).map((x) => (x.value as Buffer).toString())
  t.same(strings(1), ['CSIPlugin'], 'type = 1')
  t.same(strings(2), [DRIVER], 'name = 2')
  t.same(strings(3), [ENDPOINT], 'endpoint = 3')
  t.same(strings(4), ['1.0.0'], 'supported_versions = 4 (repeated)')
  t.same(server.info(), { type: 'CSIPlugin', name: DRIVER, endpoint: ENDPOINT, supported_versions: ['1.0.0'] })
})

t.test('NotifyRegistrationStatus: success and refusal are logged and kept', async (t) => {
  const { server, registrationDir, logs } = await setup(t)
  await server.start()
  const sock = registrationSocketPath(registrationDir, DRIVER)
  t.same(server.status(), {}, 'nothing heard yet')

  const ok = await rawCall(sock, 'NotifyRegistrationStatus', boolField(1, true))
  t.equal(ok.length, 0, 'empty RegistrationStatusResponse')
  t.same(server.status(), { registered: true })
  t.match(logs(), /"level":"info".*"msg":"registered with the kubelet"/)

  const why = 'RegisterPlugin error -- plugin validation failed with err: highest supported version 0.3.0 is not supported'
  await rawCall(sock, 'NotifyRegistrationStatus', Buffer.concat([boolField(1, false), stringField(2, why)]))
  t.same(server.status(), { registered: false, error: why })
  const line = logs()
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as Record<string, unknown>)
    .find((l) => l.level === 'error')
  t.ok(line, 'an error line')
  t.equal(line?.error, why, 'the kubelet\'s reason is a field')
  t.match(String(line?.msg), /the kubelet refused the registration: RegisterPlugin error/)

  // proto3 omits false and empty: an empty message is "not registered, no reason".
  await rawCall(sock, 'NotifyRegistrationStatus', Buffer.alloc(0))
  t.same(server.status(), { registered: false, error: '' })
})

t.test('a stale socket from a killed driver is replaced; any other file is not', async (t) => {
  const registrationDir = join(dir, `stale${n++}`)
  mkdirSync(registrationDir)
  const sock = registrationSocketPath(registrationDir, DRIVER)
  // A socket file nobody listens on, as SIGKILL leaves it.
  const holder = spawn(process.execPath, ['-e', `require('net').createServer().listen(${JSON.stringify(sock)}, () => console.log('up'))`], { stdio: ['ignore', 'pipe', 'inherit'] })
  await new Promise((r) => holder.stdout.once('data', r))
  holder.kill('SIGKILL')
  await new Promise((r) => holder.once('exit', r))
  t.ok(lstatSync(sock).isSocket(), 'stale socket present')

  const { server, logs } = await setup(t, registrationDir)
  await server.start()
  t.match(logs(), /removed stale registration socket/)
  const fields = decode(await rawCall(sock, 'GetInfo', Buffer.alloc(0)))
  t.ok(fields.length > 0, 'the new server answers')
  await server.stop()
  t.notOk(existsSync(sock), 'stop removes the socket (the kubelet deregisters)')

  const otherDir = join(dir, `file${n++}`)
  mkdirSync(otherDir)
  writeFileSync(registrationSocketPath(otherDir, DRIVER), 'not a socket')
  const other = await setup(t, otherDir)
  await t.rejects(other.server.start(), /exists and is not a socket/)
})

t.test('the driver serves registration with --kubelet-registration-path and withdraws it on SIGTERM', async (t) => {
  const base = join(dir, `main${n++}`)
  const registrationDir = join(base, 'plugins_registry')
  const csiSock = join(base, 'plugins', DRIVER, 'csi.sock')
  const proc = spawn(
    process.execPath,
    [
      '--import', 'tsx', 'src/main.ts',
      '--node-id', 'n1',
      '--endpoint', `unix://${csiSock}`,
      '--data-root', join(base, 'data'),
      '--metrics-bind-address', '0',
      '--kubelet-registration-path', csiSock,
      '--plugin-registration-dir', registrationDir,
    ],
    { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] },
  )
  let out = ''
  proc.stdout.setEncoding('utf8').on('data', (s: string) => (out += s))
  proc.stderr.setEncoding('utf8').on('data', (s: string) => (out += s))
  const exited = new Promise<number | null>((r) => proc.once('exit', (code) => r(code)))
  t.teardown(() => void proc.kill('SIGKILL'))

  const sock = registrationSocketPath(registrationDir, DRIVER)
  const deadline = Date.now() + 30_000
  while (!out.includes('registration server listening')) {
    if (proc.exitCode !== null) throw new Error(`driver exited: ${out}`)
    if (Date.now() > deadline) throw new Error(`no registration socket: ${out}`)
    await new Promise((r) => setTimeout(r, 100))
  }
  t.ok(existsSync(csiSock), 'the CSI socket is up before registration is offered')
  const fields = decode(await rawCall(sock, 'GetInfo', Buffer.alloc(0)))
  t.same(
    fields.filter((f) => f.field === 3).map((f) => (f.value as Buffer).toString()),
    [csiSock],
    'endpoint is the --kubelet-registration-path',
  )
  proc.kill('SIGTERM')
  t.equal(await exited, 0, 'clean exit')
  t.notOk(existsSync(sock), 'registration socket removed')
  t.notOk(existsSync(csiSock), 'CSI socket removed')
})
