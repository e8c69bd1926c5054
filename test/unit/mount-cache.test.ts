// One read of mountinfo serves every isMountPoint within its max age; our
// own mounts join it, our unmounts and failures drop it.
import t from 'tap'
import { mkdtempSync, realpathSync, writeFileSync, mkdirSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Mounter } from '../../src/host/mounts.js'

const dir = realpathSync(mkdtempSync(join(tmpdir(), 'mount-cache-')))
const target = join(dir, 'target')
mkdirSync(target)
const mountinfo = join(dir, 'mountinfo')
const line = (point: string): string => `36 25 0:32 / ${point} rw,relatime shared:1 - tmpfs tmpfs rw\n`
const root = '22 1 8:1 / / rw,relatime - ext4 /dev/vda rw\n'

t.test('answers from one read within the max age, reads again after it', async t => {
  let now = 0
  const calls: string[][] = []
  const m = new Mounter({ mountinfoPath: mountinfo, mountPointCacheMs: 1000, now: () => now, exec: async (cmd, args) => void calls.push([cmd, ...args]) })
  writeFileSync(mountinfo, root + line(target))
  t.equal(await m.isMountPoint(target), true)
  writeFileSync(mountinfo, root) // unmounted behind our back
  now = 999
  t.equal(await m.isMountPoint(target), true, 'still the cached answer within 1s')
  now = 1000
  t.equal(await m.isMountPoint(target), false, 'a fresh read after 1s')
})

t.test('our own mount joins the cached answer at once, with no new read of mountinfo', async t => {
  const now = 0
  const m = new Mounter({
    mountinfoPath: mountinfo, mountPointCacheMs: 60_000, now: () => now,
    // The fake mount(8) leaves mountinfo as it is: only the cache can say mounted.
    exec: async () => {},
  })
  writeFileSync(mountinfo, root)
  t.equal(await m.isMountPoint(target), false)
  await m.bindReadOnly(dir, target)
  t.equal(await m.isMountPoint(target), true, 'seen without waiting for the cache to expire')
  t.equal(await m.isMountPoint(join(dir, 'elsewhere')), false, 'and nothing else joined it')
})

t.test('a mount that fails drops the cached answer: the next check reads mountinfo', async t => {
  const m = new Mounter({
    mountinfoPath: mountinfo, mountPointCacheMs: 60_000, now: () => 0,
    exec: async (cmd, args) => {
      if (cmd === 'mount' && args[0] === '--bind') writeFileSync(mountinfo, root + line(target))
      if (cmd === 'mount' && args[0] === '-o') throw new Error('remount refused')
    },
  })
  writeFileSync(mountinfo, root)
  t.equal(await m.isMountPoint(target), false)
  await t.rejects(m.bindReadOnly(dir, target), /remount refused/)
  t.equal(await m.isMountPoint(target), true, 'what the kernel shows (the fake umount left the bind), read afresh')
})

t.test('0 reads every time', async t => {
  const m = new Mounter({ mountinfoPath: mountinfo, mountPointCacheMs: 0 })
  writeFileSync(mountinfo, root + line(target))
  t.equal(await m.isMountPoint(target), true)
  writeFileSync(mountinfo, root)
  t.equal(await m.isMountPoint(target), false)
})
