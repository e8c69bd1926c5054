// The per-node desired-state store: one directory per volume under
// <dataRoot>/volumes, each holding record.json. It is the source of truth
// across restarts, so every write is atomic and durable, and one bad record
// never takes the others down with it.
//
// There is deliberately no index file: saving one volume touches only that
// volume's directory, so the cost stays flat from 10 to 1000 volumes.

import { createHash, randomBytes } from 'node:crypto'
import { mkdir, readdir, rename, rm } from 'node:fs/promises'
import { isNotFound, readNoFollow, writeFileAtomic } from '../host/files.js'
import { basename, dirname, join, relative, sep } from 'node:path'
import { watch as chokidarWatch } from 'chokidar'
import { setTimeout as sleep } from 'node:timers/promises'

export const RECORD_FILE = 'record.json'
const TEMP_MARK = '.tmp-'
const CORRUPT_MARK = '.corrupt-'
/** How long a record that does not parse is given to finish being written by someone else. */
const TORN_READ_RETRY_MS = 100
const REMOVING_MARK = '.removing-'

// Ids that are safe as a directory name are used as is, which keeps the tree
// readable for an operator; anything else is hashed. A safe id that itself
// looks like a hashed name ("h-...") is hashed too, so that two distinct ids
// can never share a directory.
const SAFE_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/
const HASHED_PREFIX = 'h-'

function digest(text: string): string {
  return createHash('sha256').update(text).digest('base64')
}

export function volumeDirName(volumeId: string): string {
  if (SAFE_ID.test(volumeId) && !volumeId.startsWith(HASHED_PREFIX)) return volumeId
  return HASHED_PREFIX + createHash('sha256').update(volumeId).digest('hex')
}

/** Only the logger methods the store uses. */
export interface StoreLogger {
  warn(obj: object, msg: string): void
  debug(obj: object, msg: string): void
}

/** Answers the record, or throws when `x` is not one. */
export type Validator<R> = (x: unknown) => R

export interface VolumeStoreOptions<R> {
  dataRoot: string
  validate: Validator<R>
  logger: StoreLogger
  onCorrupt?: (path: string, err: unknown) => void
  /** Milliseconds since the epoch; names set-aside files. */
  now?: () => number
}

export type StoreChangeHandler = (volumeId: string | undefined, path: string) => void

/**
 * commit() found the record changed since the caller read it (an unpublish
 * landed during a reconcile, say): nothing was written; read again and redo.
 */
export class RecordConflictError extends Error {
  override readonly name = 'RecordConflictError'
  readonly code = 'RECORD_CONFLICT'
}

/** What commit() compares: bumped by every commit, absent in records made before it existed. */
export const revisionOf = (r: { revision?: number } | undefined): number | undefined => (r === undefined ? undefined : r.revision ?? 0)

export class VolumeStore<R extends { volumeId: string; revision?: number }> {
  readonly root: string
  readonly #validate: (x: unknown) => R
  readonly #log: StoreLogger
  readonly #onCorrupt: ((path: string, err: unknown) => void) | undefined
  readonly #now: () => number
  // dirName → volumeId, so that a deleted or corrupt record.json of a hashed
  // directory can still be reported under its volume id.
  readonly #ids = new Map<string, string>()
  // What this store itself last wrote or removed, per directory: the watcher
  // reports only changes made by someone else (each of our own saves would
  // otherwise cost the volume one more reconcile). A digest, not the text.
  readonly #ownWrites = new Map<string, string>()
  readonly #ownRemovals = new Set<string>()

  constructor(opts: VolumeStoreOptions<R>) {
    this.root = join(opts.dataRoot, 'volumes')
    this.#validate = opts.validate
    this.#log = opts.logger
    this.#onCorrupt = opts.onCorrupt
    this.#now = opts.now ?? Date.now
  }

  volumeDir(volumeId: string): string {
    return join(this.root, volumeDirName(volumeId))
  }

  /**
   * The volume's record, or undefined when there is none. A corrupt record is
   * set aside and reads as absent: the kubelet's next publish records it anew.
   */
  async load(volumeId: string): Promise<R | undefined> {
    const dirName = volumeDirName(volumeId)
    const rec = await this.#read(dirName)
    if (rec !== undefined) this.#ids.set(dirName, rec.volumeId)
    return rec
  }

  /** Atomic and durable: a crash leaves either the old record or the new one. */
  async save(record: R): Promise<void> {
    const dirName = volumeDirName(record.volumeId)
    const dir = join(this.root, dirName)
    await mkdir(dir, { recursive: true, mode: 0o700 })
    const text = JSON.stringify(record, null, 2) + '\n'
    this.#ownWrites.set(dirName, digest(text))
    this.#ownRemovals.delete(dirName)
    await writeFileAtomic(join(dir, RECORD_FILE), text, { mode: 0o600, tempMark: TEMP_MARK })
    this.#ids.set(dirName, record.volumeId)
  }

