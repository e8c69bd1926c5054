// The data root is checked with lstat before the driver trusts it: a
// directory someone else made or can write, or one reached through a
// symlink, is refused with one line, before any lock, mount or write.
import t from 'tap'
import { spawnSync } from 'node:child_process'
import { chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { UnsafeDataRootError, checkDataRoot, dataRootProblem, type DirStat } from '../../src/host/data-root.js'

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..')
const uid = process.getuid?.() ?? 0
const asRoot = { skip: uid === 0 ? false : 'chown to another user needs root' }

function scratch(t: { teardown(fn: () => unknown): void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'data-root-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}

const st = (o: Partial<DirStat> & { link?: boolean; dir?: boolean }): DirStat => ({
  isSymbolicLink: () => o.link ?? false, isDirectory: () => o.dir ?? true, uid: o.uid ?? 0, mode: o.mode ?? 0o40700,
})

t.test('what makes a directory unsafe', async t => {
  t.equal(dataRootProblem(st({}), 0), undefined, 'root-owned 0700 directory')
  t.equal(dataRootProblem(st({ mode: 0o40755 }), 0), undefined, '0755 is fine: no one else can write')
  t.equal(dataRootProblem(st({ link: true }), 0), 'is a symbolic link')
  t.equal(dataRootProblem(st({ dir: false }), 0), 'is not a directory')
  t.equal(dataRootProblem(st({ uid: 1000 }), 0), 'is owned by uid 1000, not by the driver (uid 0)')
  t.equal(dataRootProblem(st({ mode: 0o41777 }), 0), 'is writable by everyone (mode 1777)')
  t.equal(dataRootProblem(st({ mode: 0o40770 }), 0), 'is writable by its group (mode 0770)')
})

t.test('a missing data root is created with mode 0700; a safe one passes', async t => {
  const dir = scratch(t)
  const dataRoot = join(dir, 'a', 'b', 'data')
  await checkDataRoot(dataRoot)
  t.equal(statSync(dataRoot).mode & 0o777, 0o700)
  await checkDataRoot(dataRoot)
  t.pass('found again: fine')
})

t.test('unsafe data roots are refused, each with one line naming the problem', async t => {
  const dir = scratch(t)
  const target = join(dir, 'elsewhere')
  mkdirSync(target, { mode: 0o700 })
  const link = join(dir, 'link')
  symlinkSync(target, link)
  await t.rejects(checkDataRoot(link), new UnsafeDataRootError(`data root ${link} is a symbolic link; refusing to keep private keys there (remove it, or give another --data-root)`))

  const open = join(dir, 'world')
  mkdirSync(open)
  chmodSync(open, 0o777)
  await t.rejects(checkDataRoot(open), /data root .*\/world is writable by everyone \(mode 0777\)/)

  const file = join(dir, 'file')
  writeFileSync(file, '')
  await t.rejects(checkDataRoot(file), /is not a directory/)

  mkdirSync(join(target, 'data'), { mode: 0o700 })
  await t.rejects(checkDataRoot(join(link, 'data')), /has a symbolic link in its path \(it resolves to .*\/elsewhere\/data\)/)
})

t.test('a directory another user made first is refused', asRoot, async t => {
  const dir = scratch(t)
  const planted = join(dir, 'cert-manager-csi')
  mkdirSync(planted, { mode: 0o700 })
  chownSync(planted, 65534, 65534)
  await t.rejects(checkDataRoot(planted), /is owned by uid 65534, not by the driver \(uid 0\)/)
})

t.test('the driver refuses to start on an unsafe data root: one line, exit 1, nothing written there', async t => {
  const dir = scratch(t)
  const hostDir = join(dir, 'host-dir')
  mkdirSync(hostDir, { mode: 0o700 })
  const dataRoot = join(dir, 'cert-manager-csi')
  symlinkSync(hostDir, dataRoot)
  const r = spawnSync(process.execPath, ['--import', 'tsx', 'src/main.ts', '--node-id', 'n1', '--endpoint', `unix://${join(dir, 'csi.sock')}`, '--data-root', dataRoot, '--metrics-bind-address', '0'], {
    cwd: root, encoding: 'utf8', timeout: 60_000, env: { ...process.env, KUBERNETES_SERVICE_HOST: '' },
  })
  t.equal(r.status, 1, 'exit code 1')
  t.equal(r.stderr, `cert-manager-csi-driver: error: data root ${dataRoot} is a symbolic link; refusing to keep private keys there (remove it, or give another --data-root)\n`, 'one line on stderr')
  t.equal(r.stdout, '', 'nothing logged')
  t.same(readdirSync(hostDir), [], 'nothing written through the link')
  t.notOk(existsSync(join(dir, 'csi.sock')), 'no socket made')
})
