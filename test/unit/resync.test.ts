import t from 'tap'
import { resyncPass, type ResyncDeps } from '../../src/reconcile/resync.js'
import type { VolumeStatus } from '../../src/reconcile/status.js'

const ready = (targetPath: string): VolumeStatus => ({ ready: true, message: 'ready', failed: false, gone: false, targetPath })

function deps(statuses: Record<string, VolumeStatus>, serving: Set<string> | ((id: string) => Promise<boolean>)) {
  const enqueued: string[] = []
  const checks: string[] = []
  const d: ResyncDeps = {
    volumes: () => Object.keys(statuses),
    status: id => statuses[id],
    servesAsIs: async (id, targetPath) => {
      checks.push(`${id}@${targetPath}`)
      return typeof serving === 'function' ? serving(id) : serving.has(id)
    },
    enqueue: id => void enqueued.push(id),
  }
  return { d, enqueued, checks }
}

t.test('a ready volume that serves is left alone; one in doubt or not ready goes to a full reconcile', async t => {
  const { d, enqueued, checks } = deps({
    fine: ready('/pods/a'),
    tampered: ready('/pods/b'),
    pending: { ready: false, message: 'waiting for the issuer', failed: false, gone: false, targetPath: '/pods/c' },
    failed: { ready: false, message: 'denied', failed: true, gone: false },
  }, new Set(['fine', 'pending']))
  t.same(await resyncPass(d), { checked: 4, enqueued: 3 })
  t.same(enqueued, ['tampered', 'pending', 'failed'])
  t.same(checks, ['fine@/pods/a', 'tampered@/pods/b'], 'only ready volumes get the quick check, at their own target')
})

t.test('a check that throws counts as doubt', async t => {
  const { d, enqueued } = deps({ broken: ready('/pods/x') }, async () => { throw new Error('EIO') })
  t.same(await resyncPass(d), { checked: 1, enqueued: 1 })
  t.same(enqueued, ['broken'])
})

t.test('an aborted pass stops at the next volume', async t => {
  const c = new AbortController()
  const { d, enqueued } = deps({ a: ready('/a'), b: ready('/b'), c: ready('/c') }, async id => {
    if (id === 'a') c.abort()
    return false
  })
  t.same(await resyncPass(d, c.signal), { checked: 1, enqueued: 1 })
  t.same(enqueued, ['a'])
})
