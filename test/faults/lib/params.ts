// What a fault case reads from its environment, in one place: the form
// (short by default, long with CSI_FAULT_LONG=1), the seed, where figures and
// logs go, and per-case overrides. Read when a case starts, never at import.
import { mkdirSync, mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Rng, deriveSeed, runSeed } from './random.js'

export interface CaseContext {
  name: string
  long: boolean
  /** The run's seed (what a replay passes); the case's own stream is derived from it and the case name. */
  seed: number
  rng: Rng
  /** This case's folder: driver and control-plane logs, figures. */
  outDir: string
  figuresDir: string
}

export function caseContext(name: string, log: (msg: string) => void, env: NodeJS.ProcessEnv = process.env): CaseContext {
  const { seed, given } = runSeed(env)
  const long = env.CSI_FAULT_LONG === '1' || env.CSI_FAULT_LONG === 'true'
  const root = env.CSI_FAULT_OUT ?? mkdtempSync(join(tmpdir(), 'csi-faults-'))
  const outDir = join(root, name)
  const figuresDir = join(root, 'figures')
  mkdirSync(outDir, { recursive: true })
  mkdirSync(figuresDir, { recursive: true })
  log(`case ${name}: seed ${seed}${given ? '' : ' (random; replay with CSI_FAULT_SEED=' + seed + ')'}, ${long ? 'long' : 'short'} form, logs in ${outDir}`)
  return { name, long, seed, rng: new Rng(deriveSeed(seed, name)), outDir, figuresDir }
}

/** A count or duration: the env override if set, else the long or short figure. */
export function figure(ctx: CaseContext, envName: string, short: number, long: number, env: NodeJS.ProcessEnv = process.env): number {
  const raw = env[envName]
  if (raw !== undefined && raw !== '') {
    const n = Number(raw)
    if (!Number.isFinite(n) || n < 0) throw new Error(`${envName} must be a non-negative number, got ${JSON.stringify(raw)}`)
    return n
  }
  return ctx.long ? long : short
}

export function text(envName: string, fallback: string, env: NodeJS.ProcessEnv = process.env): string {
  const raw = env[envName]
  return raw === undefined || raw === '' ? fallback : raw
}
