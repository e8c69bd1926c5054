// One driver per data root: a second driver refuses to start with one line
// naming the holder; a driver killed with SIGKILL lets go at once, so the
// DaemonSet's restart of it starts.
import t from 'tap'
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { DataRootInUseError, DataRootLock } from '../../src/host/data-root-lock.js'

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..')

function scratch(t: { teardown(fn: () => unknown): void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'data-root-lock-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}

// No kubeconfig: the driver serves Identity only, but takes its lock first.
function driverArgs(dir: string, name: string): string[] {
  return ['--import', 'tsx', 'src/main.ts', '--node-id', 'n1', '--endpoint', `unix://${join(dir, `${name}.sock`)}`, '--data-root', join(dir, 'data'), '--metrics-bind-address', '0']
}

async function startHolder(dir: string): Promise<ChildProcess> {
  const child = spawn(process.execPath, driverArgs(dir, 'first'), { cwd: root, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, KUBERNETES_SERVICE_HOST: '' } })
  let out = ''
  await new Promise<void>((resolve, reject) => {
    const onData = (c: Buffer): void => {
      out += c.toString()
      if (out.includes('CSI server listening')) resolve()
    }
    child.stdout.on('data', onData)
    child.stderr.on('data', onData)
    child.once('exit', code => reject(new Error(`first driver exited ${code}: ${out}`)))
    setTimeout(() => reject(new Error(`first driver not up in 30 s: ${out}`)), 30_000)
  })
  return child
}

t.test('a second driver on the same data root exits at once, naming the holder', async t => {
  const dir = scratch(t)
  const first = await startHolder(dir)
  t.teardown(() => first.kill('SIGKILL'))
  const started = Date.now()
  const second = spawnSync(process.execPath, driverArgs(dir, 'second'), { cwd: root, encoding: 'utf8', timeout: 30_000, env: { ...process.env, KUBERNETES_SERVICE_HOST: '' } })
  t.equal(second.status, 1)
  const lines = second.stderr.trim().split('\n')
  t.equal(lines.length, 1, `one line: ${second.stderr}`)
  t.match(lines[0], new RegExp(`^cert-manager-csi-driver: error: data root .*/data is in use by another cert-manager-csi-driver \\(pid ${first.pid}\\): one driver per node$`))
  t.comment(`refused after ${Date.now() - started} ms (includes tsx start-up and the lock's 1 s wait for a holder that is going away)`)
})

t.test('a driver killed with SIGKILL frees the data root for the next one', async t => {
  const dir = scratch(t)
  const first = await startHolder(dir)
  first.kill('SIGKILL')
  await new Promise(r => first.once('exit', r))
  const lock = await DataRootLock.acquire(join(dir, 'data'), { waitMs: 3000 })
  t.pass('acquired after the holder died')
  await lock.release()
})

t.test('in process: held until released, then free; a directory locked twice by one holder', async t => {
  const dir = join(scratch(t), 'data')
  const a = await DataRootLock.acquire(dir)
  await t.rejects(DataRootLock.acquire(dir, { waitMs: 200 }), DataRootInUseError)
  await a.release()
  const b = await DataRootLock.acquire(dir, { waitMs: 200 })
  await b.release()
})
