// What an unpublish leaves behind for the API: the CertificateRequests of a
// volume that is already gone from the node. Unpublish finishes locally
// (unmount, files, keys, record) and answers the kubelet; deleting the
// requests waits for the API here, one small file per volume under
// <dataRoot>/tombstones, so a restart picks the work up again. The requests'
// owner references to the pod let the garbage collector finish if we never can.
import { mkdir, readdir, rm } from 'node:fs/promises'
import { join } from 'node:path'
import * as v from 'valibot'
import { isNotFound, readNoFollow, writeFileAtomic } from '../host/files.js'
import { volumeDirName } from './store.js'

const name = v.pipe(v.string(), v.minLength(1))

export const tombstoneSchema = v.object({
  volumeId: name,
  /** Where the requests are: the pod's namespace (an orphan's come from the cache, each with its own). */
  requests: v.array(v.object({ namespace: name, name, uid: v.optional(v.string()) })),
  /** The pod the requests are owned by: a listed request owned by anyone else is not ours to delete. */
  podUid: v.optional(v.string()),
  /** Namespaces to list by the volume's label too, for requests the watch had not shown yet. */
  namespaces: v.array(name),
  /** Names in those namespaces taken by someone else's objects (stepped over): never deleted, owner reference or not. */
  spare: v.optional(v.array(v.string())),
  createdAt: v.string(),
})

export type Tombstone = v.InferOutput<typeof tombstoneSchema>

export interface TombstoneLogger {
  warn(obj: object, msg: string): void
}

export class TombstoneStore {
  readonly dir: string

  readonly #log: TombstoneLogger
  constructor(dataRoot: string, log: TombstoneLogger) {
    this.#log = log
    this.dir = join(dataRoot, 'tombstones')
  }

  #path(volumeId: string): string {
    return join(this.dir, `${volumeDirName(volumeId)}.json`)
  }

  /** Durable before it returns: the record may be removed right after. Merges with one already there. */
  async add(t: Tombstone): Promise<Tombstone> {
    await mkdir(this.dir, { recursive: true, mode: 0o700 })
    const old = await this.#read(this.#path(t.volumeId))
    const podUid = old?.podUid ?? t.podUid
    const merged: Tombstone = old
      ? {
          ...old,
          ...(podUid ? { podUid } : {}),
          requests: dedupe([...old.requests, ...t.requests]),
          namespaces: [...new Set([...old.namespaces, ...t.namespaces])],
          ...(old.spare || t.spare ? { spare: [...new Set([...(old.spare ?? []), ...(t.spare ?? [])])] } : {}),
        }
      : t
    await writeFileAtomic(this.#path(t.volumeId), JSON.stringify(merged) + '\n', { mode: 0o600 })
    return merged
  }

  async remove(volumeId: string): Promise<void> {
    await rm(this.#path(volumeId), { force: true })
  }

  async list(): Promise<Tombstone[]> {
    let names: string[]
    try {
      names = await readdir(this.dir)
    } catch (err) {
      if (isNotFound(err)) return []
      throw err
    }
    const out: Tombstone[] = []
    for (const n of names.filter(n => n.endsWith('.json'))) {
      const t = await this.#read(join(this.dir, n))
      if (t) out.push(t)
    }
    return out
  }

  async #read(path: string): Promise<Tombstone | undefined> {
    let text: string
    try {
      text = await readNoFollow(path, 'utf8')
    } catch (err) {
      if (isNotFound(err)) return undefined
      throw err
    }
    const parsed = v.safeParse(tombstoneSchema, safeJson(text))
    if (parsed.success) return parsed.output
    // Garbage cannot name a request: drop it, the garbage collector has the rest.
    this.#log.warn({ path }, 'unreadable tombstone removed')
    await rm(path, { force: true })
    return undefined
  }
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text)
  } catch {
    return undefined
  }
}

function dedupe(refs: Tombstone['requests']): Tombstone['requests'] {
  const seen = new Map(refs.map(r => [`${r.namespace}/${r.name}`, r]))
  return [...seen.values()]
}
