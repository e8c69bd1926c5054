// What a hostile pod spec costs the node's driver: adversarial attribute maps,
// 1 MiB and at the limits, through the same validation NodePublishVolume runs,
// as a markdown table. The parser must answer each in bounded, linear time.
//   node --import tsx bench/hostile-input.ts [--iterations N]
// Timings on shared machines are noisy: compare rows of one run, not runs.

import { parseArgs } from 'node:util'
import { performance } from 'node:perf_hooks'
import * as A from '../src/volume/attributes.js'
import { LIMITS } from '../src/volume/limits.js'
import { parseVolumeAttributes } from '../src/volume/spec.js'
import { validatePublishRequest } from '../src/csi/validate.js'
import { DriverError } from '../src/errors.js'

const MiB = 1 << 20
const POD = {
  'csi.storage.k8s.io/pod.name': 'app-0',
  'csi.storage.k8s.io/pod.namespace': 'team-a',
  'csi.storage.k8s.io/pod.uid': '5f1f6c2e-0000-4000-8000-000000000001',
  'csi.storage.k8s.io/serviceAccount.name': 'app',
  'csi.storage.k8s.io/ephemeral': 'true',
}
const BASE = { [A.ISSUER_NAME]: 'ca', [A.DNS_NAMES]: 'a.example.com' }
const fill = (unit: string, length: number) => unit.repeat(Math.ceil(length / unit.length)).slice(0, length)

const ROWS: Array<{ name: string; attrs: Record<string, string> }> = [
  { name: 'a valid volume (for scale)', attrs: { ...BASE, [A.COMMON_NAME]: '${POD_NAME}', [A.URI_SANS]: 'spiffe://td/ns/${POD_NAMESPACE}/sa/${SERVICE_ACCOUNT_NAME}' } },
  { name: '1 MiB of "${" in dns-names', attrs: { ...BASE, [A.DNS_NAMES]: fill('${', MiB) } },
  { name: '1 MiB key (did-you-mean bait)', attrs: { ...BASE, [`${A.ATTRIBUTE_PREFIX}${fill('d', MiB)}`]: 'x' } },
  { name: '1 MiB of commas in dns-names', attrs: { ...BASE, [A.DNS_NAMES]: fill(',', MiB) } },
  { name: '1 MiB literal-subject of "\\,"', attrs: { [A.ISSUER_NAME]: 'ca', [A.LITERAL_SUBJECT]: fill('\\,', MiB) } },
  { name: '64 attributes of 16 KiB (1 MiB in all)', attrs: { ...BASE, ...Object.fromEntries(Array.from({ length: 64 }, (_, i) => [`example.com/a${i}`, fill('x', 16 * 1024)])) } },
  { name: `"\${" at the value limit (${LIMITS.valueLength} chars)`, attrs: { ...BASE, [A.COMMON_NAME]: fill('${', LIMITS.valueLength) } },
  { name: '"${x}" at the value limit (2730 unknown variables)', attrs: { ...BASE, [A.COMMON_NAME]: fill('${x}', LIMITS.valueLength) } },
  { name: `"\\," literal-subject at the value limit`, attrs: { [A.ISSUER_NAME]: 'ca', [A.LITERAL_SUBJECT]: `CN=${fill('\\,', LIMITS.valueLength - 3)}` } },
  { name: `${LIMITS.listItems} DNS names of 63-char labels`, attrs: { [A.ISSUER_NAME]: 'ca', [A.DNS_NAMES]: Array.from({ length: LIMITS.listItems }, (_, i) => `${fill('h', 60)}${String(i).padStart(3, '0')}.example.com`).join(',') } },
  { name: `a ${LIMITS.keyLength}-char unknown key`, attrs: { ...BASE, [`${A.ATTRIBUTE_PREFIX}${fill('d', LIMITS.keyLength - A.ATTRIBUTE_PREFIX.length)}`]: 'x' } },
]

function publish(attrs: Record<string, string>) {
  return validatePublishRequest({
    volume_id: 'csi-0123456789abcdef', publish_context: {}, staging_target_path: '',
    target_path: '/var/lib/kubelet/pods/uid/volumes/kubernetes.io~csi/tls/mount',
    volume_capability: { mount: { fs_type: '', mount_flags: [], volume_mount_group: '' }, access_mode: { mode: 'SINGLE_NODE_WRITER' }, access_type: 'mount' },
    readonly: true, secrets: {}, volume_context: { ...attrs, ...POD },
  }, (a, p) => parseVolumeAttributes(a, p))
}

function answer(attrs: Record<string, string>): { outcome: string; messageChars: number } {
  try {
    publish(attrs)
    return { outcome: 'OK', messageChars: 0 }
  } catch (err) {
    if (!(err instanceof DriverError)) throw err
    const issues = (err as { issues?: Array<{ code: string }> }).issues ?? []
    const codes = [...new Set(issues.map(i => i.code))]
    return { outcome: `${err.code}${codes.length ? ` (${codes.slice(0, 2).join(', ')})` : ''}`, messageChars: err.message.length }
  }
}

/** The expansion this driver used before: /\$\{([^}]*)\}/g scans to the end from every "${" that has no "}". */
function oldRegexMs(length: number): number {
  const value = fill('${', length)
  const t0 = performance.now()
  value.replace(/\$\{([^}]*)\}/g, '')
  return performance.now() - t0
}

const { values } = parseArgs({ options: { iterations: { type: 'string', default: '20' } } })
const iterations = Number(values.iterations)
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!
const ms = (x: number) => (x < 10 ? x.toFixed(2) : x.toFixed(0))

console.log(`# Hostile volume attributes: ${iterations} runs each, Node ${process.version}\n`)
console.log('| input | characters | answer | status message chars | median ms | max ms |')
console.log('|---|---:|---|---:|---:|---:|')
for (const row of ROWS) {
  const chars = Object.entries(row.attrs).reduce((n, [k, v]) => n + k.length + v.length, 0)
  const { outcome, messageChars } = answer(row.attrs)
  const times: number[] = []
  for (let i = 0; i < iterations; i++) {
    const t0 = performance.now()
    answer(row.attrs)
    times.push(performance.now() - t0)
  }
  console.log(`| ${row.name} | ${chars} | ${outcome} | ${messageChars} | ${ms(median(times))} | ${ms(Math.max(...times))} |`)
}
console.log('\nFor comparison, the backtracking check the scanner replaced, once per size:\n')
console.log('| "${" repeated | old regex ms |')
console.log('|---:|---:|')
for (const n of [10_000, 20_000, 40_000]) console.log(`| ${n} chars | ${ms(oldRegexMs(n))} |`)
