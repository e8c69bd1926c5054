// One node under faults: the real driver process (through NodeHarness),
// restarted the way a DaemonSet restarts it (same node id, data root and
// socket), a kubelet that retries publishes and unpublishes until they
// succeed, and the checks made right after every OK.
import { appendFileSync, existsSync, readdirSync, readFileSync, statSync } from 'node:fs'
import { join, relative } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { EventsV1Api } from '@kubernetes/client-node'
import type { ControlPlane } from '../../fixtures/control-plane.js'
import { NodeHarness, type Teardown, type Volume } from '../../helpers/node-harness.js'
import { checkServed, type Expected, type Served } from './served.js'

export interface Exit {
  at: string
  code: number | null
  signal: NodeJS.Signals | null
  lastLog: string
}

export interface CallError {
  code?: number
  details: string
}

const errOf = (err: unknown): CallError => {
  const e = err as { code?: number; details?: string; message?: string }
  return { ...(e.code !== undefined ? { code: e.code } : {}), details: e.details ?? e.message ?? String(err) }
}

export class FaultNode {
  readonly h: NodeHarness
  /** The driver exited without being told to: a crash (a DaemonSet would restart it). */
  readonly unexpectedExits: Exit[] = []
  /** A publish answered OK while the target lacked matching files. */
  readonly badOks: { volumeId: string; problems: string[] }[] = []
  readonly checked = new Set<string>()
  /** Distinct (volume, serial) pairs seen served after notAfter. */
  readonly expiredServed = new Set<string>()
  kills = 0
  restarts = 0
  private generation = 0
  private expectExit = false
  private supervising = true

  constructor(readonly cp: ControlPlane, t: Teardown, private readonly outDir: string, extraArgs: string[] = [], private readonly log: (msg: string) => void = () => {}) {
    this.h = new NodeHarness(cp, t, ['--log-level', 'info', ...extraArgs])
    // tap runs teardowns last-added first: supervision stops before the
    // harness' cleanup kills the driver.
    t.teardown(() => {
      this.supervising = false
      this.expectExit = true
    })
  }

  get nodeId(): string { return this.h.nodeId }
  get dataRoot(): string { return this.h.dataRoot }
  get pid(): number | undefined { return this.h.driver?.proc.pid }
  get running(): boolean { return !!this.h.driver && this.h.driver.proc.exitCode === null && this.h.driver.proc.signalCode === null }

  async start(): Promise<void> {
    const d = await this.h.start()
    const gen = ++this.generation
    this.expectExit = false
    d.proc.once('exit', (code, signal) => {
      appendFileSync(join(this.outDir, 'driver.log'), `\n===== driver #${gen} (pid ${d.proc.pid}) exited: code ${code} signal ${signal}\n${d.logs()}`)
      if (this.expectExit || !this.supervising) return
      const exit = { at: new Date().toISOString(), code, signal, lastLog: d.logs().split('\n').slice(-15).join('\n') }
      this.unexpectedExits.push(exit)
      this.log(`driver exited on its own (code ${code}, signal ${signal}); restarting it like a DaemonSet`)
      if (this.h.driver === d) this.h.driver = undefined
      void sleep(1_000).then(() => (this.supervising && !this.h.driver ? this.startRetrying() : undefined))
    })
  }

  /** Starts, retrying a start that fails (the socket or the apiserver not there yet). */
  async startRetrying(deadlineMs = 120_000): Promise<void> {
    const deadline = Date.now() + deadlineMs
    for (;;) {
      try {
        await this.start()
        this.restarts++
        return
      } catch (err) {
        if (Date.now() > deadline) throw err
        this.log(`driver did not start (${String(err).split('\n')[0]}); retrying`)
        await sleep(1_000)
      }
    }
  }

  /** SIGKILL: no cleanup of any kind. */
  async kill(): Promise<void> {
    this.expectExit = true
    this.kills++
    await this.h.kill()
  }

  /** What a DaemonSet does after a kill: the same node id, data root and socket. */
  async killAndRestart(downMs: number): Promise<void> {
    await this.kill()
    await sleep(downMs)
    await this.startRetrying()
  }

  newVolume(): Promise<Volume> {
    return this.h.newVolume()
  }

