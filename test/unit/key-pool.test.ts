import t from 'tap'
import { type KeyObject, generateKeyPairSync } from 'node:crypto'
import { KeyPool } from '../../src/pki/key-pool.js'
import { generatePrivateKey, describeKey } from '../../src/pki/keys.js'
import type { KeySpec } from '../../src/volume/types.js'

const RSA2048: KeySpec = { algorithm: 'RSA', size: 2048, encoding: 'PKCS1' }
const RSA3072: KeySpec = { algorithm: 'RSA', size: 3072, encoding: 'PKCS8' }
const P256: KeySpec = { algorithm: 'ECDSA', size: 256, encoding: 'PKCS1' }

// Distinct cheap keys stand in for generated ones; each carries its serial so
// a test can tell which call made it.
const ec = () => generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey

function fakeGenerator() {
  const calls: string[] = []
  const made = new Map<KeyObject, number>()
  let gate: Promise<void> = Promise.resolve()
  let open: () => void = () => {}
  const generate = async (spec: KeySpec): Promise<KeyObject> => {
    calls.push(`${spec.algorithm}-${spec.size}`)
    await gate
    const key = ec()
    made.set(key, calls.length)
    return key
  }
  return {
    calls, made, generate,
    hold() { gate = new Promise(r => { open = r }) },
    release() { open() },
  }
}

t.test('a first take is a miss made at the call; the refill then keeps one ready', async t => {
  const g = fakeGenerator()
  const pool = new KeyPool({ generate: g.generate })
  const first = await pool.take(RSA2048)
  await pool.settled()
  t.same(pool.stats(), { hits: 0, misses: 1, discarded: 0, size: 1 })
  const second = await pool.take(RSA2048)
  t.not(second, first, 'every key is handed out once')
  t.equal(pool.stats().hits, 1)
  await pool.settled()
  // Two takes in the window: two ready.
  t.equal(pool.stats().size, 2)
  pool.close()
})

t.test('demand sets the size, capped per spec and in total', async t => {
  let now = 0
  const g = fakeGenerator()
  const pool = new KeyPool({ generate: g.generate, maxPerSpec: 3, maxTotal: 4, now: () => now })
  const taken = new Set<KeyObject>()
  for (let i = 0; i < 10; i++) {
    taken.add(await pool.take(RSA2048))
    now += 10
  }
  await pool.settled()
  t.equal(taken.size, 10, 'no key handed out twice')
  t.equal(pool.stats().size, 3, 'maxPerSpec')
  for (let i = 0; i < 5; i++) await pool.take(RSA3072)
  await pool.settled()
  t.ok(pool.stats().size <= 4, `maxTotal holds: ${pool.stats().size}`)
  pool.close()
})

t.test('demand is counted over the window: old takes no longer ask for keys', async t => {
  let now = 0
  const g = fakeGenerator()
  const pool = new KeyPool({ generate: g.generate, demandWindowMs: 1000, now: () => now })
  for (let i = 0; i < 4; i++) await pool.take(RSA2048)
  await pool.settled()
  t.equal(pool.stats().size, 4)
  const made = g.calls.length
  now = 5000
  await pool.take(RSA2048) // a hit; only this take is in the window now
  await pool.settled()
  t.equal(pool.stats().size, 3, 'no refill while the pool holds more than recent demand')
  t.equal(g.calls.length, made, 'nothing generated for the take that found a key')
  pool.close()
})

t.test('EC and Ed25519 keys are never pooled', async t => {
  const g = fakeGenerator()
  const pool = new KeyPool({ generate: g.generate })
  await pool.take(P256)
  await pool.take({ algorithm: 'Ed25519', size: 0, encoding: 'PKCS8' })
  await pool.settled()
  t.same(pool.stats(), { hits: 0, misses: 0, discarded: 0, size: 0 })
  t.same(g.calls, ['ECDSA-256', 'Ed25519-0'])
})

