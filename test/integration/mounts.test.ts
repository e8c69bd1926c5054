// Real mounts: this needs root (CAP_SYS_ADMIN), which the build machines and
// CI have. Everything happens under a fresh temp directory and every mount is
// undone in teardown, even when a test fails half way.
import t, { type Test } from 'tap'
import { execFileSync } from 'node:child_process'
import { mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises'
import { chmodSync, readFileSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Mounter, parseMountInfo, type Exec } from '../../src/host/mounts.js'

const needsRoot = { skip: process.getuid?.() === 0 ? false : 'mount tests need root' }

/** Unmounts whatever is left under `base`, deepest and newest first. */
function unmountAllUnder(base: string): void {
  for (let round = 0; round < 20; round++) {
    const left = parseMountInfo(readFileSync('/proc/self/mountinfo', 'utf8'))
      .filter((m) => m.mountPoint.startsWith(base + '/'))
      .sort((a, b) => b.mountPoint.length - a.mountPoint.length || b.mountId - a.mountId)
    if (left.length === 0) return
    for (const m of left) {
      try {
        execFileSync('umount', [m.mountPoint], { stdio: 'ignore' })
      } catch {
        // Retried next round (a parent may be busy until its child is gone).
      }
    }
  }
}

async function setup(t: Test) {
  const base = await mkdtemp(join(tmpdir(), 'mounts-test-'))
  t.teardown(async () => {
    unmountAllUnder(base)
    await rm(base, { recursive: true, force: true })
  })
  return { base, mounter: new Mounter() }
}

const mountsAt = async (m: Mounter, p: string) => (await m.mounts()).filter((x) => x.mountPoint === p)

t.test('mountPrivateTmpfs mounts its own tmpfs, and remounts it with the same options when found', needsRoot, async (t) => {
  const { base, mounter } = await setup(t)
  const dir = join(base, 'data', 'root')
  await mkdir(dir, { recursive: true })
  t.equal(await mounter.mountPrivateTmpfs(dir, 4 * 1024 * 1024), 'mounted')
  const [m] = await mountsAt(mounter, dir)
  t.equal(m?.fsType, 'tmpfs')
  t.ok(m?.superOptions.includes('mode=700'), `mode=700 in ${m?.superOptions.join(",")}`)
  t.ok(m?.superOptions.includes('size=4096k'), `size applied: ${m?.superOptions.join(",")}`)
  for (const o of ['nosuid', 'nodev', 'noexec']) t.ok(m?.options.includes(o), `${o} in ${m?.options.join(",")}`)
  await writeFile(join(dir, 'kept'), 'a volume of the previous run')
  chmodSync(dir, 0o777)
  t.equal(await mounter.mountPrivateTmpfs(dir, 8 * 1024 * 1024), 'remounted', 'found: remounted, not mounted twice')
  const again = await mountsAt(mounter, dir)
  t.equal(again.length, 1, 'one tmpfs')
  t.ok(again[0]?.superOptions.includes('size=8192k'), `the new size applied: ${again[0]?.superOptions.join(",")}`)
  t.equal(await readFile(join(dir, 'kept'), 'utf8'), 'a volume of the previous run', 'its files kept')
  t.equal(statSync(dir).mode & 0o777, 0o700, 'mode 0700 again')
  const inner = join(dir, 'sub')
  await mkdir(inner)
  t.equal(await mounter.mountPrivateTmpfs(inner), 'mounted', 'a directory inside someone else\'s tmpfs gets its own')
  await t.rejects(mounter.mountPrivateTmpfs(join(base, 'bad'), -1), RangeError)
})

t.test('a symbolic link is never followed: not a mount point, not unmounted, not a bind target', needsRoot, async (t) => {
  const { base, mounter } = await setup(t)
  const src = join(base, 'src')
  const real = join(base, 'real')
  await mkdir(src)
  await mounter.bindReadOnly(src, real)
  const link = join(base, 'link')
  await symlink(real, link)
  t.equal(await mounter.isMountPoint(link), false, 'a link to a mount point is not one')
  await mounter.unmount(link)
  t.equal(await mounter.isMountPoint(real), true, 'unmount through the link left the real mount alone')
  const hostDir = join(base, 'host-secrets')
  await mkdir(hostDir)
  const planted = join(base, 'pods', 'uid', 'mount')
  await mkdir(join(base, 'pods', 'uid'), { recursive: true })
  await symlink(hostDir, planted)
  await t.rejects(mounter.bindReadOnly(src, planted), /not a directory \(a symbolic link is never followed\)/)
  t.equal(await mounter.isMountPoint(hostDir), false, 'nothing mounted on the link\'s target')
  await mounter.unmount(real)
})

t.test('bindReadOnly gives a read-only view; unmount is idempotent', needsRoot, async (t) => {
  const { base, mounter } = await setup(t)
  const src = join(base, 'src')
  await mkdir(src)
  await mounter.mountPrivateTmpfs(src)
  await writeFile(join(src, 'crt.pem'), 'cert-1')
  const target = join(base, 'pods', 'uid', 'volumes', 'vol') // created by bindReadOnly
  t.equal(await mounter.isMountPoint(target), false, 'missing path is not a mount point')

  await mounter.bindReadOnly(src, target)
  t.equal(await mounter.isMountPoint(target), true)
  t.equal(await mounter.isMountPoint(join(base, 'pods')), false, 'its parent is not')
  t.equal(await readFile(join(target, 'crt.pem'), 'utf8'), 'cert-1')
  await t.rejects(writeFile(join(target, 'crt.pem'), 'evil'), { code: 'EROFS' }, 'overwrite refused')
  await t.rejects(writeFile(join(target, 'new'), 'x'), { code: 'EROFS' }, 'create refused')
  const [m] = await mountsAt(mounter, target)
  t.ok(m?.options.includes('ro'), 'mountinfo says ro')

  await writeFile(join(src, 'crt.pem'), 'cert-2')
  t.equal(await readFile(join(target, 'crt.pem'), 'utf8'), 'cert-2', 'the source stays writable and updates show through')

  await mounter.unmount(target)
  t.equal(await mounter.isMountPoint(target), false)
  await mounter.unmount(target)
  await mounter.unmount(join(base, 'never', 'there'))
  t.pass('unmounting twice and unmounting a missing path are fine')
})

t.test('a bind mount on the same filesystem is still a mount point', needsRoot, async (t) => {
  // The case device-number comparison gets wrong: source and target share a device.
  const { base, mounter } = await setup(t)
  const src = join(base, 'same-fs-src')
  await mkdir(src)
  const target = join(base, 'same-fs-target')
  await mounter.bindReadOnly(src, target)
  t.equal(await mounter.isMountPoint(target), true)
  await mounter.unmount(target)
})

t.test('paths with spaces, and a symlinked folder above the target (a kubelet root may be one)', needsRoot, async (t) => {
  const { base, mounter } = await setup(t)
  const src = join(base, 'src dir')
  await mkdir(src)
  await mkdir(join(base, 'real root'))
  const linkedRoot = join(base, 'root-link')
  await symlink(join(base, 'real root'), linkedRoot)
  const target = join(linkedRoot, 'target with\tspace')
  await mounter.bindReadOnly(src, target)
  t.equal(await mounter.isMountPoint(target), true, 'escaped mount point matched, through the folder link')
  t.equal(await mounter.isMountPoint(join(base, 'real root', 'target with\tspace')), true, 'the real path too')
  await mounter.unmount(target)
  t.equal(await mounter.isMountPoint(target), false, 'unmounted')
})

t.test('unmount removes every stacked mount', needsRoot, async (t) => {
  const { base, mounter } = await setup(t)
  const a = join(base, 'a')
  const b = join(base, 'b')
  await mkdir(a)
  await mkdir(b)
  const target = join(base, 'stack')
  await mounter.bindReadOnly(a, target)
  await mounter.bindReadOnly(b, target)
  await mkdir(join(base, 'tmp'))
  await mounter.mountPrivateTmpfs(join(base, 'tmp'))
  execFileSync('mount', ['--bind', join(base, 'tmp'), target])
  t.equal((await mountsAt(mounter, target)).length, 3, 'three mounts stacked on one point')
  await mounter.unmount(target)
  t.equal(await mounter.isMountPoint(target), false)
})

t.test('a failed read-only remount undoes the bind', needsRoot, async (t) => {
  const { base, mounter: real } = await setup(t)
  const calls: string[][] = []
  const failRemount: Exec = async (cmd, args) => {
    calls.push([cmd, ...args])
    if (args.includes('remount,bind,ro')) throw new Error('remount refused')
    execFileSync(cmd, args)
  }
  const mounter = new Mounter({ exec: failRemount })
  const src = join(base, 'src')
  await mkdir(src)
  const target = join(base, 'target')
  await t.rejects(mounter.bindReadOnly(src, target), /remount refused/)
  t.equal(await real.isMountPoint(target), false, 'no writable bind left behind')
  t.same(calls.map((c) => c.slice(0, 3)), [
    ['mount', '--bind', src],
    ['mount', '-o', 'remount,bind,ro'],
    ['umount', '--no-canonicalize', target],
  ])
})

t.test('mount errors carry mount\'s own message', needsRoot, async (t) => {
  const { base, mounter } = await setup(t)
  await t.rejects(mounter.bindReadOnly(join(base, 'no-such-source'), join(base, 't')), /mount --bind .*no-such-source/)
})
