// npm run cluster -- up | down | status
// Runs the local control plane in the background for the demo, for tests and
// for poking at by hand with the kubeconfig it prints.
import { up, down, status, defaultClusterDir, ClusterError, readState } from './control-plane.js'
import { isAlive, tail } from './processes.js'

const usage = 'usage: npm run cluster -- up | down | status   (state in $CSI_CLUSTER_DIR, default /tmp/cert-manager-csi-cluster)'

async function main(command: string | undefined): Promise<number> {
  const dir = defaultClusterDir()
  switch (command) {
    case 'up': {
      const state = await up({ dir, log: line => console.error(`[cluster] ${line}`) })
      const t = state.timings
      console.log(`control plane ready in ${((t.totalMs ?? 0) / 1000).toFixed(1)}s (apiserver ${((t.apiserverMs ?? 0) / 1000).toFixed(1)}s)`)
      console.log(`kubeconfig: ${state.kubeconfig}`)
      console.log(`issuers:    Issuer ${state.issuer.namespace}/${state.issuer.name}, ClusterIssuer ${state.clusterIssuer.name}`)
      console.log(`logs:       ${dir}/logs`)
      console.log(`try:        ${state.binDir}/kubectl --kubeconfig ${state.kubeconfig} get issuers -A`)
      return 0
    }
    case 'down': {
      if (!readState(dir)) {
        console.log(`no control plane to stop (nothing in ${dir})`)
        return 0
      }
      const { stopped } = await down(dir)
      console.log(stopped.length > 0 ? `stopped ${stopped.join(', ')}; removed ${dir}` : `nothing was running; removed ${dir}`)
      return 0
    }
    case 'status': {
      const { state, processes } = status(dir)
      if (!state) {
        console.log(`not running (nothing in ${dir})`)
        return 1
      }
      console.log(`started ${state.startedAt}; kubeconfig ${state.kubeconfig}; server ${state.server}`)
      for (const p of processes) {
        console.log(`  ${p.name.padEnd(26)} pid ${String(p.pid).padEnd(8)} ${p.alive ? `running  rss ${p.rssMiB ?? '?'} MiB` : 'DEAD'}  log ${p.log}`)
      }
      const dead = processes.filter(p => !isAlive(p.pid))
      for (const p of dead) console.log(`\n--- last lines of ${p.log} ---\n${tail(p.log)}`)
      return dead.length === 0 ? 0 : 1
    }
    default:
      console.error(usage)
      return 2
  }
}

main(process.argv[2]).then(code => process.exit(code), (err: unknown) => {
  console.error(err instanceof ClusterError ? `cluster: ${err.message}` : err)
  process.exit(1)
})
