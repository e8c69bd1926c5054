// Publishes a set of files so that a reader never sees a mix of two versions
// (a new key with the old certificate), the way the kubelet's AtomicWriter
// does for Secret volumes:
//
//   dir/..2025_01_02_03_04_05.678_1a2b3c/   the real files of one version
//   dir/..data -> ..2025_01_02_03_04_05.678_1a2b3c
//   dir/crt.pem -> ..data/crt.pem           what the pod opens
//
// A new version goes into a fresh timestamped directory, and one rename of a
// symlink over `..data` switches every file at once.
//
// One writer per directory: the reconciler never runs two updates of one
// volume at a time, and this module relies on it.

import { randomBytes } from 'node:crypto'
import { chmod, mkdir, open, readdir, readlink, rename, rm, symlink, unlink } from 'node:fs/promises'
import { readdirSync, readlinkSync } from 'node:fs'
import { fsyncPath, isNotFound, readNoFollow } from './files.js'
import { join } from 'node:path'
import { InvalidArgumentError } from '../errors.js'

export interface FileToWrite {
  name: string
  data: Buffer | string
  mode: number
}

const DATA = '..data'
const DATA_TMP = '..data_tmp'
const LINK_TMP = '..link_tmp'
// Names the driver itself creates all start with '..'; user names may not
// start with '.', so the two can never collide.
const isInternal = (name: string) => name.startsWith('..')

function checkFiles(files: readonly FileToWrite[]): void {
  const seen = new Set<string>()
  for (const f of files) {
    if (f.name === '' || f.name.includes('/') || f.name.includes('\0') || f.name.startsWith('.')) {
      throw new InvalidArgumentError(`file name ${JSON.stringify(f.name)} must be a bare name: not empty, no '/', not starting with '.'`)
    }
    if (seen.has(f.name)) throw new InvalidArgumentError(`file name ${JSON.stringify(f.name)} appears twice`)
    seen.add(f.name)
    if (!Number.isInteger(f.mode) || f.mode < 0 || f.mode > 0o777) {
      throw new InvalidArgumentError(`file ${f.name}: mode ${f.mode} is not a permission mode`)
    }
  }
}

// Sorts by time when listed, like the kubelet's `..2006_01_02_15_04_05.x`.
function versionDirName(): string {
  const stamp = new Date().toISOString().replace(/[-:T]/g, '_').replace('Z', '')
  return `..${stamp}_${randomBytes(4).toString('hex')}`
}

/**
 * Writes `files` as the new content of `dir`, replacing whatever was
 * published before in one atomic step. Names absent from `files` disappear.
 */
export async function writeAtomically(dir: string, files: FileToWrite[], owner?: { uid: number; gid: number }): Promise<void> {
  checkFiles(files)
  await mkdir(dir, { recursive: true, mode: 0o755 })

  const version = versionDirName()
  const versionPath = join(dir, version)
  await mkdir(versionPath)
  // Explicit chmod: the umask could have taken the bits a non-root pod needs
  // to reach its files. The bind mount is read-only anyway.
  await chmod(versionPath, 0o755)
  for (const f of files) await writeFile(join(versionPath, f.name), f.data, f.mode, owner)
  await fsyncPath(versionPath)

  // The switch: a symlink made aside, then renamed over ..data. rename(2)
  // replaces the old link in one step, so ..data always points somewhere whole.
  await rm(join(dir, DATA_TMP), { force: true })
  await symlink(version, join(dir, DATA_TMP))
  await rename(join(dir, DATA_TMP), join(dir, DATA))
  await fsyncPath(dir)

  await linkNames(dir, new Set(files.map((f) => f.name)))
  await removeVersionsExcept(dir, version)
}

async function writeFile(path: string, data: Buffer | string, mode: number, owner?: { uid: number; gid: number }): Promise<void> {
  const fh = await open(path, 'wx', mode)
  try {
    await fh.writeFile(data)
    await fh.chmod(mode) // the umask applies to open()'s mode, not to chmod
    if (owner !== undefined) await fh.chown(owner.uid, owner.gid)
    await fh.sync()
  } finally {
    await fh.close()
  }
}

/**
 * Points `dir/<name>` at `..data/<name>` for every current name, and removes
 * our links for names no longer published. A link already right is left
 * alone, so an update that keeps the same names touches no user-visible entry.
 */
async function linkNames(dir: string, names: ReadonlySet<string>): Promise<void> {
  for (const name of names) {
    const path = join(dir, name)
    const want = `${DATA}/${name}`
    const have = await readlink(path).catch(() => undefined)
    if (have === want) continue
    // Made aside and renamed into place: replaces a stale entry in one step.
    await rm(join(dir, LINK_TMP), { force: true })
    await symlink(want, join(dir, LINK_TMP))
    await rename(join(dir, LINK_TMP), path)
  }
  for (const entry of await readdir(dir)) {
    if (isInternal(entry) || names.has(entry)) continue
    if ((await readlink(join(dir, entry)).catch(() => undefined)) === `${DATA}/${entry}`) {
      await unlink(join(dir, entry))
    }
  }
}

// Removes old versions, including any left by a crash half way through an
// update (a directory written but never switched to).
async function removeVersionsExcept(dir: string, keep: string | undefined): Promise<void> {
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    if (entry.isDirectory() && isInternal(entry.name) && entry.name !== keep) {
      await rm(join(dir, entry.name), { recursive: true, force: true })
    }
  }
}

/**
 * The published files, name → content, read from one version: never a mix.
 * A name whose user-visible link is missing or wrong is left out, so that
 * a caller comparing with what should be there notices and publishes again.
 * Undefined when nothing is published.
 *
 * Read synchronously, as readNoFollow reads (files.ts says why): a dozen
 * links and small files on the driver's tmpfs. Through the promise API this
 * was most of an idle node's CPU, the resync reading every volume's files.
 */
export async function readPublished(dir: string): Promise<Map<string, Buffer> | undefined> {
  // Someone changing the folder between reading ..data and reading the files
  // removes the old version under us: read again from the new one.
  for (let attempt = 0; attempt < 5; attempt++) {
    const version = linkTarget(join(dir, DATA))
    if (version === undefined) return undefined
    try {
      const out = new Map<string, Buffer>()
      for (const name of readdirSync(join(dir, version))) {
        if (linkTarget(join(dir, name)) !== `${DATA}/${name}`) continue
        out.set(name, await readNoFollow(join(dir, version, name)))
      }
      return out
    } catch (err) {
      if (!isNotFound(err)) throw err
      // ..data did not move: it points at a version that is gone.
      if (linkTarget(join(dir, DATA)) === version) return undefined
    }
  }
  throw new Error(`${dir}: published files kept changing while being read`)
}

/** Where a symlink points, or undefined if there is none (or it is not a link). */
function linkTarget(path: string): string | undefined {
  try {
    return readlinkSync(path)
  } catch {
    return undefined
  }
}

/** Removes everything writeAtomically made in `dir`. Idempotent. */
export async function clearPublished(dir: string): Promise<void> {
  let entries: string[]
  try {
    entries = await readdir(dir)
  } catch (err) {
    if (isNotFound(err)) return
    throw err
  }
  // Visible links first, so no reader follows a link into a half-removed version.
  for (const entry of entries) {
    if (isInternal(entry)) continue
    const path = join(dir, entry)
    if ((await readlink(path).catch(() => undefined)) === `${DATA}/${entry}`) await unlink(path)
  }
  for (const name of [DATA, DATA_TMP, LINK_TMP]) await rm(join(dir, name), { force: true })
  await removeVersionsExcept(dir, undefined)
}
