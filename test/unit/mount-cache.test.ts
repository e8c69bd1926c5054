// One read of mountinfo serves every isMountPoint within its max age; our
// own mounts and unmounts drop it at once.
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

t.test('our own mount drops the cached answer at once', async t => {
  const now = 0
  const m = new Mounter({
    mountinfoPath: mountinfo, mountPointCacheMs: 60_000, now: () => now,
    // The fake mount(8) writes what the kernel would show.
    exec: async (cmd, args) => { if (cmd === 'mount' && args[0] === '--bind') writeFileSync(mountinfo, root + line(target)) },
  })
  writeFileSync(mountinfo, root)
  t.equal(await m.isMountPoint(target), false)
  await m.bindReadOnly(dir, target)
  t.equal(await m.isMountPoint(target), true, 'seen without waiting for the cache to expire')
})

t.test('0 reads every time', async t => {
  const m = new Mounter({ mountinfoPath: mountinfo, mountPointCacheMs: 0 })
  writeFileSync(mountinfo, root + line(target))
  t.equal(await m.isMountPoint(target), true)
  writeFileSync(mountinfo, root)
  t.equal(await m.isMountPoint(target), false)
})
