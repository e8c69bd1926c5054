// Prints the fault tier's table from the figures every case wrote:
//   node --import tsx test/faults/table.ts <figures dir>
import { existsSync, readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import type { CaseFigures } from './lib/figures.js'
import type { Counts, WindowRate } from './lib/api-metrics.js'

const dir = process.argv[2]
if (!dir || !existsSync(dir)) {
  console.log(`no figures (nothing in ${dir ?? '(no folder given)'})`)
  process.exit(0)
}
const rows = readdirSync(dir).filter(f => f.endsWith('.json')).sort()
  .map(f => JSON.parse(readFileSync(join(dir, f), 'utf8')) as CaseFigures)

const verbs: (keyof Counts)[] = ['LIST', 'WATCH', 'GET', 'CREATE', 'DELETE']
const short: Record<string, string> = { LIST: 'L', WATCH: 'W', GET: 'G', CREATE: 'C', DELETE: 'D' }
const rate = (w: WindowRate | undefined): string => w ? verbs.filter(v => v !== 'GET' || w.perMinute.GET > 0).map(v => `${short[v]}${w.perMinute[v]}`).join(' ') : '-'
const phase = (f: CaseFigures, name: string): WindowRate | undefined => f.api.find(w => w.phase === name)

function print(header: string[], body: string[][]): void {
  const widths = header.map((h, i) => Math.max(h.length, ...body.map(r => (r[i] ?? '').length)))
  const line = (cells: string[]): string => `| ${cells.map((c, i) => c.padEnd(widths[i]!)).join(' | ')} |`
  console.log(line(header))
  console.log(`|${widths.map(w => '-'.repeat(w + 2)).join('|')}|`)
  for (const r of body) console.log(line(r))
}

console.log('\nFault tier figures (API: CertificateRequest calls per minute from apiserver_request_total; L LIST, W WATCH (counted when it ends), G GET, C CREATE, D DELETE)\n')
print(
  ['case', 'faults', 'volumes checked', 'requests made / expected', 'max live per volume', 'expired served', 'bad OKs', 'driver crashes', 'API/min idle', 'API/min during', 'API/min after', 'seconds'],
  rows.map(f => [f.row, String(f.faults), String(f.volumes), `${f.requestsCreated} / ${f.requestsExpected}`, String(f.maxLivePerVolume), String(f.expiredServed), String(f.badOks), String(f.driverCrashes),
    rate(phase(f, 'idle')), rate(phase(f, 'during')), rate(phase(f, 'after')), String(f.seconds)]),
)
const totals = rows.reduce((a, f) => ({ faults: a.faults + f.faults, volumes: a.volumes + f.volumes, expired: a.expired + f.expiredServed }), { faults: 0, volumes: 0, expired: 0 })
console.log(`\ntotal: ${totals.faults} faults injected, ${totals.volumes} volumes checked, ${totals.expired} expired certificates served; form ${rows[0]?.form ?? '?'}, seed ${rows[0]?.seed ?? '?'}`)

const windows = rows.flatMap(f => f.api.map(w => [f.row, w.phase, String(w.seconds), ...verbs.map(v => String(w.total[v])), String(w.openWatches), rate(w)]))
if (windows.length > 0) {
  console.log('\nEvery measured window (totals, then per minute)\n')
  print(['case', 'phase', 's', ...verbs, 'open watches', 'per minute'], windows)
}
const notes = rows.filter(f => f.notes.length > 0)
if (notes.length > 0) {
  console.log('\nNotes')
  for (const f of notes) for (const n of f.notes) console.log(`- ${f.row}: ${n}`)
}
