// Real mounts: this needs root (CAP_SYS_ADMIN), which the build machines and
// CI have. Everything happens under a fresh temp directory and every mount is
// undone in teardown, even when a test fails half way.
import t, { type Test } from 'tap'
import { execFileSync } from 'node:child_process'
import { mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises'
import { readFileSync } from 'node:fs'
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

t.test('ensureTmpfs mounts a fresh dir, then finds it already there', needsRoot, async (t) => {
  const { base, mounter } = await setup(t)
  const dir = join(base, 'data', 'root')
  t.equal(await mounter.ensureTmpfs(dir, 4 * 1024 * 1024), 'mounted')
  const [m] = await mountsAt(mounter, dir)
  t.equal(m?.fsType, 'tmpfs')
  t.ok(m?.superOptions.includes('mode=700'), `mode=700 in ${m?.superOptions}`)
  t.ok(m?.superOptions.includes('size=4096k'), `size applied: ${m?.superOptions}`)
  t.equal(await mounter.ensureTmpfs(dir), 'existing')
  t.equal(await mounter.ensureTmpfs(join(dir, 'sub', 'dir')), 'existing', 'a directory inside a tmpfs')
  t.equal((await mountsAt(mounter, dir)).length, 1, 'not mounted twice')
  await t.rejects(mounter.ensureTmpfs(join(base, 'bad'), -1), RangeError)
})

t.test('bindReadOnly gives a read-only view; unmount is idempotent', needsRoot, async (t) => {
  const { base, mounter } = await setup(t)
  const src = join(base, 'src')
  await mounter.ensureTmpfs(src)
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

t.test('paths with spaces, and through symlinks', needsRoot, async (t) => {
  const { base, mounter } = await setup(t)
  const src = join(base, 'src dir')
  await mkdir(src)
  const target = join(base, 'target with\tspace')
  await mounter.bindReadOnly(src, target)
  t.equal(await mounter.isMountPoint(target), true, 'escaped mount point matched')
  const link = join(base, 'link')
  await symlink(target, link)
  t.equal(await mounter.isMountPoint(link), true, 'realpath resolved')
  await mounter.unmount(link)
  t.equal(await mounter.isMountPoint(target), false, 'unmounted through the link')
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
  await mounter.ensureTmpfs(join(base, 'tmp'))
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
    ['umount', target],
  ])
})

t.test('mount errors carry mount\'s own message', needsRoot, async (t) => {
  const { base, mounter } = await setup(t)
  await t.rejects(mounter.bindReadOnly(join(base, 'no-such-source'), join(base, 't')), /mount --bind .*no-such-source/)
})
