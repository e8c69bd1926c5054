import t, { type Test } from 'tap'
import { lstat, mkdir, mkdtemp, readFile, readdir, readlink, rm, stat, unlink, writeFile, symlink } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Worker } from 'node:worker_threads'
import { clearPublished, readPublished, writeAtomically, type FileToWrite } from '../../src/host/atomic-dir.js'
import { InvalidArgumentError } from '../../src/errors.js'

async function tempDir(t: Test): Promise<string> {
  const base = await mkdtemp(join(tmpdir(), 'atomic-dir-test-'))
  t.teardown(() => rm(base, { recursive: true, force: true }))
  return join(base, 'volume') // not created yet: writeAtomically makes it
}

const versions = async (dir: string) => (await readdir(dir)).filter((e) => e.startsWith('..') && e !== '..data').sort()
const asText = (m: Map<string, Buffer> | undefined) => (m ? Object.fromEntries([...m].map(([k, v]) => [k, v.toString()])) : undefined)

const pair = (gen: number): FileToWrite[] => [
  { name: 'a', data: `gen-${gen}`, mode: 0o400 },
  { name: 'b', data: Buffer.from(`gen-${gen}`), mode: 0o440 },
]

t.test('first write lays out version dir, ..data and visible links', async (t) => {
  const dir = await tempDir(t)
  const old = process.umask(0o077) // modes must not depend on the umask
  t.teardown(() => void process.umask(old))
  await writeAtomically(dir, [
    { name: 'crt.pem', data: 'CERT', mode: 0o440 },
    { name: 'key.pem', data: Buffer.from('KEY'), mode: 0o400 },
  ])
  const [version, ...others] = await versions(dir)
  t.same(others, [], 'exactly one version directory')
  t.match(version, /^\.\.\d{4}_\d\d_\d\d_\d\d_\d\d_\d\d\.\d{3}_[0-9a-f]{8}$/)
  t.equal(await readlink(join(dir, '..data')), version)
  t.same((await readdir(dir)).sort(), ['..data', version, 'crt.pem', 'key.pem'].sort())
  t.equal(await readlink(join(dir, 'crt.pem')), '..data/crt.pem')
  t.equal(await readlink(join(dir, 'key.pem')), '..data/key.pem')
  t.equal(await readFile(join(dir, 'crt.pem'), 'utf8'), 'CERT')
  t.equal((await stat(join(dir, version!))).mode & 0o777, 0o755)
  t.equal((await stat(join(dir, 'crt.pem'))).mode & 0o777, 0o440)
  t.equal((await stat(join(dir, 'key.pem'))).mode & 0o777, 0o400)
  t.same(asText(await readPublished(dir)), { 'crt.pem': 'CERT', 'key.pem': 'KEY' })
})

t.test('an update swaps content, adds and removes names, and drops the old version', async (t) => {
  const dir = await tempDir(t)
  await writeAtomically(dir, [
    { name: 'crt.pem', data: 'CERT-1', mode: 0o440 },
    { name: 'key.pem', data: 'KEY-1', mode: 0o400 },
    { name: 'keystore.p12', data: 'P12-1', mode: 0o440 },
  ])
  const [v1] = await versions(dir)
  await writeAtomically(dir, [
    { name: 'crt.pem', data: 'CERT-2', mode: 0o440 },
    { name: 'key.pem', data: 'KEY-2', mode: 0o400 },
    { name: 'ca.pem', data: 'CA-2', mode: 0o444 },
  ])
  const [v2, ...rest] = await versions(dir)
  t.same(rest, [])
  t.not(v2, v1, 'a new version directory')
  t.same((await readdir(dir)).filter((e) => !e.startsWith('..')).sort(), ['ca.pem', 'crt.pem', 'key.pem'])
  t.equal(await readFile(join(dir, 'crt.pem'), 'utf8'), 'CERT-2')
  t.equal(await readFile(join(dir, 'ca.pem'), 'utf8'), 'CA-2')
  await t.rejects(lstat(join(dir, 'keystore.p12')), { code: 'ENOENT' }, 'removed name is gone')
  t.same(asText(await readPublished(dir)), { 'ca.pem': 'CA-2', 'crt.pem': 'CERT-2', 'key.pem': 'KEY-2' })
  await writeAtomically(dir, [])
  t.same(asText(await readPublished(dir)), {}, 'publishing nothing leaves an empty version')
  t.same((await readdir(dir)).filter((e) => !e.startsWith('..')), [])
})

