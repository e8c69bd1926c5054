// The driver's Kubernetes API client: JSON requests and watch streams over
// one keep-alive connection pool, each call with a deadline. A handful of
// endpoints is all a node agent uses (CertificateRequests and Events), so a
// small client on node:https costs a fraction of a generated one (issue 14
// P5) and has no hidden behaviour: no per-call TLS handshake, no call
// without a deadline, errors that carry the HTTP status and body.
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https'
import { Agent as HttpAgent, request as httpRequest, type ClientRequest, type IncomingMessage, type OutgoingHttpHeaders } from 'node:http'
import { readFileSync } from 'node:fs'
import { setTimeout as sleep } from 'node:timers/promises'
import { UnavailableError } from '../errors.js'
import { formatDuration } from '../volume/duration.js'
import type { ClusterAccess } from './kubeconfig.js'
import { TokenBucket, type RateLimit } from './rate-limit.js'

export const DEFAULT_API_TIMEOUT_MS = 30_000

/** How often a token file is read again (client-go's cached file token source waits a minute too). */
const TOKEN_REFRESH_MS = 60_000

/** An API call that took longer than --kube-api-timeout; retried like any unavailable dependency. */
export class ApiTimeoutError extends UnavailableError {
  constructor(readonly operation: string, readonly timeoutMs: number, options?: { cause?: unknown }) {
    super(`${operation} timed out after ${formatDuration(timeoutMs)}`, options)
  }
}

/** The apiserver answered with an HTTP error; `body` is its Status object as text. */
export class ApiError extends Error {
  constructor(readonly operation: string, readonly statusCode: number, readonly body: string) {
    super(`${operation}: HTTP ${statusCode}: ${statusMessage(body)}`)
    this.name = 'ApiError'
  }
}

function statusMessage(body: string): string {
  try {
    const parsed = JSON.parse(body) as { message?: unknown }
    if (typeof parsed.message === 'string') return parsed.message
  } catch { /* not JSON */ }
  return body.trim().slice(0, 200)
}

export type Query = Record<string, string | number | boolean | undefined>

export interface ApiRequest {
  method: 'GET' | 'POST' | 'PUT' | 'DELETE'
  /** Absolute API path, e.g. /apis/events.k8s.io/v1/namespaces/default/events. */
  path: string
  query?: Query
  body?: unknown
  /** The caller's own abort (a stop); the deadline is the client's. */
  signal?: AbortSignal
  /**
   * Made as someone else (a pod's service account token): sent with this
   * token over connections that present no client certificate, since the
   * apiserver would authenticate the certificate first.
   */
  bearerToken?: string
}

export interface WatchHandlers {
  signal: AbortSignal
  /** The stream is open (the server answered 200). */
  onOpen(): void
  onEvent(type: string, object: unknown): void
}

export interface ApiClientOptions {
  /** Deadline of each call; for a watch, of its connect (until the headers). Default 30 s. */
  timeoutMs?: number
  userAgent?: string
  now?: () => number
  /** --kube-api-qps and --kube-api-burst: every call and every watch (re)connect takes a token. Default: none. */
  rateLimit?: RateLimit
  /** A call waited this long for its token (for a metric). */
  onThrottled?: (waitMs: number) => void
}

export class ApiClient {
  readonly #access: ClusterAccess
  readonly #agent: HttpsAgent | HttpAgent
  /** For calls made with someone else's token: the same trust, no client certificate. */
  readonly #tokenAgent: HttpsAgent | HttpAgent
  readonly #request: typeof httpsRequest
  readonly #timeoutMs: number
  readonly #userAgent: string
  readonly #now: () => number
  readonly #bucket: TokenBucket | undefined
  readonly #onThrottled: ((waitMs: number) => void) | undefined
  #token: { value: string; readAt: number } | undefined

