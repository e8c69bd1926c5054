// The plain-HTTP side of the driver: Prometheus metrics and the health
// endpoints a DaemonSet's probes call. node:http only; three fixed routes do
// not need a framework.

import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { Logger } from 'pino'
import type { BindAddress } from '../cli/bind-address.js'
import type { DriverMetrics } from '../metrics/metrics.js'

export type { BindAddress }

export interface HttpServerOptions {
  /** From --metrics-bind-address; null: the server is disabled. */
  bindAddress: BindAddress | null
  metrics: DriverMetrics
  /** Readiness: false or a throw answers 503. */
  ready: () => Promise<boolean>
  logger: Logger
}

export interface RunningHttpServer {
  /** Where it actually listens: the real port when ":0" was asked for. */
  address: BindAddress
  /** Stops accepting, drops idle keep-alive connections, waits for the rest briefly. */
  close(): Promise<void>
}

/** How long close() lets a scrape in flight finish before cutting it. */
const CLOSE_GRACE_MS = 2_000

const TEXT = 'text/plain; charset=utf-8'

/** Null when disabled ("0" or null). Rejects if it cannot listen (EADDRINUSE...). */
export async function startHttpServer(opts: HttpServerOptions): Promise<RunningHttpServer | null> {
  const bind = opts.bindAddress
  const log = opts.logger.child({ component: 'http' })
  if (!bind) {
    log.info('metrics and health server disabled')
    return null
  }

  const server = createServer((req, res) => {
    handle(req, res, opts, log).catch((err: unknown) => {
      log.error({ err, path: req.url }, 'http handler failed')
      if (!res.headersSent) send(res, 500, 'internal error')
      else res.destroy()
    })
  })
  // A scraper that opens a connection and says nothing must not hold a socket forever.
  server.headersTimeout = 10_000
  server.requestTimeout = 30_000

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    // No host: every interface, IPv6 and IPv4 where the kernel allows both.
    server.listen({ port: bind.port, ...(bind.host ? { host: bind.host } : {}) }, () => {
      server.off('error', reject)
      resolve()
    })
  }).catch((err: unknown) => {
    const where = bind.host.includes(':') ? `[${bind.host}]:${bind.port}` : `${bind.host}:${bind.port}`
    throw new Error(`cannot listen on ${where}: ${err instanceof Error ? err.message : String(err)}`, { cause: err })
  })
  server.on('error', (err) => log.error({ err }, 'http server error'))

  const info = server.address() as AddressInfo
  const address = { host: info.address, port: info.port }
  log.info({ address }, 'metrics and health server listening')

  let closing: Promise<void> | undefined
  return {
    address,
    close: () => {
      closing ??= new Promise<void>((resolve) => {
        const force = setTimeout(() => server.closeAllConnections(), CLOSE_GRACE_MS)
        force.unref()
        server.close(() => {
          clearTimeout(force)
          resolve()
        })
        server.closeIdleConnections()
      })
      return closing
    },
  }
}

type Route = (opts: HttpServerOptions, log: Logger) => Promise<{ status: number; body: string; contentType: string }>

const ROUTES: Record<string, Route> = {
  '/metrics': async (o) => ({ status: 200, body: await o.metrics.metricsText(), contentType: o.metrics.registry.contentType }),
  '/healthz': async () => ({ status: 200, body: 'ok', contentType: TEXT }),
  '/readyz': async (o, log) => {
    let ok = false
    try {
      ok = await o.ready()
    } catch (err) {
      log.warn({ err }, 'readiness check failed')
    }
    return ok ? { status: 200, body: 'ok', contentType: TEXT } : { status: 503, body: 'not ready', contentType: TEXT }
  },
}

async function handle(req: IncomingMessage, res: ServerResponse, opts: HttpServerOptions, log: Logger): Promise<void> {
  // Only the path routes: "/metrics?x=1" is still /metrics.
  const path = (req.url ?? '/').split('?', 1)[0]!
  const route = Object.hasOwn(ROUTES, path) ? ROUTES[path] : undefined
  if (!route) return send(res, 404, 'not found')
  // HEAD is GET without a body (node:http drops it); anything else changes nothing here.
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    res.setHeader('Allow', 'GET, HEAD')
    return send(res, 405, 'method not allowed')
  }
  const out = await route(opts, log)
  send(res, out.status, out.body, out.contentType)
}

function send(res: ServerResponse, status: number, body: string, contentType = TEXT): void {
  res.writeHead(status, {
    'Content-Type': contentType,
    'Content-Length': Buffer.byteLength(body),
    'Cache-Control': 'no-store',
    'X-Content-Type-Options': 'nosniff',
  })
  res.end(body)
}
