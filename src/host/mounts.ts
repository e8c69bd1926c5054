// Mounts through util-linux's mount/umount, with mount points read from
// /proc/self/mountinfo. This is what Kubernetes' mount-utils does; no
// maintained npm binding for mount(2) exists.
//
// Why mountinfo and not stat(): comparing a directory's device number with its
// parent's misses bind mounts from the same filesystem (same device), which is
// exactly the kind of mount this driver makes.

import { execFile } from 'node:child_process'
import { chmod, lstat, mkdir, readFile, realpath } from 'node:fs/promises'
import { basename, dirname, join, resolve } from 'node:path'

export interface MountInfo {
  mountId: number
  parentId: number
  /** major:minor of the filesystem. */
  device: string
  /** The directory of the filesystem that is mounted (not `/` for a bind mount of a subdirectory). */
  root: string
  mountPoint: string
  /** Per-mount options: rw/ro, nosuid, relatime... */
  options: string[]
  /** Propagation tags such as `shared:1`, `master:2`. */
  optionalFields: string[]
  fsType: string
  source: string
  /** Per-filesystem options: size=, mode=... */
  superOptions: string[]
}

// The kernel escapes space, tab, newline and backslash in paths as
// three-digit octal (`\040`...), so that a field never contains a separator.
function unescapeOctal(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, oct: string) => String.fromCharCode(parseInt(oct, 8)))
}

function splitOptions(s: string | undefined): string[] {
  return s === undefined || s === '' ? [] : s.split(',')
}

/**
 * Parses /proc/<pid>/mountinfo (see proc(5)):
 *   36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue
 * The number of optional fields varies, so the ` - ` separator, not a column
 * index, marks where the filesystem fields begin. Lines that do not fit the
 * format are skipped: one surprising line must not hide every other mount.
 */
export function parseMountInfo(text: string): MountInfo[] {
  const out: MountInfo[] = []
  for (const line of text.split('\n')) {
    if (line.trim() === '') continue
    const fields = line.split(' ')
    const sep = fields.indexOf('-', 6)
    if (sep < 0 || fields.length < sep + 3) continue
    const [id, parent, device, root, mountPoint, options] = fields
    const mountId = Number(id)
    const parentId = Number(parent)
    if (!Number.isInteger(mountId) || !Number.isInteger(parentId)) continue
    out.push({
      mountId,
      parentId,
      device: device!,
      root: unescapeOctal(root!),
      mountPoint: unescapeOctal(mountPoint!),
      options: splitOptions(options),
      optionalFields: fields.slice(6, sep),
      fsType: fields[sep + 1]!,
      source: unescapeOctal(fields[sep + 2]!),
      superOptions: splitOptions(fields[sep + 3]),
    })
  }
  return out
}

/**
 * The mount that holds `path` (an absolute, resolved path): the one with the
 * longest mount point that is `path` or one of its parents. When mounts are
 * stacked on one point, the visible one is the one no other mount there sits
 * on (its id is nobody's parent), whatever order the kernel lists them in.
 */
export function mountContaining(mounts: readonly MountInfo[], path: string): MountInfo | undefined {
  let longest = -1
  let candidates: MountInfo[] = []
  for (const m of mounts) {
    const mp = m.mountPoint
    if (!(path === mp || mp === '/' || path.startsWith(mp + '/'))) continue
    if (mp.length > longest) {
      longest = mp.length
      candidates = [m]
    } else if (mp.length === longest) {
      candidates.push(m)
    }
  }
  const parents = new Set(candidates.map((m) => m.parentId))
  return candidates.find((m) => !parents.has(m.mountId)) ?? candidates.at(-1)
}

export type Exec = (cmd: string, args: string[]) => Promise<void>

const execCommand: Exec = (cmd, args) =>
  new Promise((resolvePromise, reject) => {
    execFile(cmd, args, { timeout: 60_000 }, (err, _stdout, stderr) => {
      if (err === null) return resolvePromise()
      // mount's own words ("mount point does not exist", "permission denied")
      // are what an operator needs to see, not just the exit code.
      const detail = String(stderr).trim() || err.message
      reject(new Error(`${cmd} ${args.join(' ')}: ${detail}`, { cause: err }))
    })
  })

// Enough for any real stack of mounts on one point, small enough that an
// umount that keeps "succeeding" without effect cannot loop forever.
const MAX_STACKED = 64

export interface MounterOptions {
  mountinfoPath?: string
  exec?: Exec
  /** How long one read of mountinfo answers isMountPoint; 0 reads every time. */
  mountPointCacheMs?: number
  now?: () => number
}

export class Mounter {
  readonly #mountinfoPath: string
  readonly #exec: Exec
  readonly #maxAgeMs: number
  readonly #now: () => number
  #points?: { at: number; set: Promise<Set<string>> }

  constructor(opts: MounterOptions = {}) {
    this.#mountinfoPath = opts.mountinfoPath ?? '/proc/self/mountinfo'
    this.#exec = opts.exec ?? execCommand
    this.#maxAgeMs = opts.mountPointCacheMs ?? 1000
    this.#now = opts.now ?? Date.now
  }

