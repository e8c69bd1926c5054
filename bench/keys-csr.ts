// Key generation and CSR building cost per key type, as a markdown table.
//   node --import tsx bench/keys-csr.ts [--iterations N]
// Timings on shared machines are noisy: compare rows of one run, not runs.

import { parseArgs } from 'node:util'
import { performance } from 'node:perf_hooks'
import { buildCsrPem } from '../src/pki/csr.js'
import { generatePrivateKey } from '../src/pki/keys.js'
import * as A from '../src/volume/attributes.js'
import { parseVolumeAttributes } from '../src/volume/spec.js'
import type { VolumeSpec } from '../src/volume/types.js'

interface Row {
  name: string
  attrs: Record<string, string>
  /** Share of --iterations: the big RSA keys take seconds each. */
  share: number
}

const ROWS: Row[] = [
  { name: 'RSA-2048', attrs: { [A.KEY_ALGORITHM]: 'RSA', [A.KEY_SIZE]: '2048' }, share: 1 },
  { name: 'RSA-3072', attrs: { [A.KEY_ALGORITHM]: 'RSA', [A.KEY_SIZE]: '3072' }, share: 0.25 },
  { name: 'RSA-4096', attrs: { [A.KEY_ALGORITHM]: 'RSA', [A.KEY_SIZE]: '4096' }, share: 0.1 },
  { name: 'P-256', attrs: { [A.KEY_ALGORITHM]: 'ECDSA', [A.KEY_SIZE]: '256' }, share: 1 },
  { name: 'P-384', attrs: { [A.KEY_ALGORITHM]: 'ECDSA', [A.KEY_SIZE]: '384' }, share: 1 },
  { name: 'P-521', attrs: { [A.KEY_ALGORITHM]: 'ECDSA', [A.KEY_SIZE]: '521' }, share: 1 },
  { name: 'Ed25519', attrs: { [A.KEY_ALGORITHM]: 'Ed25519' }, share: 1 },
]

/** A typical mTLS volume: a CN, two DNS names, a SPIFFE URI and client+server usages. */
function specFor(row: Row): VolumeSpec {
  const result = parseVolumeAttributes(
    {
      [A.ISSUER_NAME]: 'ca',
      [A.COMMON_NAME]: '${POD_NAME}',
      [A.DNS_NAMES]: '${POD_NAME}.${POD_NAMESPACE}.svc,${POD_NAME}.${POD_NAMESPACE}.svc.cluster.local',
      [A.URI_SANS]: 'spiffe://cluster.local/ns/${POD_NAMESPACE}/sa/${SERVICE_ACCOUNT_NAME}',
      [A.KEY_USAGES]: 'digital signature,key encipherment,server auth,client auth',
      ...row.attrs,
    },
    { name: 'bench-0', namespace: 'bench', uid: '00000000-0000-4000-8000-000000000000', serviceAccountName: 'bench' },
  )
  if (!result.ok) throw new Error(`bench spec is invalid: ${JSON.stringify(result.issues)}`)
  return result.spec
}

/** Nearest-rank percentile of sorted samples. */
function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!
}

async function measure(row: Row, iterations: number): Promise<{ n: number; keygen: number[]; csr: number[] }> {
  const spec = specFor(row)
  const n = Math.max(3, Math.round(iterations * row.share))
  const keygen: number[] = []
  const csr: number[] = []
  // One untimed round first: lazy loading and JIT warm-up are not the cost we want.
  await buildCsrPem(spec, await generatePrivateKey(spec.key))
  for (let i = 0; i < n; i++) {
    const t0 = performance.now()
    const key = await generatePrivateKey(spec.key)
    const t1 = performance.now()
    await buildCsrPem(spec, key)
    const t2 = performance.now()
    keygen.push(t1 - t0)
    csr.push(t2 - t1)
  }
  keygen.sort((a, b) => a - b)
  csr.sort((a, b) => a - b)
  return { n, keygen, csr }
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { iterations: { type: 'string', default: '50' } } })
  const iterations = Number(values.iterations)
  if (!Number.isInteger(iterations) || iterations < 1) throw new Error('--iterations must be a positive integer')

  const fmt = (ms: number) => (ms < 10 ? ms.toFixed(2) : ms.toFixed(0))
  const lines = [
    `Node ${process.version}, ${process.platform}/${process.arch}; --iterations ${iterations}`,
    '',
    '| key | runs | keygen median ms | keygen p90 ms | keygen p99 ms | CSR median ms |',
    '|---|---:|---:|---:|---:|---:|',
  ]
  for (const row of ROWS) {
    const { n, keygen, csr } = await measure(row, iterations)
    lines.push(`| ${row.name} | ${n} | ${fmt(percentile(keygen, 50))} | ${fmt(percentile(keygen, 90))} | ${fmt(percentile(keygen, 99))} | ${fmt(percentile(csr, 50))} |`)
    process.stderr.write(`${row.name} done\n`)
  }
  process.stdout.write(`${lines.join('\n')}\n`)
}

await main()