  constructor(access: ClusterAccess, opts: ApiClientOptions = {}) {
    this.#access = access
    this.#timeoutMs = opts.timeoutMs ?? DEFAULT_API_TIMEOUT_MS
    this.#userAgent = opts.userAgent ?? 'cert-manager-csi-driver'
    this.#now = opts.now ?? Date.now
    this.#bucket = opts.rateLimit && new TokenBucket(opts.rateLimit, this.#now())
    this.#onThrottled = opts.onThrottled
    if (access.server.startsWith('https:')) {
      this.#agent = new HttpsAgent({
        keepAlive: true,
        ca: access.ca,
        cert: access.clientCert,
        key: access.clientKey,
        rejectUnauthorized: !access.insecureSkipTlsVerify,
        servername: access.tlsServerName,
      })
      this.#tokenAgent = access.clientCert || access.clientKey
        ? new HttpsAgent({ keepAlive: true, ca: access.ca, rejectUnauthorized: !access.insecureSkipTlsVerify, servername: access.tlsServerName })
        : this.#agent
      this.#request = httpsRequest
    } else {
      this.#agent = new HttpAgent({ keepAlive: true })
      this.#tokenAgent = this.#agent
      this.#request = httpRequest
    }
  }

  get timeoutMs(): number {
    return this.#timeoutMs
  }

  /** One JSON call with its deadline; an HTTP error throws ApiError, a missed deadline ApiTimeoutError. */
  async request<T>(operation: string, req: ApiRequest): Promise<T> {
    // The deadline starts once the call may go: waiting for a token is not the apiserver being slow.
    await this.#throttle(req.signal)
    const deadline = new AbortController()
    const timer = setTimeout(() => deadline.abort(), this.#timeoutMs)
    const signal = req.signal ? AbortSignal.any([req.signal, deadline.signal]) : deadline.signal
    try {
      const res = await this.#send(req, signal)
      const text = await readBody(res)
      if (res.statusCode === undefined || res.statusCode < 200 || res.statusCode >= 300) throw new ApiError(operation, res.statusCode ?? 0, text)
      return (text === '' ? undefined : JSON.parse(text)) as T
    } catch (err) {
      if (deadline.signal.aborted && !req.signal?.aborted) throw new ApiTimeoutError(operation, this.#timeoutMs, { cause: err })
      throw err
    } finally {
      clearTimeout(timer)
    }
  }

  /**
   * A watch stream: resolves when the server ends it (its timeoutSeconds) or
   * the signal aborts; rejects on a non-200 answer (ApiError), a connect past
   * the deadline (ApiTimeoutError), a broken connection or a line that is
   * not JSON. Events arrive one line at a time, in order.
   */
  async watch(operation: string, path: string, query: Query, handlers: WatchHandlers): Promise<void> {
    if (handlers.signal.aborted) return
    try {
      await this.#throttle(handlers.signal)
    } catch (err) {
      if (handlers.signal.aborted) return
      throw err
    }
    const connect = new AbortController()
    const timer = setTimeout(() => connect.abort(), this.#timeoutMs)
    const signal = AbortSignal.any([handlers.signal, connect.signal])
    let res: IncomingMessage
    try {
      res = await this.#send({ method: 'GET', path, query: { ...query, watch: true } }, signal)
    } catch (err) {
      if (handlers.signal.aborted) return
      if (connect.signal.aborted) throw new ApiTimeoutError(operation, this.#timeoutMs, { cause: err })
      throw err
    } finally {
      clearTimeout(timer)
    }
    if (res.statusCode !== 200) {
      const text = await readBody(res).catch(() => '')
      throw new ApiError(operation, res.statusCode ?? 0, text)
    }
    handlers.onOpen()
    try {
      let rest = ''
      for await (const chunk of res as AsyncIterable<Buffer>) {
        rest += chunk.toString('utf8')
        let nl: number
        while ((nl = rest.indexOf('\n')) >= 0) {
          const line = rest.slice(0, nl).trim()
          rest = rest.slice(nl + 1)
          if (line === '') continue
          const event = JSON.parse(line) as { type?: unknown; object?: unknown }
          if (handlers.signal.aborted) return
          handlers.onEvent(String(event.type), event.object)
        }
      }
    } catch (err) {
      if (handlers.signal.aborted) return
      throw err
    }
  }

  /** Waits for a token of the rate limit, if there is one; an abort meanwhile gives it back and throws. */
  async #throttle(signal: AbortSignal | undefined): Promise<void> {
    if (!this.#bucket) return
    const waitMs = this.#bucket.take(this.#now())
    if (waitMs === 0) return
    this.#onThrottled?.(waitMs)
    try {
      await sleep(waitMs, undefined, signal ? { signal } : undefined)
    } catch (err) {
      this.#bucket.giveBack()
      throw err
    }
  }

  /** Closes idle connections; calls in flight finish. */
  close(): void {
    this.#agent.destroy()
    this.#tokenAgent.destroy()
  }

  #send(req: ApiRequest, signal: AbortSignal): Promise<IncomingMessage> {
    const url = new URL(this.#access.server + req.path)
    for (const [k, v] of Object.entries(req.query ?? {})) if (v !== undefined) url.searchParams.set(k, String(v))
    const body = req.body === undefined ? undefined : JSON.stringify(req.body)
    const headers: OutgoingHttpHeaders = { accept: 'application/json', 'user-agent': this.#userAgent }
    if (body !== undefined) Object.assign(headers, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) })
    const auth = req.bearerToken !== undefined ? `Bearer ${req.bearerToken}` : this.#authorization()
    if (auth) headers.authorization = auth
    const agent = req.bearerToken !== undefined ? this.#tokenAgent : this.#agent
    return new Promise<IncomingMessage>((resolve, reject) => {
      let response: IncomingMessage | undefined
      const outgoing: ClientRequest = this.#request(url, { method: req.method, headers, agent }, res => {
        response = res
        resolve(res)
      })
      // Our own abort rather than request's `signal` option: that one destroys
      // the socket with an error which, once a reader has stopped reading (a
      // watch its own handler aborted), nothing listens for. A response cut
      // short is destroyed without an error; its reader sees a premature close.
      const onAbort = (): void => {
        if (response) response.destroy()
        else outgoing.destroy(new DOMException('This operation was aborted', 'AbortError'))
      }
      if (signal.aborted) onAbort()
      else signal.addEventListener('abort', onAbort, { once: true })
      outgoing.on('close', () => signal.removeEventListener('abort', onAbort))
      outgoing.on('error', reject)
      outgoing.end(body)
    })
  }

  #authorization(): string | undefined {
    const a = this.#access
    if (a.token) return `Bearer ${a.token}`
    if (a.tokenFile) {
      const now = this.#now()
      if (!this.#token || now - this.#token.readAt >= TOKEN_REFRESH_MS) {
        // A token being rotated can be unreadable for a moment: keep the last one.
        try {
          this.#token = { value: readFileSync(a.tokenFile, 'utf8').trim(), readAt: now }
        } catch (err) {
          if (!this.#token) throw err
        }
      }
      return `Bearer ${this.#token.value}`
    }
    if (a.basic) return `Basic ${Buffer.from(`${a.basic.username}:${a.basic.password}`).toString('base64')}`
    return undefined
  }
}

async function readBody(res: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = []
  for await (const chunk of res as AsyncIterable<Buffer>) chunks.push(chunk)
  return Buffer.concat(chunks).toString('utf8')
}

/** events.k8s.io/v1 wants microsecond precision (a Date serialises with milliseconds). */
export function microTime(date: Date): string {
  return date.toISOString().replace(/\.(\d{3})Z$/, '.$1000Z')
}