t.test('refills run one at a time', async t => {
  const g = fakeGenerator()
  const pool = new KeyPool({ generate: g.generate })
  let inFlight = 0
  let most = 0
  const generate = g.generate
  const counting = new KeyPool({
    generate: async spec => {
      inFlight++
      most = Math.max(most, inFlight)
      try { return await generate(spec) } finally { inFlight-- }
    },
  })
  // Four misses at once: four caller generations, plus refills that must not overlap each other.
  await Promise.all([1, 2, 3, 4].map(() => counting.take(RSA2048)))
  await counting.settled()
  t.ok(most <= 5, `at most the four callers' keys and one refill at once (saw ${most})`)
  t.equal(counting.stats().size, 4)
  pool.close()
  counting.close()
})

t.test('a spec idle for idleMs loses its keys; an empty pool keeps no timer', async t => {
  let now = 0
  const g = fakeGenerator()
  const pool = new KeyPool({ generate: g.generate, idleMs: 1000, now: () => now })
  await pool.take(RSA2048)
  await pool.settled()
  t.equal(pool.stats().size, 1)
  now = 999
  pool.dropIdle()
  t.equal(pool.stats().size, 1, 'not yet idle')
  now = 1000
  pool.dropIdle()
  t.same(pool.stats(), { hits: 0, misses: 1, discarded: 1, size: 0 })
  // With nothing pooled, nothing keeps the process awake: the timer is gone.
  const handles = (process as unknown as { getActiveResourcesInfo(): string[] }).getActiveResourcesInfo()
  t.notOk(handles.includes('Timeout'), `no timer left: ${handles.join(', ')}`)
})

t.test('the idle timer fires on the real clock', async t => {
  const g = fakeGenerator()
  const pool = new KeyPool({ generate: g.generate, idleMs: 50 })
  await pool.take(RSA2048)
  await pool.settled()
  t.equal(pool.stats().size, 1)
  await new Promise(r => setTimeout(r, 120))
  t.equal(pool.stats().size, 0)
  t.equal(pool.stats().discarded, 1)
})

t.test('a failed refill is reported and costs only speed', async t => {
  let fail = false
  const errors: unknown[] = []
  const pool = new KeyPool({
    generate: async () => { if (fail) throw new Error('entropy ran out'); return ec() },
    onRefillError: err => errors.push(err),
  })
  fail = false
  await pool.take(RSA2048)
  fail = true
  await pool.settled() // this refill ran before fail was set, or after: either way nothing throws
  const before = pool.stats().size
  await pool.take(RSA2048).catch(() => undefined)
  await pool.settled()
  t.ok(before <= 1)
  fail = false
  t.type(await pool.take(RSA2048), 'object', 'takes still work')
  await pool.settled()
  pool.close()
  t.ok(errors.every(e => (e as Error).message === 'entropy ran out'))
})

t.test('a key finished after close is dropped, not kept', async t => {
  const g = fakeGenerator()
  const pool = new KeyPool({ generate: g.generate })
  await pool.take(RSA2048)
  g.hold()
  await pool.take(RSA2048).catch(() => undefined) // hit or miss, starts a refill that waits on the gate
  const refill = pool.settled()
  pool.close()
  g.release()
  await refill
  t.equal(pool.stats().size, 0)
  t.ok(pool.stats().discarded >= 1)
  t.equal((await pool.take(RSA2048)).type, 'private', 'a closed pool still makes keys at the call')
})

t.test('with the real generator: pooled RSA keys are fresh, of the asked size, and distinct', async t => {
  const pool = new KeyPool({ generate: generatePrivateKey })
  const a = await pool.take(RSA2048)
  await pool.settled()
  const b = await pool.take(RSA2048)
  t.same(describeKey(a), { algorithm: 'RSA', size: 2048 })
  t.same(describeKey(b), { algorithm: 'RSA', size: 2048 })
  t.not(a.export({ type: 'pkcs8', format: 'der' }).toString('hex'), b.export({ type: 'pkcs8', format: 'der' }).toString('hex'))
  t.equal(pool.stats().hits, 1)
  pool.close()
})
