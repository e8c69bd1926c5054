// A volume's folder: its layout, and that each file goes where the layout
// says, with the modes the key needs, and that clearing keeps the record.
import t from 'tap'
import { mkdtemp, readdir, rm, stat, symlink, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { VolumeDir } from '../../src/state/volume-dir.js'
import { clearPublished, readPublished, writeAtomically } from '../../src/host/atomic-dir.js'

async function setup(t: { teardown(fn: () => unknown): void }) {
  const path = await mkdtemp(join(tmpdir(), 'volume-dir-'))
  t.teardown(() => rm(path, { recursive: true, force: true }))
  return new VolumeDir(path, { write: writeAtomically, read: readPublished, clear: clearPublished })
}

t.test('the request in flight: pending key and CSR, then dropped', async t => {
  const d = await setup(t)
  t.equal(await d.hasPendingKey(), false)
  t.equal(await d.readPendingCsr(), undefined)
  await d.writePendingKey('KEY')
  await d.writePendingCsr('CSR')
  t.equal(await d.hasPendingKey(), true)
  t.equal(await d.readPendingKey(), 'KEY')
  t.equal(await d.readPendingCsr(), 'CSR')
  t.equal((await stat(d.pendingKeyPath)).mode & 0o777, 0o600, 'the pending key is 0600')
  await d.dropPending()
  t.equal(await d.hasPendingKey(), false)
  t.equal(await d.readPendingCsr(), undefined)
})

t.test('the issued pair round-trips, with or without a CA', async t => {
  const d = await setup(t)
  t.equal(await d.readStored(), undefined)
  await d.writeStored({ keyPem: 'K', certificatePem: 'C' })
  t.same(await d.readStored(), { keyPem: 'K', certificatePem: 'C' })
  await d.writeStored({ keyPem: 'K2', certificatePem: 'C2', caPem: 'CA' })
  t.same(await d.readStored(), { keyPem: 'K2', certificatePem: 'C2', caPem: 'CA' })
})

t.test('a pending key that is a symbolic link is never read', async t => {
  const d = await setup(t)
  const elsewhere = join(d.path, '..', `elsewhere-${process.pid}`)
  await writeFile(elsewhere, 'HOST FILE')
  t.teardown(() => rm(elsewhere, { force: true }))
  await symlink(elsewhere, d.pendingKeyPath)
  await t.rejects(d.readPendingKey(), { code: 'ELOOP' })
})

t.test('clear removes everything but the record', async t => {
  const d = await setup(t)
  await writeFile(join(d.path, 'record.json'), '{}')
  await d.writePendingKey('KEY')
  await d.writeStored({ keyPem: 'K', certificatePem: 'C' })
  await d.writePublished([{ name: 'crt.pem', data: Buffer.from('C'), mode: 0o644 }])
  t.same(Object.fromEntries(await d.readPublished() ?? []), { 'crt.pem': Buffer.from('C') })
  await d.clear()
  t.equal(await d.readStored(), undefined)
  t.equal(await d.readPublished(), undefined)
  t.equal(await d.hasPendingKey(), false)
  t.ok((await readdir(d.path)).includes('record.json'), 'the store\'s record stays')
})
