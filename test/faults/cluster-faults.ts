// Faults in one process of a private control plane: SIGSTOP/SIGCONT (the
// apiserver becomes a blackhole: connections open, nothing answers), a kill
// and a restart with the very command line it was started with (same port,
// same data: clients see refused connections, then the same cluster), and
// etcd writes behind the apiserver's back. Only for a control plane the test
// started itself: the shared one (CSI_CLUSTER_DIR) is never touched.
import { type KubeConfig } from '@kubernetes/client-node'
import { setTimeout as sleep } from 'node:timers/promises'
import { writeState, type ClusterState } from '../cluster/control-plane.js'
import { isAlive, startProcess, stopProcess, tail, type ProcessRecord } from '../cluster/processes.js'
import { EtcdClient } from './lib/etcd.js'
import { httpsGet, tlsFrom, type Tls } from './lib/https.js'

export type ControlPlaneProcess = 'etcd' | 'kube-apiserver' | 'cert-manager-controllers'

export interface InjectedFault {
  at: string
  process: ControlPlaneProcess | 'driver' | 'data-root' | 'api'
  what: string
}

export class ClusterFaults {
  readonly etcd: EtcdClient
  readonly injected: InjectedFault[] = []
  private readonly tls: Tls
  private readonly paused = new Set<ControlPlaneProcess>()

  constructor(private readonly state: ClusterState, kc: KubeConfig, private readonly log: (msg: string) => void = () => {}) {
    this.tls = tlsFrom(kc)
    this.etcd = new EtcdClient(this.flag('etcd', '--listen-client-urls'))
  }

  /** Counts as a fault in the figures; for faults made elsewhere (a driver kill, a full tmpfs). */
  note(process: InjectedFault['process'], what: string): void {
    this.injected.push({ at: new Date().toISOString(), process, what })
    this.log(`fault: ${process}: ${what}`)
  }

  record(name: ControlPlaneProcess): ProcessRecord {
    const p = this.state.processes.find(x => x.name === name)
    if (!p) throw new Error(`no ${name} in this control plane`)
    return p
  }

  private flag(name: ControlPlaneProcess, flag: string): string {
    const cmd = this.record(name).command
    const i = cmd.indexOf(flag)
    if (i < 0 || !cmd[i + 1]) throw new Error(`${name} was not started with ${flag}`)
    return cmd[i + 1]!
  }

  alive(name: ControlPlaneProcess): boolean {
    return isAlive(this.record(name).pid)
  }

  /** SIGSTOP: the process keeps its sockets but answers nothing. */
  pause(name: ControlPlaneProcess): void {
    process.kill(this.record(name).pid, 'SIGSTOP')
    this.paused.add(name)
    this.note(name, 'SIGSTOP')
  }

  resume(name: ControlPlaneProcess): void {
    process.kill(this.record(name).pid, 'SIGCONT')
    this.paused.delete(name)
    this.log(`${name}: SIGCONT`)
  }

  /** SIGKILL (or another signal) and wait until it is gone. */
  async kill(name: ControlPlaneProcess, signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    const pid = this.record(name).pid
    if (this.paused.has(name)) this.resume(name)
    try { process.kill(pid, signal) } catch { /* already gone */ }
    const deadline = Date.now() + 30_000
    while (isAlive(pid)) {
      if (Date.now() > deadline) throw new Error(`${name} (pid ${pid}) still alive 30s after ${signal}`)
      await sleep(50)
    }
    this.note(name, signal === 'SIGKILL' ? 'killed' : `stopped (${signal})`)
  }

  /** SIGTERM, SIGKILL after a grace period: an orderly stop. */
  async stop(name: ControlPlaneProcess): Promise<void> {
    if (this.paused.has(name)) this.resume(name)
    await stopProcess(this.record(name).pid, 10_000)
    this.note(name, 'stopped')
  }

  /** Starts it again exactly as `up` did (same flags, port, data dir, log file) and waits until it serves. */
  async start(name: ControlPlaneProcess, readyTimeoutMs = 120_000): Promise<number> {
    const old = this.record(name)
    if (isAlive(old.pid)) throw new Error(`${name} is still running (pid ${old.pid})`)
    const started = Date.now()
    const fresh = startProcess(name, old.command, old.log)
    this.state.processes[this.state.processes.indexOf(old)] = fresh
    writeState(this.state)
    this.log(`${name}: started again as pid ${fresh.pid}`)
    await this.waitReady(name, readyTimeoutMs)
    return Date.now() - started
  }

  async restart(name: ControlPlaneProcess, signal: NodeJS.Signals = 'SIGKILL'): Promise<number> {
    await this.kill(name, signal)
    return this.start(name)
  }

  async apiserverReady(timeoutMs = 2_000): Promise<boolean> {
    const res = await httpsGet(`${this.state.server}/readyz`, this.tls, timeoutMs).catch(() => undefined)
    return res?.status === 200
  }

  async waitReady(name: ControlPlaneProcess, timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs
    const check = async (): Promise<boolean> => {
      switch (name) {
        case 'etcd': return (await fetch(`${this.etcd.url}/health`, { signal: AbortSignal.timeout(2_000) })).ok
        case 'kube-apiserver': return this.apiserverReady()
        // Its informers sync in a second or two; signing resumes after that.
        case 'cert-manager-controllers': await sleep(2_000); return true
      }
    }
    for (;;) {
      const p = this.record(name)
      if (!isAlive(p.pid)) throw new Error(`${name} exited while starting. Last lines of ${p.log}:\n${tail(p.log)}`)
      if (await check().catch(() => false)) return
      if (Date.now() > deadline) throw new Error(`${name} not ready ${timeoutMs / 1000}s after a restart. Last lines of ${p.log}:\n${tail(p.log)}`)
      await sleep(250)
    }
  }

  /**
   * Deletes objects straight from etcd, as if someone deleted them while
   * this apiserver could not tell anyone: no watch event ever reports them.
   */
  async deleteInEtcd(keys: string[]): Promise<number> {
    let n = 0
    for (const k of keys) n += await this.etcd.deleteKey(k)
    this.note('etcd', `deleted ${n} object(s) behind the apiserver's back`)
    return n
  }

  /** For teardown: a stopped process cannot handle the SIGTERM that `down` sends. */
  resumeAll(): void {
    for (const name of [...this.paused]) {
      try { this.resume(name) } catch { /* gone */ }
    }
  }
}
