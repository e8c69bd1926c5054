// Small durable-file helpers shared by the store, the atomic publisher and
// the reconciler's pending key.
import { constants, open, rename, rm } from 'node:fs/promises'
import { closeSync, openSync, readFileSync } from 'node:fs'
import { dirname } from 'node:path'
import { randomBytes } from 'node:crypto'

export function isNotFound(err: unknown): boolean {
  return (err as NodeJS.ErrnoException | null)?.code === 'ENOENT'
}

/** The filesystem is full: on the data root's tmpfs, its size limit is reached. */
export function isNoSpace(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException | null)?.code
  return code === 'ENOSPC' || code === 'EDQUOT'
}

/**
 * Reads a file under the data root without following a symlink at its last
 * component (ELOOP instead): the driver runs as root, and a link planted
 * there must not make it read, and publish, some other file.
 *
 * Synchronously, on purpose: what is read here is a few KiB on the driver's
 * own tmpfs, so the read is a memory copy that never waits on a device. It
 * costs ~6-18 µs of CPU where the promise API's open, stat, read and close
 * (four trips through the thread pool) cost ~200 µs, which was a quarter of a
 * republish's main-thread time with 1000 volumes (issue 14, P6).
 */
export async function readNoFollow(path: string): Promise<Buffer>
export async function readNoFollow(path: string, encoding: 'utf8'): Promise<string>
export async function readNoFollow(path: string, encoding?: 'utf8'): Promise<Buffer | string> {
  const fd = openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW)
  try {
    return encoding ? readFileSync(fd, encoding) : readFileSync(fd)
  } finally {
    closeSync(fd)
  }
}

/** fsync a file or a directory (a rename lives in its directory). */
export async function fsyncPath(path: string): Promise<void> {
  const fh = await open(path, 'r')
  try {
    await fh.sync()
  } finally {
    await fh.close()
  }
}

/**
 * Atomic and durable: a crash leaves either the old file or the new one. The
 * temp file sits beside the target (same filesystem, so rename is atomic),
 * named `<path><tempMark><random>` so watchers can tell it apart.
 */
export async function writeFileAtomic(path: string, data: string | Buffer, opts: { mode?: number; tempMark?: string } = {}): Promise<void> {
  const tmp = `${path}${opts.tempMark ?? '.tmp-'}${randomBytes(6).toString('hex')}`
  const fh = await open(tmp, 'wx', opts.mode ?? 0o600)
  try {
    await fh.writeFile(data)
    // Without this the rename can reach the disk before the data does.
    await fh.sync()
    await fh.close()
    await rename(tmp, path)
  } catch (err) {
    await fh.close().catch(() => undefined)
    await rm(tmp, { force: true })
    throw err
  }
  await fsyncPath(dirname(path))
}
