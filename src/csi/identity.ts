// The CSI Identity service: who we are, what we offer, whether we are healthy.

import { constants } from 'node:fs'
import { access, stat } from 'node:fs/promises'
import type { IdentityHandlers } from './generated/csi/v1/Identity.js'
import type { AsyncService } from './handlers.js'

export type Readiness = () => Promise<boolean>

export interface IdentityServiceOptions {
  driverName: string
  /** package.json's version, read once by main. */
  version: string
  readiness: Readiness
}

export function createIdentityService(opts: IdentityServiceOptions): AsyncService<IdentityHandlers> {
  return {
    GetPluginInfo: async () => ({ name: opts.driverName, vendor_version: opts.version, manifest: {} }),

    // Node-only: no CONTROLLER_SERVICE, no topology constraints, no expansion.
    GetPluginCapabilities: async () => ({ capabilities: [] }),

    Probe: async () => {
      const ready = await opts.readiness().catch(() => false)
      return { ready: { value: ready } }
    },
  }
}

/** Ready when the data root is a directory we can write to. */
export function dataRootReadiness(dataRoot: string): Readiness {
  return async () => {
    try {
      const s = await stat(dataRoot)
      if (!s.isDirectory()) return false
      await access(dataRoot, constants.W_OK | constants.X_OK)
      return true
    } catch {
      return false
    }
  }
}
