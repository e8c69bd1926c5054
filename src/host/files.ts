// Small durable-file helpers shared by the store, the atomic publisher and
// the reconciler's pending key.
import { open, rename, rm } from 'node:fs/promises'
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