  async mounts(): Promise<MountInfo[]> {
    return parseMountInfo(await readFile(this.#mountinfoPath, 'utf8'))
  }

  /** The visible mount exactly at `path` (a symlink there is never followed), or undefined. */
  async mountAt(path: string): Promise<MountInfo | undefined> {
    const real = await withoutFinalLink(path)
    if (real === undefined) return undefined
    const m = mountContaining(await this.mounts(), real)
    return m?.mountPoint === real ? m : undefined
  }

  /**
   * Whether something is mounted exactly at `path`. Symlinks above it are
   * resolved (a kubelet root may be one); a symlink at `path` itself is never
   * followed and is no mount point.
   */
  async isMountPoint(path: string): Promise<boolean> {
    const real = await withoutFinalLink(path)
    if (real === undefined) return false
    return (await this.#mountPoints()).has(real)
  }

  // mountinfo grows with every volume on the node: a resync of N volumes
  // would parse it N times. One parse serves all checks within maxAge; our
  // own mounts join it and our unmounts drop it, so only changes made behind
  // our back are seen up to maxAge late.
  #mountPoints(): Promise<Set<string>> {
    const now = this.#now()
    if (!this.#points || now - this.#points.at >= this.#maxAgeMs) {
      const set = this.mounts().then((ms) => new Set(ms.map((m) => m.mountPoint)))
      this.#points = { at: now, set }
      set.catch(() => (this.#points = undefined))
    }
    return this.#points.set
  }

  #changed(): void {
    this.#points = undefined
  }

  // Our own new mount goes into the cached set rather than dropping it: at a
  // thousand volumes, re-reading mountinfo after every publish made each one
  // parse a thousand lines (a read in flight gets it too, chained after).
  #mounted(path: string): void {
    void this.#points?.set.then(points => points.add(path), () => undefined)
  }

  /**
   * Bind-mounts `source` on `target`, read-only. Two steps because mount(2)
   * ignores the read-only flag on a new bind and applies it only on a remount
   * (recent util-linux hides this, older versions do not). A failed second
   * step undoes the first rather than leave a writable bind behind.
   */
  async bindReadOnly(source: string, target: string): Promise<void> {
    const src = resolve(source)
    await mkdir(resolve(target), { recursive: true, mode: 0o750 })
    // mount(8) would follow a symlink planted at the target: bind onto a real directory only.
    const dst = await withoutFinalLink(target)
    if (dst === undefined || !(await lstat(dst)).isDirectory()) throw new Error(`bind mount onto ${target}: not a directory (a symbolic link is never followed)`)
    // Absolute paths always start with '/', so none can be read as an option.
    try {
      await this.#exec('mount', ['--bind', src, dst])
      try {
        await this.#exec('mount', ['-o', 'remount,bind,ro', dst])
      } catch (err) {
        await this.#exec('umount', ['--no-canonicalize', dst]).catch(() => {})
        throw err
      }
    } catch (err) {
      this.#changed()
      throw err
    }
    this.#mounted(dst)
  }

  /**
   * Unmounts everything mounted at `target`, top of the stack first.
   * Idempotent: a missing path or one with nothing mounted is success.
   */
  async unmount(target: string): Promise<void> {
    for (let i = 0; i < MAX_STACKED; i++) {
      const real = await withoutFinalLink(target)
      if (real === undefined || !(await this.isMountPoint(real))) return
      try {
        // The path is checked as mountinfo lists it: umount must not resolve it again.
        await this.#exec('umount', ['--no-canonicalize', real])
      } catch (err) {
        // Someone else may have unmounted it in between: only fail if it is
        // still mounted.
        this.#changed()
        if (await this.isMountPoint(real)) throw err
      } finally {
        this.#changed()
      }
    }
    throw new Error(`unmount ${target}: still mounted after ${MAX_STACKED} attempts`)
  }

  /**
   * Mounts the driver's own tmpfs on `dir` (checked by checkDataRoot first),
   * so key material never reaches a disk and nothing on it can be executed,
   * be a device or gain privileges. A tmpfs already mounted exactly there (our
   * own, left by the previous run with its volumes) is remounted with these
   * options instead, keeping its files. A tmpfs further up (a /tmp on tmpfs)
   * is someone else's: ours goes on top.
   */
  async mountPrivateTmpfs(dir: string, sizeBytes?: number): Promise<'mounted' | 'remounted'> {
    const root = resolve(dir)
    const opts = ['nosuid', 'nodev', 'noexec']
    if (sizeBytes !== undefined) {
      if (!Number.isSafeInteger(sizeBytes) || sizeBytes <= 0) throw new RangeError(`tmpfs size must be a positive integer, got ${sizeBytes}`)
      opts.push(`size=${sizeBytes}`)
    }
    const here = mountContaining(await this.mounts(), root)
    this.#changed()
    if (here?.mountPoint === root && here.fsType === 'tmpfs') {
      await this.#exec('mount', ['-o', ['remount', ...opts].join(','), root])
      // A remount keeps the root's mode (an emptyDir's is 0777): set ours.
      await chmod(root, 0o700)
      return 'remounted'
    }
    await this.#exec('mount', ['-t', 'tmpfs', '-o', ['mode=0700', ...opts].join(','), 'tmpfs', root])
    return 'mounted'
  }
}

/**
 * `path` with the symlinks of its parent folders resolved but not its last
 * component; undefined when it is missing or is itself a symbolic link.
 */
async function withoutFinalLink(path: string): Promise<string | undefined> {
  const abs = resolve(path)
  try {
    const real = join(await realpath(dirname(abs)), basename(abs))
    return (await lstat(real)).isSymbolicLink() ? undefined : real
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT' || (err as NodeJS.ErrnoException).code === 'ENOTDIR') return undefined
    throw err
  }
}
