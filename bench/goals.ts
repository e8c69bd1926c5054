// The goals of issue 14 (performance, round 2), one per table row they name:
// what the row must show, and whether this run shows it. Pure: the table
// passes each row's values in.

export interface Goal {
  /** As printed in the table's goal column. */
  text: string
  met: (ours: number, reference: number | undefined) => boolean | undefined
}

const atMost = (limit: number, unit: string): Goal => ({ text: `≤ ${limit} ${unit}`, met: ours => ours <= limit })
const ratioAtMost = (limit: number): Goal => ({
  text: `≤ ${limit}× the reference`,
  met: (ours, ref) => (ref === undefined || ref <= 0 ? undefined : ours / ref <= limit),
})

/** The goal for a row of the bench's table, by its key; undefined for rows without one. */
export function goalFor(key: string, volumes: number, burst: number): Goal | undefined {
  switch (key) {
    case 'rss-0': return atMost(60, 'MiB')
    case `rss-${volumes}`: return volumes >= 1000 ? ratioAtMost(1.2) : undefined
    case 'p2-med':
    case 'p2-p99': return ratioAtMost(0.7)
    case 'p6-after-socket': return atMost(1000, 'ms')
    case 'p6-crs':
    case 'p6-lost': return { text: '0', met: ours => ours === 0 }
    case 'p7-p99': return atMost(1, 'ms')
    case 'p8-ratio': return atMost(1.2, '×')
    case 'p4-cpu': return ratioAtMost(0.2)
    case 'p1-over-floor': return atMost(30, 'ms')
    case 'p3-med': return burst >= 100 ? ratioAtMost(0.5) : burst === 20 ? ratioAtMost(1.0) : undefined
    default: return undefined
  }
}
