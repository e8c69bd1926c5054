// etcd's own JSON gateway (/v3/kv/*, /v3/watch): how the fault tier sees and
// changes what the apiserver stores without going through the apiserver. An
// observer here never shows up in the apiserver's request counts, keeps
// watching while the apiserver is stopped, and can delete objects behind the
// apiserver's back (a watch gap the driver cannot see as a DELETE event).
const b64 = (s: string): string => Buffer.from(s).toString('base64')
const unb64 = (s: string | undefined): string => (s ? Buffer.from(s, 'base64').toString('utf8') : '')

/** The key just after every key with this prefix: etcd's range_end for "prefix". */
function prefixEnd(prefix: string): string {
  const buf = Buffer.from(prefix)
  buf[buf.length - 1]! += 1
  return buf.toString('base64')
}

export interface KeyValue {
  key: string
  value: string
  modRevision: number
}

export interface WatchEvent {
  type: 'PUT' | 'DELETE'
  key: string
  value: string
  /** For DELETE: the value before the delete (prev_kv). */
  prevValue?: string
  revision: number
}

interface RawKv { key?: string; value?: string; mod_revision?: string }

export class EtcdClient {
  constructor(readonly url: string) {}

  private async post<T>(path: string, body: object, timeoutMs = 10_000): Promise<T> {
    const res = await fetch(`${this.url}${path}`, { method: 'POST', body: JSON.stringify(body), signal: AbortSignal.timeout(timeoutMs) })
    const text = await res.text()
    if (!res.ok) throw new Error(`etcd ${path}: HTTP ${res.status}: ${text.slice(0, 300)}`)
    return JSON.parse(text) as T
  }

  /** Every key under prefix, and the store's revision at the time of the read. */
  async range(prefix: string): Promise<{ kvs: KeyValue[]; revision: number }> {
    const r = await this.post<{ header: { revision: string }; kvs?: RawKv[] }>('/v3/kv/range', { key: b64(prefix), range_end: prefixEnd(prefix) })
    return {
      revision: Number(r.header.revision),
      kvs: (r.kvs ?? []).map(kv => ({ key: unb64(kv.key), value: unb64(kv.value), modRevision: Number(kv.mod_revision ?? 0) })),
    }
  }

  async deleteKey(key: string): Promise<number> {
    const r = await this.post<{ deleted?: string }>('/v3/kv/deleterange', { key: b64(key) })
    return Number(r.deleted ?? 0)
  }

  /**
   * Streams changes under prefix from startRevision on, until the signal
   * aborts or the stream ends (etcd restarted): the promise then settles and
   * the caller resumes from the last revision it saw.
   */
  async watch(prefix: string, startRevision: number, onEvent: (e: WatchEvent) => void, signal: AbortSignal): Promise<void> {
    const res = await fetch(`${this.url}/v3/watch`, {
      method: 'POST',
      signal,
      body: JSON.stringify({ create_request: { key: b64(prefix), range_end: prefixEnd(prefix), start_revision: String(startRevision), prev_kv: true } }),
    })
    if (!res.ok || !res.body) throw new Error(`etcd watch: HTTP ${res.status}`)
    const decoder = new TextDecoder()
    let buffered = ''
    for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
      buffered += decoder.decode(chunk, { stream: true })
      let nl: number
      while ((nl = buffered.indexOf('\n')) >= 0) {
        const line = buffered.slice(0, nl).trim()
        buffered = buffered.slice(nl + 1)
        if (line) this.dispatch(line, onEvent)
      }
    }
  }

  private dispatch(line: string, onEvent: (e: WatchEvent) => void): void {
    const msg = JSON.parse(line) as { result?: { compact_revision?: string; canceled?: boolean; cancel_reason?: string; events?: { type?: string; kv?: RawKv; prev_kv?: RawKv }[] }; error?: unknown }
    if (msg.error) throw new Error(`etcd watch: ${JSON.stringify(msg.error)}`)
    const r = msg.result
    if (r?.canceled || (r?.compact_revision && r.compact_revision !== '0')) {
      throw new CompactedError(`etcd watch cancelled: ${r.cancel_reason ?? `compacted at ${r.compact_revision}`}`)
    }
    for (const e of r?.events ?? []) {
      const type = e.type === 'DELETE' ? 'DELETE' : 'PUT'
      onEvent({
        type,
        key: unb64(e.kv?.key),
        value: unb64(e.kv?.value),
        ...(e.prev_kv ? { prevValue: unb64(e.prev_kv.value) } : {}),
        revision: Number(e.kv?.mod_revision ?? 0),
      })
    }
  }
}

/** The revision asked for is gone: the watcher must read everything again. */
export class CompactedError extends Error {}
