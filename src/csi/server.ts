// The gRPC server on the kubelet's unix socket. Every call goes through one
// wrapper that times it, logs it (request sanitised), and maps whatever the
// handler threw to a gRPC status.

import { lstat, mkdir, rm } from 'node:fs/promises'
import { dirname } from 'node:path'
import { Server, ServerCredentials, status, type ServerUnaryCall, type UntypedServiceImplementation, type sendUnaryData } from '@grpc/grpc-js'
import type { Logger } from '../log/logger.js'
import type { IdentityHandlers } from './generated/csi/v1/Identity.js'
import type { NodeHandlers } from './generated/csi/v1/Node.js'
import type { AsyncService, AsyncUnary } from './handlers.js'
import { loadCsiProto } from './proto.js'
import { redactRequest } from './redact.js'
import { statusName, toStatus } from './status.js'

// Polled every few seconds by the livenessprobe and node-driver-registrar:
// their successes are not worth an info line each.
const QUIET_METHODS = new Set(['Probe', 'GetPluginInfo', 'GetPluginCapabilities', 'NodeGetInfo', 'NodeGetCapabilities'])

export interface CsiServerOptions {
  socketPath: string
  identity: AsyncService<IdentityHandlers>
  node: AsyncService<NodeHandlers>
  logger: Logger
  /** Monotonic milliseconds, for call durations. */
  now?: () => number
}

export interface StopOptions {
  /** How long in-flight calls may take to finish before they are told to give up. */
  graceMs?: number
  /** How long after that before connections are cut. */
  forceAfterMs?: number
}

export class CsiServer {
  readonly #server = new Server()
  readonly #inFlight = new Set<AbortController>()
  readonly #now: () => number
  #stopping: Promise<void> | undefined

  readonly #opts: CsiServerOptions
  constructor(opts: CsiServerOptions) {
    this.#opts = opts
    this.#now = opts.now ?? (() => performance.now())
    const csi = loadCsiProto()
    this.#server.addService(csi.Identity.service, this.#wrapAll(opts.identity))
    this.#server.addService(csi.Node.service, this.#wrapAll(opts.node))
  }

  async start(): Promise<void> {
    const { socketPath, logger } = this.#opts
    await mkdir(dirname(socketPath), { recursive: true })
    await removeStaleSocket(socketPath, logger)
    await new Promise<void>((resolve, reject) => {
      this.#server.bindAsync(`unix://${socketPath}`, ServerCredentials.createInsecure(), (err) => (err ? reject(err) : resolve()))
    })
    logger.info({ socket: socketPath }, 'CSI server listening')
  }

  /**
   * Stops taking calls and lets the ones in flight finish. After graceMs they
   * are aborted (a waiting publish answers with its reason); after
   * forceAfterMs more the connections are cut. The socket file is removed.
   */
  stop(opts: StopOptions = {}): Promise<void> {
    this.#stopping ??= this.#shutdown(opts.graceMs ?? 10_000, opts.forceAfterMs ?? 2_000)
    return this.#stopping
  }

  /** Cuts everything short now: the answer to a second SIGTERM. A pending stop() then finishes. */
  kill(): void {
    for (const ac of this.#inFlight) ac.abort(new Error('driver shutting down'))
    this.#server.forceShutdown()
  }

  async #shutdown(graceMs: number, forceAfterMs: number): Promise<void> {
    const { logger, socketPath } = this.#opts
    logger.info({ in_flight: this.#inFlight.size }, 'CSI server stopping')
    await new Promise<void>((resolve) => {
      let forceTimer: NodeJS.Timeout | undefined
      const abortTimer = setTimeout(() => {
        for (const ac of this.#inFlight) ac.abort(new Error('driver shutting down'))
        forceTimer = setTimeout(() => {
          logger.warn({ in_flight: this.#inFlight.size }, 'calls still in flight; closing connections')
          this.#server.forceShutdown()
          resolve()
        }, forceAfterMs)
      }, graceMs)
      this.#server.tryShutdown(() => {
        clearTimeout(abortTimer)
        clearTimeout(forceTimer)
        resolve()
      })
    })
    await rm(socketPath, { force: true })
    logger.info('CSI server stopped')
  }

  #wrapAll(service: object): UntypedServiceImplementation {
    return Object.fromEntries(
      Object.entries(service).map(([method, handler]) => [method, this.#wrap(method, handler as AsyncUnary<unknown, unknown>)]),
    )
  }

  #wrap(method: string, handler: AsyncUnary<unknown, unknown>) {
    return (call: ServerUnaryCall<unknown, unknown>, callback: sendUnaryData<unknown>): void => {
      const started = this.#now()
      const volumeId = (call.request as { volume_id?: unknown } | null)?.volume_id
      const log = this.#opts.logger.child({ method, ...(typeof volumeId === 'string' && volumeId !== '' ? { volume_id: volumeId } : {}) })
      // Redacting walks the whole request: only for the lines that print it.
      if (log.isLevelEnabled('debug')) log.debug({ req: redactRequest(call.request) }, 'call started')

      const ac = new AbortController()
      this.#inFlight.add(ac)
      // grpc-js emits 'cancelled' for client cancels and passed deadlines alike.
      call.on('cancelled', () => ac.abort(new Error('call cancelled by the client or its deadline passed')))

      let quiet = QUIET_METHODS.has(method)
      let result: Promise<unknown>
      try {
        result = handler(call.request, { signal: ac.signal, routine: () => (quiet = true) })
      } catch (err) {
        result = Promise.reject(err)
      }
      result.then(
        (res) => {
          this.#inFlight.delete(ac)
          const fields = { code: 'OK', duration_ms: this.#elapsed(started) }
          if (quiet) log.debug(fields, 'call finished')
          else log.info(fields, 'call finished')
          callback(null, res)
        },
        (err: unknown) => {
          this.#inFlight.delete(ac)
          const st = toStatus(err)
          const fields = { code: statusName(st.code), duration_ms: this.#elapsed(started), error: st.details, req: redactRequest(call.request) }
          if (st.code === status.INTERNAL) log.error({ ...fields, err }, 'call failed')
          else log.warn(fields, 'call failed')
          callback(st)
        },
      )
    }
  }

  #elapsed(started: number): number {
    return Math.round((this.#now() - started) * 10) / 10
  }
}

/**
 * A driver killed without cleanup leaves its socket file behind, and binding
 * to an existing path fails with EADDRINUSE. Only a socket is removed: any
 * other file there means a misconfigured --endpoint, not a stale socket.
 */
async function removeStaleSocket(path: string, logger: Logger): Promise<void> {
  const st = await lstat(path).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return undefined
    throw err
  })
  if (st === undefined) return
  if (!st.isSocket()) throw new Error(`${path} exists and is not a socket; refusing to replace it (check --endpoint)`)
  await rm(path)
  logger.info({ socket: path }, 'removed stale socket')
}