  /**
   * Compare-and-swap: writes `next` (with its revision bumped) only if the
   * record on disk is still at `expected` (undefined: no record yet), and
   * returns what was written. Checks and writes of one volume run one at a
   * time, so two writers that read the same revision cannot both win.
   */
  async commit(next: R, expected: number | undefined): Promise<R> {
    return this.#serially(next.volumeId, async () => {
      await this.#expectRevision(next.volumeId, expected, false)
      const saved = { ...next, revision: (expected ?? 0) + 1 }
      await this.save(saved)
      return saved
    })
  }

  /** Removes the volume's directory if its record is still at `expected` (see commit). */
  async removeIfUnchanged(volumeId: string, expected: number | undefined): Promise<void> {
    await this.#serially(volumeId, async () => {
      await this.#expectRevision(volumeId, expected, true)
      await this.remove(volumeId)
    })
  }

  /** Throws RecordConflictError unless the stored record is at `expected` (or, when `goneIsFine`, absent). */
  async #expectRevision(volumeId: string, expected: number | undefined, goneIsFine: boolean): Promise<void> {
    const found = revisionOf(await this.#read(volumeDirName(volumeId)))
    if (found === expected || (goneIsFine && found === undefined)) return
    throw new RecordConflictError(`record of volume ${volumeId} is at revision ${found ?? 'none'}, not ${expected ?? 'none'}: it changed since it was read`)
  }

  readonly #tails = new Map<string, Promise<unknown>>()

  async #serially<T>(volumeId: string, fn: () => Promise<T>): Promise<T> {
    const before = this.#tails.get(volumeId) ?? Promise.resolve()
    const run = before.then(fn, fn)
    const tail = run.catch(() => undefined)
    this.#tails.set(volumeId, tail)
    try {
      return await run
    } finally {
      if (this.#tails.get(volumeId) === tail) this.#tails.delete(volumeId)
    }
  }

  /**
   * Removes the volume's whole directory. Idempotent. Renamed aside first,
   * in one step: a kill during the recursive delete then leaves a
   * `.removing-` folder that sweep() takes, never a volume folder without
   * its record (which nothing would ever reconcile again).
   */
  async remove(volumeId: string): Promise<void> {
    const dirName = volumeDirName(volumeId)
    this.#ownWrites.delete(dirName)
    this.#ownRemovals.add(dirName)
    const aside = join(this.root, `${REMOVING_MARK}${volumeDirName(volumeId)}-${randomBytes(4).toString('hex')}`)
    try {
      await rename(this.volumeDir(volumeId), aside)
    } catch (err) {
      this.#ownRemovals.delete(dirName)
      if (isNotFound(err)) return
      throw err
    }
    await rm(aside, { recursive: true, force: true })
  }

  /**
   * At start, before anything else runs: deletes what a kill left half
   * removed (`.removing-` folders). Returns the folders removed.
   */
  async sweep(): Promise<string[]> {
    let entries
    try {
      entries = await readdir(this.root, { withFileTypes: true })
    } catch (err) {
      if (isNotFound(err)) return []
      throw err
    }
    const removed: string[] = []
    for (const e of entries.filter(x => x.isDirectory() && x.name.startsWith(REMOVING_MARK))) {
      await rm(join(this.root, e.name), { recursive: true, force: true })
      removed.push(e.name)
    }
    if (removed.length > 0) this.#log.warn({ removed }, 'finished removing volume folders a kill had left half removed')
    return removed
  }

  /** Every valid record. Bad ones are set aside and reported, never thrown. */
  async list(): Promise<R[]> {
    let entries
    try {
      entries = await readdir(this.root, { withFileTypes: true })
    } catch (err) {
      if (isNotFound(err)) return []
      throw err
    }
    const records = await Promise.all(
      entries
        // Dot folders are the store's own (a removal under way), never a volume.
        .filter((e) => e.isDirectory() && !e.name.startsWith('.'))
        .map((e) =>
          this.#read(e.name).catch((err: unknown) => {
            // Unreadable (not unparsable): nothing says the content is bad, so
            // leave it in place, skip it this time and say so.
            this.#log.warn({ err, dir: e.name }, 'volume record unreadable, skipped')
            return undefined
          }),
        ),
    )
    const out: R[] = []
    for (const rec of records) {
      if (rec === undefined) continue
      this.#ids.set(volumeDirName(rec.volumeId), rec.volumeId)
      out.push(rec)
    }
    return out
  }

  /**
   * Calls `onChange` for every add, change or removal of a record.json under
   * the store, ours or anyone else's. Treat each call as "re-read and
   * reconcile": events carry no content and may repeat. Resolves once the
   * watcher is ready; the returned function stops it.
   *
   * The first record of a brand-new volume directory can be written before
   * chokidar watches that directory, and then goes unreported: the driver's
   * publish path enqueues the volumes it records itself, so only a new
   * volume written from outside can wait for the next start.
   */
  async watch(onChange: StoreChangeHandler): Promise<() => Promise<void>> {
    await mkdir(this.root, { recursive: true, mode: 0o700 })
    // The directory is watched, not the files: an atomic rename replaces the
    // inode, and a watch on the old file would go quiet.
    const watcher = chokidarWatch(this.root, {
      ignoreInitial: true,
      awaitWriteFinish: false,
      // Level 1 is the volume directories, where record.json lives. Anything
      // deeper (a volume's published files) churns on every renewal and is
      // none of the store's business.
      depth: 1,
      ignored: (p: string) => this.#ignored(p),
    })
    // One read of the record per event serves both questions: ours? whose?
    const report = async (path: string, gone: boolean): Promise<void> => {
      const dirName = basename(dirname(path))
      const text = gone ? undefined : await readNoFollow(path, 'utf8').catch(() => undefined)
      if (this.#isOwn(dirName, gone, text)) return
      onChange(this.#idFor(dirName, gone, text), path)
    }
    const onRecord = (event: string) => (path: string) => {
      report(path, event === 'unlink')
        // A throwing handler must not become an unhandled rejection (which
        // ends the process) nor stop later events.
        .catch((err: unknown) => this.#log.warn({ err, path }, 'state store change handler failed'))
    }
    watcher.on('add', onRecord('add'))
    watcher.on('change', onRecord('change'))
    watcher.on('unlink', onRecord('unlink'))
    watcher.on('error', (err) => this.#log.warn({ err, root: this.root }, 'state store watcher error'))
    await new Promise<void>((resolve) => watcher.once('ready', resolve))
    return () => watcher.close()
  }

  #ignored(path: string): boolean {
    const rel = relative(this.root, path)
    if (rel === '' || rel.startsWith('..')) return false
    const parts = rel.split(sep)
    return parts.length > 2 || (parts.length === 2 && parts[1] !== RECORD_FILE)
  }

  /** Whether the change in `dirName` (its record now `text`) is this store's own save or removal. */
  #isOwn(dirName: string, gone: boolean, text: string | undefined): boolean {
    if (gone) return this.#ownRemovals.delete(dirName)
    const own = this.#ownWrites.get(dirName)
    return own !== undefined && text !== undefined && digest(text) === own
  }

  #idFor(dirName: string, gone: boolean, text: string | undefined): string | undefined {
    if (!gone && text !== undefined) {
      try {
        const parsed: unknown = JSON.parse(text)
        const id = (parsed as { volumeId?: unknown } | null)?.volumeId
        if (typeof id === 'string' && volumeDirName(id) === dirName) {
          this.#ids.set(dirName, id)
          return id
        }
      } catch {
        // Gone again or corrupt: fall back to what the directory name tells.
      }
    }
    const known = this.#ids.get(dirName)
    if (gone) this.#ids.delete(dirName)
    if (known !== undefined) return known
    // An unhashed directory name is the volume id itself.
    return volumeDirName(dirName) === dirName ? dirName : undefined
  }

  async #read(dirName: string): Promise<R | undefined> {
    const path = join(this.root, dirName, RECORD_FILE)
    let text: string
    try {
      text = await readNoFollow(path, 'utf8')
    } catch (err) {
      // A directory without a record: being created, or only a temp file left
      // by a crash before the rename. Either way there is no record yet.
      if (isNotFound(err)) return undefined
      // A record that is a symbolic link was not written by us: never followed, set aside like a corrupt one.
      if ((err as NodeJS.ErrnoException).code === 'ELOOP') {
        await this.#setAside(path, new Error('record.json is a symbolic link, not a record this driver wrote'))
        return undefined
      }
      throw err
    }
    try {
      return this.#parse(text, dirName)
    } catch (err) {
      // Written in place by someone else (truncate, then write), a record can
      // be read half way: the watcher reports the truncation. A second look a
      // moment later tells a torn read from a corrupt file.
      await sleep(TORN_READ_RETRY_MS)
      const again = await readNoFollow(path, 'utf8').catch(() => undefined)
      if (again !== undefined && again !== text) {
        try {
          return this.#parse(again, dirName)
        } catch { /* corrupt after all */ }
      }
      await this.#setAside(path, err)
      return undefined
    }
  }

  #parse(text: string, dirName: string): R {
    const rec = this.#validate(JSON.parse(text))
    // A record copied into the wrong directory would be listed but never
    // found by load(): refuse it rather than act on it twice.
    if (volumeDirName(rec.volumeId) !== dirName) {
      throw new Error(`record for volume ${JSON.stringify(rec.volumeId)} found in directory ${dirName}`)
    }
    return rec
  }

  async #setAside(path: string, err: unknown): Promise<void> {
    const stamp = new Date(this.#now()).toISOString().replaceAll(':', '-')
    const aside = `${path}${CORRUPT_MARK}${stamp}`
    try {
      await rename(path, aside)
    } catch (renameErr) {
      // Already moved by a concurrent list/load: nothing left to do.
      if (!isNotFound(renameErr)) throw renameErr
      return
    }
    this.#log.warn({ err, path, setAsideAs: aside }, 'corrupt volume record set aside')
    this.#onCorrupt?.(path, err)
  }
}

