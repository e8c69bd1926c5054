// The bed of one fault case: its own control plane (a case may stop any of
// its processes), the fault controls, an etcd observer of the node's
// CertificateRequests and the apiserver's request counter.
import { cpSync, existsSync, mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { KubeConfig } from '@kubernetes/client-node'
import { up, down } from '../../cluster/control-plane.js'
import type { ControlPlane } from '../../fixtures/control-plane.js'
import { ClusterFaults } from '../cluster-faults.js'
import { ApiCallCounter } from './api-metrics.js'
import type { CaseContext } from './params.js'

interface Tap {
  teardown(fn: () => unknown): void
  comment(...args: unknown[]): void
}

export interface Bed {
  cp: ControlPlane
  faults: ClusterFaults
  api: ApiCallCounter
}

export async function privateControlPlane(t: Tap, ctx: CaseContext, opts: { controllers?: string[] } = {}): Promise<Bed> {
  const dir = mkdtempSync(join(tmpdir(), 'csi-faults-cluster-'))
  t.comment(`starting a private control plane in ${dir}`)
  const state = await up({
    dir,
    // run.sh builds the tools once and passes the folder on.
    ...(process.env.CSI_TOOLS_BIN ? { binDir: process.env.CSI_TOOLS_BIN } : {}),
    ...(opts.controllers ? { controllers: opts.controllers } : {}),
  })
  const kc = new KubeConfig()
  kc.loadFromFile(state.kubeconfig)
  const faults = new ClusterFaults(state, kc, msg => t.comment(msg))
  t.teardown(async () => {
    faults.resumeAll()
    if (existsSync(join(dir, 'logs'))) cpSync(join(dir, 'logs'), join(ctx.outDir, 'control-plane-logs'), { recursive: true })
    await down(dir)
  })
  return { cp: { ...state, kc }, faults, api: new ApiCallCounter(kc, state.server) }
}
