// The figures one case hands to the runner's closing table, as a JSON file
// in the run's figures folder (one file per row).
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import type { WindowRate } from './api-metrics.js'
import type { CaseContext } from './params.js'

export interface CaseFigures {
  /** Row name, e.g. "R2 apiserver SIGSTOP". */
  row: string
  seed: number
  form: 'short' | 'long'
  seconds: number
  faults: number
  volumes: number
  requestsCreated: number
  /** What the case expected, e.g. "30" or "30-40". */
  requestsExpected: string
  maxLivePerVolume: number
  expiredServed: number
  /** Publishes answered OK with missing or mismatched files. */
  badOks: number
  driverCrashes: number
  /** API calls per minute by phase: "idle", "during", "after" are the table's columns; any other phase is listed below it. */
  api: WindowRate[]
  notes: string[]
}

export function writeFigures(ctx: CaseContext, f: Omit<CaseFigures, 'seed' | 'form'>): void {
  const file = join(ctx.figuresDir, `${f.row.replace(/[^A-Za-z0-9]+/g, '-')}.json`)
  writeFileSync(file, JSON.stringify({ ...f, seed: ctx.seed, form: ctx.long ? 'long' : 'short' }, null, 2))
}

/**
 * Requests expected when counted over a window: one per renewal seen at the
 * targets (plus `base`), give or take one in flight per volume at each end
 * of the window (made before it and issued inside, or made inside and not
 * yet issued).
 */
export function expectedRange(base: number, renewals: number, volumes: number): string {
  return `${Math.max(0, base + renewals - volumes)}-${base + renewals + volumes}`
}
