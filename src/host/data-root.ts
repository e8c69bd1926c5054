// The data root holds every volume's private key. The driver runs as root and
// mounts, writes and bind-mounts there, so a directory someone else controls
// (a local user who made /tmp/cert-manager-csi first and planted symlinks)
// would let them steer those root operations. Before anything touches it,
// the directory must be a real directory, owned by us, writable by no one
// else, reached without symlinks; then the driver mounts its own tmpfs on it.
import { lstat, mkdir, realpath } from 'node:fs/promises'
import { dirname, resolve } from 'node:path'

export class UnsafeDataRootError extends Error {}

export interface DirStat {
  isSymbolicLink(): boolean
  isDirectory(): boolean
  uid: number
  mode: number
}

/** What makes `st` unsafe as the data root for a process of `uid`, or undefined. */
export function dataRootProblem(st: DirStat, uid: number): string | undefined {
  if (st.isSymbolicLink()) return 'is a symbolic link'
  if (!st.isDirectory()) return 'is not a directory'
  if (st.uid !== uid) return `is owned by uid ${st.uid}, not by the driver (uid ${uid})`
  if ((st.mode & 0o022) !== 0) return `is writable by ${(st.mode & 0o002) !== 0 ? 'everyone' : 'its group'} (mode ${(st.mode & 0o7777).toString(8).padStart(4, '0')})`
  return undefined
}

/**
 * Creates the data root if missing (mode 0700) and checks it with lstat;
 * throws UnsafeDataRootError with one line saying what is wrong.
 */
export async function checkDataRoot(path: string, uid = process.getuid?.() ?? 0): Promise<void> {
  const root = resolve(path)
  await mkdir(dirname(root), { recursive: true })
  await mkdir(root, { mode: 0o700 }).catch((err: NodeJS.ErrnoException) => {
    if (err.code !== 'EEXIST') throw err
  })
  const problem = dataRootProblem(await lstat(root), uid)
  if (problem) throw new UnsafeDataRootError(`data root ${root} ${problem}; refusing to keep private keys there (remove it, or give another --data-root)`)
  const real = await realpath(root)
  if (real !== root) throw new UnsafeDataRootError(`data root ${root} has a symbolic link in its path (it resolves to ${real}); give the real path as --data-root`)
}
