// The store's compare-and-swap: a writer that read revision N writes only if
// the record is still at N, so a reconcile step never overwrites what a CSI
// call recorded meanwhile, and the other way round.
import t, { type Test } from 'tap'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { RecordConflictError, VolumeStore, revisionOf } from '../../src/state/store.js'

interface Rec { version: 1; volumeId: string; desired: string; revision?: number }

async function setup(t: Test): Promise<VolumeStore<Rec>> {
  const dataRoot = await mkdtemp(join(tmpdir(), 'store-commit-'))
  t.teardown(() => rm(dataRoot, { recursive: true, force: true }))
  return new VolumeStore<Rec>({ dataRoot, validate: x => x as Rec, logger: { warn: () => {}, debug: () => {} } })
}

t.test('commit creates, bumps the revision, and refuses a stale writer', async t => {
  const store = await setup(t)
  const first = await store.commit({ version: 1, volumeId: 'v1', desired: 'published' }, undefined)
  t.equal(first.revision, 1)
  const reconcilerRead = (await store.load('v1'))!
  const publisherRead = (await store.load('v1'))!
  // The unpublish lands first...
  await store.commit({ ...publisherRead, desired: 'unpublished' }, revisionOf(publisherRead))
  // ...and the reconcile step that read before it must not undo it.
  await t.rejects(store.commit({ ...reconcilerRead, desired: 'published' }, revisionOf(reconcilerRead)), RecordConflictError)
  t.equal((await store.load('v1'))!.desired, 'unpublished')
  t.equal((await store.load('v1'))!.revision, 2)
})

t.test('creating over an existing record is a conflict; a record without a revision counts as 0', async t => {
  const store = await setup(t)
  await store.save({ version: 1, volumeId: 'old', desired: 'published' })
  await t.rejects(store.commit({ version: 1, volumeId: 'old', desired: 'x' }, undefined), RecordConflictError)
  const saved = await store.commit({ version: 1, volumeId: 'old', desired: 'x' }, 0)
  t.equal(saved.revision, 1)
})

t.test('of many writers that read the same revision, exactly one wins', async t => {
  const store = await setup(t)
  await store.commit({ version: 1, volumeId: 'v', desired: 'a' }, undefined)
  const results = await Promise.allSettled(Array.from({ length: 20 }, (_, i) => store.commit({ version: 1, volumeId: 'v', desired: `w${i}` }, 1)))
  t.equal(results.filter(r => r.status === 'fulfilled').length, 1)
  t.ok(results.filter(r => r.status === 'rejected').every(r => (r).reason instanceof RecordConflictError))
  t.equal((await store.load('v'))!.revision, 2)
})

t.test('removeIfUnchanged removes only the revision it read', async t => {
  const store = await setup(t)
  const r = await store.commit({ version: 1, volumeId: 'v', desired: 'unpublished' }, undefined)
  await store.commit({ ...r, desired: 'published' }, r.revision)
  await t.rejects(store.removeIfUnchanged('v', r.revision), RecordConflictError)
  t.ok(await store.load('v'), 'a republish that landed in between keeps the record')
  await store.removeIfUnchanged('v', 2)
  t.equal(await store.load('v'), undefined)
  await store.removeIfUnchanged('v', 2) // idempotent
})

t.test('remove never leaves a volume folder half deleted; sweep finishes what a kill interrupted', async t => {
  const store = await setup(t)
  const { mkdir, writeFile, readdir } = await import('node:fs/promises')
  await store.commit({ version: 1, volumeId: 'kept', desired: 'published' }, undefined)
  await store.commit({ version: 1, volumeId: 'gone', desired: 'unpublished' }, undefined)
  await store.remove('gone')
  t.same((await readdir(store.root)).sort(), ['kept'], 'removed in one rename and a delete')
  // What a kill during the delete leaves.
  await mkdir(join(store.root, '.removing-x-1234'), { recursive: true })
  await writeFile(join(store.root, '.removing-x-1234', 'record.json'), '{}')
  t.same((await store.list()).map(r => r.volumeId), ['kept'], 'list does not take it for a volume')
  t.same(await store.sweep(), ['.removing-x-1234'])
  t.same(await readdir(store.root), ['kept'])
  t.equal((await store.load('kept'))?.desired, 'published', 'a volume with its record is kept')
})
