// One volume's folder under the data root, and everything in it besides the
// record (which the store keeps): its layout and every read and write. The
// reconciler reaches the disk only through here.
//
//   <data root>/volumes/<dir>/
//     record.json        the store's
//     pending-key.pem    the key of the request in flight (before any request names it)
//     pending-csr.pem    the CSR sent with it, so a retry sends the same bytes
//     current/           the issued pair the volume is served from: key.pem, cert.pem, ca.pem
//     published/         what the pod sees, rendered from current/ per the volume's attributes
import { access, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { readNoFollow, writeFileAtomic } from '../host/files.js'

export interface FileSet {
  name: string
  data: Buffer
  mode: number
}

/** Atomic folder writes (src/host/atomic-dir.ts): a reader sees the old set or the new one. */
export interface AtomicFolders {
  write(dir: string, files: FileSet[], owner?: { uid: number; gid: number }): Promise<void>
  read(dir: string): Promise<Map<string, Buffer> | undefined>
  clear(dir: string): Promise<void>
}

export interface StoredPair {
  keyPem: string
  certificatePem: string
  caPem?: string
}

export class VolumeDir {
  readonly pendingKeyPath: string
  readonly pendingCsrPath: string
  readonly currentPath: string
  /** The bind mount's source. */
  readonly publishedPath: string

  readonly #folders: AtomicFolders

  constructor(readonly path: string, folders: AtomicFolders) {
    this.#folders = folders
    this.pendingKeyPath = join(path, 'pending-key.pem')
    this.pendingCsrPath = join(path, 'pending-csr.pem')
    this.currentPath = join(path, 'current')
    this.publishedPath = join(path, 'published')
  }

  // ---- the request in flight

  hasPendingKey(): Promise<boolean> {
    return access(this.pendingKeyPath).then(() => true, () => false)
  }

  readPendingKey(): Promise<string> {
    return readNoFollow(this.pendingKeyPath, 'utf8')
  }

  /** On tmpfs, and durable before any request names it: a restart resumes with this key. */
  writePendingKey(pem: string): Promise<void> {
    return writeFileAtomic(this.pendingKeyPath, pem)
  }

  /** The CSR kept for the request in flight, or undefined. */
  readPendingCsr(): Promise<string | undefined> {
    return readNoFollow(this.pendingCsrPath, 'utf8').catch(() => undefined)
  }

  writePendingCsr(pem: string): Promise<void> {
    return writeFileAtomic(this.pendingCsrPath, pem)
  }

  dropPendingCsr(): Promise<void> {
    return rm(this.pendingCsrPath, { force: true })
  }

  /** The request in flight is over (issued, rejected, torn down): its key and CSR go. */
  async dropPending(): Promise<void> {
    await rm(this.pendingKeyPath, { force: true })
    await rm(this.pendingCsrPath, { force: true })
  }

  // ---- the issued pair

  async readStored(): Promise<StoredPair | undefined> {
    const files = await this.#folders.read(this.currentPath)
    const keyPem = files?.get('key.pem')?.toString()
    const certificatePem = files?.get('cert.pem')?.toString()
    if (!keyPem || !certificatePem) return undefined
    const caPem = files?.get('ca.pem')?.toString()
    return { keyPem, certificatePem, ...(caPem ? { caPem } : {}) }
  }

  /** Swapped in one step: a crash leaves the old pair or the new one. */
  writeStored(pair: StoredPair): Promise<void> {
    return this.#folders.write(this.currentPath, [
      { name: 'key.pem', data: Buffer.from(pair.keyPem), mode: 0o600 },
      { name: 'cert.pem', data: Buffer.from(pair.certificatePem), mode: 0o600 },
      ...(pair.caPem ? [{ name: 'ca.pem', data: Buffer.from(pair.caPem), mode: 0o600 }] : []),
    ])
  }

  // ---- what the pod sees

  readPublished(): Promise<Map<string, Buffer> | undefined> {
    return this.#folders.read(this.publishedPath)
  }

  writePublished(files: FileSet[], owner?: { uid: number; gid: number }): Promise<void> {
    return this.#folders.write(this.publishedPath, files, owner)
  }

  /** Everything but the record, which the store removes with the folder. */
  async clear(): Promise<void> {
    await this.#folders.clear(this.publishedPath)
    await this.#folders.clear(this.currentPath)
    await this.dropPending()
  }
}
