import t from 'tap'
import { tmpdir } from 'node:os'
import { SpaceWatch, hasRoom } from '../../src/host/space-watch.js'
import { FakeClock } from '../helpers/fake-clock.js'

const MiB = 1 << 20
const fs = (freeBytes: number, totalBytes = 256 * MiB) => ({ bavail: freeBytes / 4096, bsize: 4096, blocks: totalBytes / 4096 })

t.test('room is 1 MiB free, or a sixteenth of a small filesystem', async t => {
  t.notOk(hasRoom(fs(0)), 'nothing free')
  t.notOk(hasRoom(fs(64 * 1024)), 'a few freed blocks are not room')
  t.ok(hasRoom(fs(MiB)), '1 MiB on 256 MiB')
  t.notOk(hasRoom(fs(128 * 1024, 4 * MiB)), '128 KiB on a 4 MiB tmpfs is under a sixteenth')
  t.ok(hasRoom(fs(256 * 1024, 4 * MiB)), '256 KiB on a 4 MiB tmpfs is a sixteenth')
})

t.test('polls only once armed, reports room once, then rests until the next full', async t => {
  const clock = new FakeClock()
  let free = 0
  const calls: number[] = []
  const rooms: number[] = []
  const w = new SpaceWatch({
    path: '/data', pollMs: 2_000,
    statfs: async () => (calls.push(clock.now()), fs(free)),
    setTimeout: (fn, ms) => clock.setTimeout(fn, ms), clearTimeout: h => clock.clearTimeout(h),
    onRoom: b => rooms.push(b),
  })
  await clock.advance(60_000)
  t.same(calls, [], 'not armed: no polling at all')
  w.noteFull()
  w.noteFull()
  t.equal(clock.pending, 1, 'arming twice arms one timer')
  await clock.advance(6_000)
  t.same(calls, [62_000, 64_000, 66_000], 'polls every 2 s while full, from when it was armed')
  t.same(rooms, [])
  free = 8 * MiB
  await clock.advance(2_000)
  t.same(rooms, [8 * MiB], 'room reported with the free bytes')
  t.notOk(w.armed, 'disarmed after reporting')
  await clock.advance(60_000)
  t.equal(calls.length, 4, 'no polling after room was reported')
  w.noteFull()
  t.ok(w.armed, 'a new full arms it again')
  w.stop()
  t.equal(clock.pending, 0, 'stop clears the timer')
  w.noteFull()
  t.notOk(w.armed, 'stopped for good')
})

t.test('a failing statfs is reported and polling goes on', async t => {
  const clock = new FakeClock()
  const errors: unknown[] = []
  let fail = true
  const rooms: number[] = []
  const w = new SpaceWatch({
    path: '/data',
    statfs: async () => { if (fail) throw Object.assign(new Error('EIO'), { code: 'EIO' }); return fs(MiB) },
    setTimeout: (fn, ms) => clock.setTimeout(fn, ms), clearTimeout: h => clock.clearTimeout(h),
    onRoom: b => rooms.push(b), onError: e => errors.push(e),
  })
  w.noteFull()
  await clock.advance(4_000)
  t.equal(errors.length, 2)
  fail = false
  await clock.advance(2_000)
  t.same(rooms, [MiB])
})

t.test('the real statfs answers in the shape hasRoom reads', async t => {
  const clock = new FakeClock()
  const rooms: number[] = []
  const w = new SpaceWatch({ path: tmpdir(), setTimeout: (fn, ms) => clock.setTimeout(fn, ms), clearTimeout: h => clock.clearTimeout(h), onRoom: b => rooms.push(b) })
  w.noteFull()
  clock.settle = () => new Promise(r => setTimeout(r, 200))
  await clock.advance(2_000)
  t.equal(rooms.length, 1, 'the machine\'s temp dir has room')
  t.ok(rooms[0]! > 0 && Number.isFinite(rooms[0]), `free bytes are a positive number (${rooms[0]})`)
})
