// Entry point: flags → logger → CSI server, then wait for SIGTERM/SIGINT.
// Wiring only; everything with logic lives in the modules it imports.

import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { parseFlags } from './cli/flags.js'
import { createIdentityService, dataRootReadiness } from './csi/identity.js'
import { UnavailablePublisher, createNodeService } from './csi/node.js'
import { PodTokens } from './kube/pod-tokens.js'
import { CsiServer } from './csi/server.js'
import { RegistrationServer } from './csi/registration.js'
import { FlagError, FlagExit } from './errors.js'
import { createLogger } from './log/logger.js'
import { startDriver, type RunningDriver } from './driver.js'
import { DataRootInUseError, DataRootLock } from './host/data-root-lock.js'
import { UnsafeDataRootError, checkDataRoot } from './host/data-root.js'
import { DriverMetrics } from './metrics/metrics.js'
import { startHttpServer, type RunningHttpServer } from './http/server.js'

const PROGRAM = 'cert-manager-csi-driver'

async function main(argv: string[]): Promise<number> {
  const version = readVersion()
  let config
  try {
    config = parseFlags(argv, version)
  } catch (err) {
    if (err instanceof FlagExit) {
      process.stdout.write(err.output)
      return 0
    }
    if (err instanceof FlagError) {
      process.stderr.write(`${PROGRAM}: error: ${err.message}\n`)
      return 2
    }
    throw err
  }

  // A data root someone else controls is refused before anything opens it;
  // one driver per node, checked before anything logs, binds a port or a socket.
  let lock: DataRootLock
  try {
    await checkDataRoot(config.dataRoot)
    lock = await DataRootLock.acquire(config.dataRoot)
  } catch (err) {
    if (!(err instanceof DataRootInUseError || err instanceof UnsafeDataRootError)) throw err
    process.stderr.write(`${PROGRAM}: error: ${err.message}\n`)
    return 1
  }

  const logger = createLogger({ level: config.logLevel, format: config.logFormat })
  logger.info({ version, node_id: config.nodeId, driver_name: config.driverName, data_root: config.dataRoot }, 'starting')

  // Up before the reconciler so /healthz answers while it starts.
  const metrics = new DriverMetrics()
  let driver: RunningDriver | undefined
  let http: RunningHttpServer | null = null
  try {
    http = await startHttpServer({
      bindAddress: config.metricsBindAddress,
      metrics,
      ready: async () => (driver ? driver.ready() : dataRootReadiness(config.dataRoot)()),
      logger,
    })
  } catch (err) {
    logger.error({ err }, 'metrics server failed to start')
    return 1
  }

  // Without a Kubernetes API there is nothing to issue with: serve the
  // Identity service and refuse publishes rather than fail to start.
  // --use-token-request: the pods' tokens, from the CSI calls to the requests they make.
  const podTokens = config.useTokenRequest ? new PodTokens(config.tokenRequestAudience, config.driverName) : undefined
  if (config.kubeconfig || process.env.KUBERNETES_SERVICE_HOST) {
    try {
      driver = await startDriver(
        {
          nodeId: config.nodeId,
          dataRoot: config.dataRoot,
          dataRootSizeBytes: config.dataRootSizeBytes,
          kubeconfig: config.kubeconfig,
          maxConcurrentIssuances: config.maxConcurrentIssuances,
          resyncPeriodMs: config.resyncPeriodMs,
          failureBackoff: { baseMs: config.failureBackoffMs, maxMs: 60 * 60_000, jitter: 0.2 },
          ...(podTokens ? { podTokens } : {}),
          kube: { apiTimeoutMs: config.kubeApiTimeoutMs, rateLimit: { qps: config.kubeApiQps, burst: config.kubeApiBurst }, cacheRelistPeriodMs: config.cacheRelistPeriodMs },
          metrics,
          lock,
        },
        logger,
      )
    } catch (err) {
      logger.error({ err }, 'reconciler failed to start')
      return 1
    }
  } else {
    logger.warn('no --kubeconfig and not in a cluster: publishes will be refused')
  }

  const server = new CsiServer({
    socketPath: config.socketPath,
    logger,
    identity: createIdentityService({
      driverName: config.driverName,
      version,
      readiness: driver ? () => driver.ready() : dataRootReadiness(config.dataRoot),
    }),
    node: createNodeService({
      nodeId: config.nodeId,
      driverName: config.driverName,
      publisher: driver?.publisher ?? new UnavailablePublisher(),
      publishTimeoutMs: config.publishTimeoutMs,
      kubeletRootDir: config.kubeletRootDir,
      annotationPrefixes: config.annotationPrefixes,
      ...(podTokens ? { podTokens } : {}),
    }),
  })
  try {
    await server.start()
  } catch (err) {
    logger.error({ err }, 'CSI server failed to start')
    return 1
  }

  // Registers with the kubelet ourselves where node-driver-registrar cannot run.
  let registration: RegistrationServer | undefined
  if (config.kubeletRegistrationPath !== undefined) {
    registration = new RegistrationServer({
      registrationDir: config.pluginRegistrationDir,
      driverName: config.driverName,
      endpoint: config.kubeletRegistrationPath,
      logger,
    })
    try {
      await registration.start()
    } catch (err) {
      logger.error({ err }, 'registration server failed to start')
      return 1
    }
  }

  const signal = await new Promise<NodeJS.Signals>((resolve) => {
    process.once('SIGTERM', resolve)
    process.once('SIGINT', resolve)
  })
  logger.info({ signal }, 'shutting down')
  // A second signal means "now": cut the in-flight calls short.
  const force = () => {
    logger.warn('second signal: stopping immediately')
    server.kill()
  }
  process.once('SIGTERM', force)
  process.once('SIGINT', force)
  // Deregister first: the kubelet stops sending new calls to a driver on its way out.
  await registration?.stop()
  await server.stop()
  await driver?.stop()
  await http?.close()
  await lock.release()
  return 0
}

// package.json is two levels up from src/main.ts (tsx) and three from dist/src/main.js.
function readVersion(): string {
  for (const rel of ['../package.json', '../../package.json']) {
    try {
      const pkg = JSON.parse(readFileSync(fileURLToPath(new URL(rel, import.meta.url)), 'utf8')) as { name?: string; version?: string }
      if (pkg.name === PROGRAM && pkg.version) return pkg.version
    } catch {
      // try the next location
    }
  }
  return '0.0.0-unknown'
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`${PROGRAM}: fatal: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`)
    process.exit(1)
  },
)