  /**
   * Publishes like the kubelet: retried until OK (or INVALID_ARGUMENT), and
   * the files checked the moment it answers OK.
   */
  async publishUntilOk(v: Volume, attrs: Record<string, string>, expected: Expected, opts: { deadlineMs?: number; callTimeoutMs?: number; onError?: (e: CallError) => void } = {}): Promise<{ attempts: number; ms: number; served: Served }> {
    const start = Date.now()
    const deadline = start + (opts.deadlineMs ?? 180_000)
    let last: CallError | undefined
    for (let attempts = 1; ; attempts++) {
      try {
        await this.h.publish(v, attrs, opts.callTimeoutMs ?? 30_000)
      } catch (err) {
        last = errOf(err)
        opts.onError?.(last)
        if (last.code === 3) throw new Error(`publish of ${v.volumeId} refused: ${last.details}`)
        if (Date.now() > deadline) throw new Error(`publish of ${v.volumeId} not OK after ${attempts} attempts in ${(Date.now() - start) / 1000}s; last: ${last.code} ${last.details}`)
        await sleep(500)
        continue
      }
      const served = await this.check(v, expected)
      if (served.problems.length > 0) this.badOks.push({ volumeId: v.volumeId, problems: served.problems })
      return { attempts, ms: Date.now() - start, served }
    }
  }

  /** One publish, no retry: resolves with the error or undefined on OK (files checked). */
  async publishOnce(v: Volume, attrs: Record<string, string>, expected: Expected, timeoutMs = 30_000): Promise<CallError | undefined> {
    try {
      await this.h.publish(v, attrs, timeoutMs)
    } catch (err) {
      return errOf(err)
    }
    const served = await this.check(v, expected)
    if (served.problems.length > 0) this.badOks.push({ volumeId: v.volumeId, problems: served.problems })
    return undefined
  }

  async unpublishOnce(v: Volume, timeoutMs = 30_000): Promise<CallError | undefined> {
    try {
      await this.h.unpublish(v, timeoutMs)
      return undefined
    } catch (err) {
      return errOf(err)
    }
  }

  async unpublishUntilOk(v: Volume, deadlineMs = 120_000): Promise<{ attempts: number; ms: number }> {
    const start = Date.now()
    for (let attempts = 1; ; attempts++) {
      const err = await this.unpublishOnce(v)
      if (!err) return { attempts, ms: Date.now() - start }
      if (Date.now() - start > deadlineMs) throw new Error(`unpublish of ${v.volumeId} not OK after ${attempts} attempts; last: ${err.code} ${err.details}`)
      await sleep(500)
    }
  }

  /** The files a pod would read now, checked; counts expired certificates served. */
  async check(v: Volume, expected: Expected): Promise<Served> {
    const served = await checkServed(v.targetPath, expected)
    this.checked.add(v.volumeId)
    if (served.expired && served.serial) this.expiredServed.add(`${v.volumeId}/${served.serial}`)
    return served
  }

  isMounted(path: string): boolean {
    return this.h.isMounted(path)
  }

  /** Mount points below the node's kubelet directory (the volumes' targets). */
  targetMounts(): string[] {
    const kubelet = join(this.h.root, 'kubelet')
    return readFileSync('/proc/self/mountinfo', 'utf8').split('\n')
      .map(l => l.split(' ')[4]?.replace(/\\040/g, ' '))
      .filter((p): p is string => !!p && p.startsWith(`${kubelet}/`))
  }

  /** Every file and directory left under the data root, relative to it. */
  dataRootEntries(): string[] {
    const out: string[] = []
    const walk = (dir: string): void => {
      if (!existsSync(dir)) return
      for (const name of readdirSync(dir)) {
        const p = join(dir, name)
        out.push(relative(this.dataRoot, p))
        if (statSync(p, { throwIfNoEntry: false })?.isDirectory()) walk(p)
      }
    }
    walk(this.dataRoot)
    return out
  }

  /** Driver logs so far, of the running process. */
  logs(): string {
    return this.h.driver?.logs() ?? ''
  }

  async podEventReasons(v: Volume): Promise<{ type: string; reason: string; note: string }[]> {
    const api = this.cp.kc.makeApiClient(EventsV1Api)
    const list = await api.listNamespacedEvent({ namespace: v.pod.namespace, fieldSelector: `regarding.name=${v.pod.name}` })
    return list.items.map(e => ({ type: e.type ?? '', reason: e.reason ?? '', note: e.note ?? '' }))
  }
}
