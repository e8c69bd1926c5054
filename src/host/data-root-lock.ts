// One driver per data root. Two drivers on one node would both reconcile the
// same volumes, mount over each other and delete each other's requests, so
// the second one must refuse to start.
//
// Node has no flock(2), so util-linux's flock(1) holds the lock for us: it
// locks, then runs `cat` on a pipe from this process. When this process dies,
// however it dies, the pipe closes, cat and flock exit and the kernel drops
// the lock; no stale lock file can outlive us (a pid file could).
//
// The data root is locked twice: the directory as found (before our tmpfs is
// mounted on it) and again once the tmpfs is there, since a driver that comes
// later opens the path and finds the tmpfs root, not the directory under it.
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdir, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'

export const PID_FILE = 'driver.pid'
const CONFLICT_EXIT = 75

export class DataRootInUseError extends Error {
  override readonly name = 'DataRootInUseError'
  readonly code = 'DATA_ROOT_IN_USE'
}

export interface DataRootLockOptions {
  /** How long a held lock is retried: a driver killed a moment ago takes milliseconds to let go. */
  waitMs?: number
}

export class DataRootLock {
  readonly #holders: ChildProcess[] = []
  readonly #waitMs: number

  private constructor(readonly dataRoot: string, waitMs: number) {
    this.#waitMs = waitMs
  }

  /** Locks the data root as it is now, or throws DataRootInUseError naming the holder. */
  static async acquire(dataRoot: string, opts: DataRootLockOptions = {}): Promise<DataRootLock> {
    await mkdir(dataRoot, { recursive: true, mode: 0o700 })
    const lock = new DataRootLock(dataRoot, opts.waitMs ?? 1000)
    await lock.lockAgain()
    return lock
  }

  /** Locks whatever the path resolves to now (call after mounting on it), and writes our pid there. */
  async lockAgain(): Promise<void> {
    const deadline = Date.now() + this.#waitMs
    for (;;) {
      const holder = await tryLock(this.dataRoot)
      if (holder) {
        this.#holders.push(holder)
        await writeFile(join(this.dataRoot, PID_FILE), `${process.pid}\n`, { mode: 0o600 })
        return
      }
      if (Date.now() >= deadline) {
        const pid = (await readFile(join(this.dataRoot, PID_FILE), 'utf8').catch(() => '')).trim()
        await this.release()
        throw new DataRootInUseError(`data root ${this.dataRoot} is in use by another cert-manager-csi-driver${/^\d+$/.test(pid) ? ` (pid ${pid})` : ''}: one driver per node`)
      }
      await new Promise(r => setTimeout(r, 100))
    }
  }

  async release(): Promise<void> {
    await Promise.all(this.#holders.splice(0).map(h => new Promise<void>(resolve => {
      if (h.exitCode !== null || h.signalCode !== null) return resolve()
      h.once('exit', () => resolve())
      h.stdin?.end()
    })))
  }
}

/** The flock(1) process holding the lock, or undefined if another holds it. */
function tryLock(path: string): Promise<ChildProcess | undefined> {
  return new Promise((resolve, reject) => {
    const child = spawn('flock', ['--nonblock', '--conflict-exit-code', String(CONFLICT_EXIT), path, 'sh', '-c', 'echo locked; exec cat >/dev/null'], { stdio: ['pipe', 'pipe', 'pipe'] })
    let stderr = ''
    let settled = false
    const settle = (v: ChildProcess | undefined, err?: Error): void => {
      if (settled) return
      settled = true
      if (err) reject(err)
      else resolve(v)
    }
    child.stdout.once('data', () => {
      // Our lock from here on; it must not keep the event loop alive on its own.
      child.unref()
      ;(child.stdin as unknown as { unref?: () => void }).unref?.()
      ;(child.stdout as unknown as { unref?: () => void }).unref?.()
      ;(child.stderr as unknown as { unref?: () => void }).unref?.()
      settle(child)
    })
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()))
    child.once('error', err => settle(undefined, new Error(`cannot run flock(1) to lock the data root: ${err.message}`)))
    child.once('exit', code => {
      if (code === CONFLICT_EXIT) settle(undefined)
      else settle(undefined, new Error(`flock(1) on ${path} exited ${code}: ${stderr.trim()}`))
    })
  })
}
