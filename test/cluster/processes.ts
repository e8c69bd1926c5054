// Long-running child processes of the control plane: started detached (they
// outlive `cluster up`), logging to files, stopped by pid.
import { spawn } from 'node:child_process'
import { openSync, closeSync, readFileSync, existsSync } from 'node:fs'
import { setTimeout as sleep } from 'node:timers/promises'

export interface ProcessRecord {
  name: string
  pid: number
  log: string
  command: string[]
}

export function startProcess(name: string, command: string[], log: string, env: NodeJS.ProcessEnv = process.env): ProcessRecord {
  const fd = openSync(log, 'a')
  try {
    const child = spawn(command[0]!, command.slice(1), { detached: true, stdio: ['ignore', fd, fd], env })
    if (child.pid === undefined) throw new Error(`${name}: could not start ${command[0]}`)
    child.unref()
    return { name, pid: child.pid, log, command }
  } finally {
    closeSync(fd)
  }
}

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return !isZombie(pid)
  } catch {
    return false
  }
}

// A child that exited but was never reaped still answers kill(pid, 0).
function isZombie(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    return stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z')
  } catch {
    return false
  }
}

export function tail(file: string, lines = 20): string {
  if (!existsSync(file)) return '(no log)'
  const all = readFileSync(file, 'utf8').trimEnd().split('\n')
  return all.slice(-lines).join('\n')
}

/** SIGTERM, then SIGKILL after graceMs. Resolves once the process is gone. */
export async function stopProcess(pid: number, graceMs = 10_000): Promise<void> {
  if (!isAlive(pid)) return
  signal(pid, 'SIGTERM')
  const deadline = Date.now() + graceMs
  while (isAlive(pid) && Date.now() < deadline) await sleep(100)
  if (isAlive(pid)) {
    signal(pid, 'SIGKILL')
    while (isAlive(pid)) await sleep(50)
  }
}

function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    // Detached children lead their own process group: take any helpers with them.
    process.kill(-pid, sig)
  } catch {
    try { process.kill(pid, sig) } catch { /* already gone */ }
  }
}

/** Resident set size in MiB, from /proc; undefined when the process is gone. */
export function rssMiB(pid: number): number | undefined {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8')
    const kb = /VmRSS:\s+(\d+) kB/.exec(status)?.[1]
    return kb === undefined ? undefined : Math.round(Number(kb) / 1024)
  } catch {
    return undefined
  }
}