t.test('files are chowned to the owner', { skip: process.getuid?.() === 0 ? false : 'chown needs root' }, async (t) => {
  const dir = await tempDir(t)
  await writeAtomically(dir, [{ name: 'crt.pem', data: 'C', mode: 0o440 }], { uid: 1234, gid: 5678 })
  const st = await stat(join(dir, 'crt.pem'))
  t.equal(st.uid, 1234)
  t.equal(st.gid, 5678)
  t.equal(st.mode & 0o777, 0o440)
})

t.test('bad names and modes are refused before anything is written', async (t) => {
  const dir = await tempDir(t)
  const bad: Array<[string, FileToWrite[]]> = [
    ['empty', [{ name: '', data: 'x', mode: 0o400 }]],
    ['slash', [{ name: 'a/b', data: 'x', mode: 0o400 }]],
    ['dot', [{ name: '.hidden', data: 'x', mode: 0o400 }]],
    ['dotdot', [{ name: '..', data: 'x', mode: 0o400 }]],
    ['internal', [{ name: '..data', data: 'x', mode: 0o400 }]],
    ['nul', [{ name: 'a\0b', data: 'x', mode: 0o400 }]],
    ['duplicate', [{ name: 'a', data: 'x', mode: 0o400 }, { name: 'a', data: 'y', mode: 0o400 }]],
    ['mode', [{ name: 'a', data: 'x', mode: 0o4755 }]],
  ]
  for (const [label, files] of bad) {
    await t.rejects(writeAtomically(dir, files), InvalidArgumentError, label)
  }
  await t.rejects(writeAtomically(dir, bad[1]![1]), /must be a bare name/, 'message says what is wrong')
  await t.rejects(stat(dir), { code: 'ENOENT' }, 'nothing created')
})

t.test('readPublished notices a deleted link, and a rewrite heals it', async (t) => {
  const dir = await tempDir(t)
  t.equal(await readPublished(dir), undefined, 'nothing published in a missing dir')
  await writeAtomically(dir, pair(1))
  await unlink(join(dir, 'a'))
  t.same(asText(await readPublished(dir)), { b: 'gen-1' }, 'a is reported missing')
  await writeFile(join(dir, 'b'), 'tampered') // root writes through the 0440 link
  t.same(asText(await readPublished(dir)), { b: 'tampered' }, 'changed content is visible to a checker')
  await writeAtomically(dir, pair(2))
  t.same(asText(await readPublished(dir)), { a: 'gen-2', b: 'gen-2' })
  t.equal(await readlink(join(dir, 'a')), '..data/a')
})

t.test('readPublished with ..data pointing nowhere reads as unpublished', async (t) => {
  const dir = await tempDir(t)
  await writeAtomically(dir, pair(1))
  const [v] = await versions(dir)
  await rm(join(dir, v!), { recursive: true })
  t.equal(await readPublished(dir), undefined)
  await writeAtomically(dir, pair(2))
  t.same(asText(await readPublished(dir)), { a: 'gen-2', b: 'gen-2' })
})

t.test('leftovers of a crashed update are cleaned, stale entries replaced', async (t) => {
  const dir = await tempDir(t)
  await mkdir(join(dir, '..2020_01_01_00_00_00.000_deadbeef'), { recursive: true })
  await writeFile(join(dir, '..2020_01_01_00_00_00.000_deadbeef', 'a'), 'half written')
  await symlink('..2020_01_01_00_00_00.000_deadbeef', join(dir, '..data_tmp'))
  await writeFile(join(dir, 'a'), 'a plain file where a link belongs')
  await writeFile(join(dir, 'unrelated'), 'not ours')
  await writeAtomically(dir, pair(1))
  t.equal((await versions(dir)).length, 1, 'stray version removed')
  t.same((await readdir(dir)).filter((e) => e.startsWith('..data')), ['..data'])
  t.equal(await readlink(join(dir, 'a')), '..data/a')
  t.equal(await readFile(join(dir, 'unrelated'), 'utf8'), 'not ours', 'files we did not make are kept')
})

