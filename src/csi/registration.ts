// The kubelet's plugin registration service, served by the driver itself.
//
// The kubelet's plugin watcher looks for sockets in its plugins_registry
// directory. For each it calls GetInfo, learns that a CSI plugin named
// csi.cert-manager.io lives at `endpoint`, calls NodeGetInfo there (which
// lists the driver on the node's CSINode), and reports the outcome through
// NotifyRegistrationStatus. Removing the socket deregisters the driver.
//
// In a DaemonSet this is node-driver-registrar's job; --kubelet-registration-path
// lets the driver do it where that sidecar cannot run (see test/e2e/README.md).
//
// Types in ./registration-generated come from proto/pluginregistration.proto (npm run gen:proto):

import { existsSync } from 'node:fs'
import { lstat, mkdir, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { Server, ServerCredentials, loadPackageDefinition, type ServerUnaryCall, type sendUnaryData } from '@grpc/grpc-js'
import { loadSync } from '@grpc/proto-loader'
import type { Logger } from '../log/logger.js'
import type { ProtoGrpcType } from './registration-generated/pluginregistration.js'
import type { InfoRequest__Output } from './registration-generated/pluginregistration/InfoRequest.js'
import type { PluginInfo } from './registration-generated/pluginregistration/PluginInfo.js'
import type { RegistrationHandlers } from './registration-generated/pluginregistration/Registration.js'
import type { RegistrationStatus__Output } from './registration-generated/pluginregistration/RegistrationStatus.js'
import type { RegistrationStatusResponse } from './registration-generated/pluginregistration/RegistrationStatusResponse.js'
import { PROTO_LOADER_OPTIONS } from './proto.js'

/** PluginInfo.type for CSI drivers (k8s.io/kubelet/pkg/apis/pluginregistration/v1 CSIPlugin). */
export const CSI_PLUGIN_TYPE = 'CSIPlugin'
/** The CSI spec versions we speak, as node-driver-registrar reports them. */
export const SUPPORTED_VERSIONS = ['1.0.0'] as const

/** node-driver-registrar's naming: <dir>/<driver name>-reg.sock. */
export function registrationSocketPath(dir: string, driverName: string): string {
  return join(dir, `${driverName}-reg.sock`)
}

export function registrationProtoPath(): string {
  const candidates = ['../../proto/pluginregistration.proto', '../../../proto/pluginregistration.proto'].map((rel) =>
    fileURLToPath(new URL(rel, import.meta.url)),
  )
  const found = candidates.find((p) => existsSync(p))
  if (found === undefined) throw new Error(`proto/pluginregistration.proto not found; looked at ${candidates.join(', ')}`)
  return found
}

export function loadRegistrationProto(path: string = registrationProtoPath()): ProtoGrpcType['pluginregistration'] {
  return (loadPackageDefinition(loadSync(path, PROTO_LOADER_OPTIONS)) as unknown as ProtoGrpcType).pluginregistration
}

export interface RegistrationServerOptions {
  /** The kubelet's plugin watcher directory, e.g. /var/lib/kubelet/plugins_registry. */
  registrationDir: string
  driverName: string
  /** The CSI socket's path as the kubelet sees it (--kubelet-registration-path). */
  endpoint: string
  logger: Logger
}

export interface RegistrationState {
  /** Undefined until the kubelet has told us. */
  registered?: boolean
  error?: string
}

export class RegistrationServer {
  readonly socketPath: string
  readonly #server = new Server()
  readonly #log: Logger
  #state: RegistrationState = {}
  #stopping: Promise<void> | undefined

  readonly #opts: RegistrationServerOptions
  constructor(opts: RegistrationServerOptions) {
    this.#opts = opts
    this.socketPath = registrationSocketPath(opts.registrationDir, opts.driverName)
    this.#log = opts.logger.child({ component: 'registration' })
    const handlers: RegistrationHandlers = {
      GetInfo: (_call: ServerUnaryCall<InfoRequest__Output, PluginInfo>, callback: sendUnaryData<PluginInfo>) => {
        this.#log.debug('kubelet asked for plugin info')
        callback(null, this.info())
      },
      NotifyRegistrationStatus: (
        call: ServerUnaryCall<RegistrationStatus__Output, RegistrationStatusResponse>,
        callback: sendUnaryData<RegistrationStatusResponse>,
      ) => {
        this.#onStatus(call.request)
        callback(null, {})
      },
    }
    this.#server.addService(loadRegistrationProto().Registration.service, handlers)
  }

  /** What GetInfo answers. */
  info(): Required<PluginInfo> {
    return {
      type: CSI_PLUGIN_TYPE,
      name: this.#opts.driverName,
      endpoint: this.#opts.endpoint,
      supported_versions: [...SUPPORTED_VERSIONS],
    }
  }

  /** The kubelet's last word on our registration. */
  status(): RegistrationState {
    return { ...this.#state }
  }

  async start(): Promise<void> {
    await mkdir(this.#opts.registrationDir, { recursive: true })
    // A driver killed with SIGKILL leaves its socket; binding would fail. The
    // kubelet sees the old socket go and the new one come, and registers anew.
    const st = await lstat(this.socketPath).catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return undefined
      throw err
    })
    if (st !== undefined) {
      if (!st.isSocket()) throw new Error(`${this.socketPath} exists and is not a socket; refusing to replace it`)
      await rm(this.socketPath)
      this.#log.info({ socket: this.socketPath }, 'removed stale registration socket')
    }
    await new Promise<void>((resolve, reject) => {
      this.#server.bindAsync(`unix://${this.socketPath}`, ServerCredentials.createInsecure(), (err) => (err ? reject(err) : resolve()))
    })
    this.#log.info({ socket: this.socketPath, endpoint: this.#opts.endpoint, driver_name: this.#opts.driverName }, 'registration server listening for the kubelet')
  }

  /** Removes the socket first (the kubelet deregisters the driver), then stops serving. */
  stop(): Promise<void> {
    this.#stopping ??= (async () => {
      await rm(this.socketPath, { force: true })
      await new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          this.#server.forceShutdown()
          resolve()
        }, 2_000)
        this.#server.tryShutdown(() => {
          clearTimeout(timer)
          resolve()
        })
      })
      this.#log.info('registration server stopped')
    })()
    return this.#stopping
  }

  #onStatus(req: RegistrationStatus__Output): void {
    this.#state = req.plugin_registered ? { registered: true } : { registered: false, error: req.error }
    if (req.plugin_registered) {
      this.#log.info({ driver_name: this.#opts.driverName, endpoint: this.#opts.endpoint }, 'registered with the kubelet')
    } else {
      this.#log.error(
        { driver_name: this.#opts.driverName, endpoint: this.#opts.endpoint, error: req.error },
        `the kubelet refused the registration: ${req.error || '(no reason given)'}`,
      )
    }
  }
}