t.test('clearPublished removes everything written and is idempotent', async (t) => {
  const dir = await tempDir(t)
  await clearPublished(dir) // missing dir
  await writeAtomically(dir, pair(1))
  await writeFile(join(dir, 'unrelated'), 'not ours')
  await clearPublished(dir)
  t.same(await readdir(dir), ['unrelated'])
  t.equal(await readPublished(dir), undefined)
  await clearPublished(dir)
  t.same(await readdir(dir), ['unrelated'])
})

// A reader in another thread reads `a` then `b` through the visible names,
// with ..data read before and after. Version directories are never reused, so
// when ..data is the same before and after, no switch happened in between and
// the pair must agree. (Two separate opens across a switch can straddle it:
// that is true of any atomic writer, the kubelet's included, and is why
// readPublished reads through one resolution of ..data.)
const READER = `
const { workerData, parentPort } = require('node:worker_threads')
const { readFileSync, readlinkSync } = require('node:fs')
const { join } = require('node:path')
const stop = new Int32Array(workerData.stop)
const r = { stable: 0, stableMismatch: 0, stableError: 0, straddled: 0, straddledMismatch: 0, samples: [] }
while (Atomics.load(stop, 0) === 0) {
  let before
  try { before = readlinkSync(join(workerData.dir, '..data')) } catch { continue }
  let a, b, err
  try {
    a = readFileSync(join(workerData.dir, 'a'), 'utf8')
    b = readFileSync(join(workerData.dir, 'b'), 'utf8')
  } catch (e) { err = e }
  let after
  try { after = readlinkSync(join(workerData.dir, '..data')) } catch { after = undefined }
  if (before !== after) { r.straddled++; if (!err && a !== b) r.straddledMismatch++; continue }
  r.stable++
  if (err) { r.stableError++; if (r.samples.length < 5) r.samples.push(String(err)) }
  else if (a !== b) { r.stableMismatch++; if (r.samples.length < 5) r.samples.push(a + ' / ' + b) }
}
parentPort.postMessage(r)
`

t.test('concurrent readers never see a mixed pair during 200 updates', async (t) => {
  const dir = await tempDir(t)
  await writeAtomically(dir, pair(0))
  const stop = new SharedArrayBuffer(4)
  const worker = new Worker(READER, { eval: true, workerData: { dir, stop } })
  const result = new Promise<Record<string, unknown>>((resolve, reject) => {
    worker.once('message', resolve)
    worker.once('error', reject)
  })

  // An in-process reader too, through readPublished.
  let done = false
  let snapshots = 0
  const mixed: string[] = []
  const inProcess = (async () => {
    while (!done) {
      const m = asText(await readPublished(dir))
      snapshots++
      if (!m || m.a !== m.b) mixed.push(JSON.stringify(m))
      // readPublished reads synchronously: give the writer its turn.
      await new Promise(resolve => setImmediate(resolve))
    }
  })()

  for (let gen = 1; gen <= 200; gen++) await writeAtomically(dir, pair(gen))
  done = true
  await inProcess
  Atomics.store(new Int32Array(stop), 0, 1)
  const r = await result
  t.comment(`worker: ${JSON.stringify(r)}; readPublished snapshots: ${snapshots}`)
  t.equal(r.stableMismatch, 0, 'no mixed pair through the visible names')
  t.equal(r.stableError, 0, 'no missing file through the visible names')
  t.ok((r.stable as number) > 50, 'the reader actually raced the writer')
  t.same(mixed, [], 'readPublished never returns a mixed pair')
  t.ok(snapshots > 10)
  t.same(asText(await readPublished(dir)), { a: 'gen-200', b: 'gen-200' })
  t.equal((await versions(dir)).length, 1, 'old versions cleaned as it went')
})
