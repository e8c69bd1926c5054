import t from 'tap'
import { VolumeStatuses, type VolumeStatus } from '../../src/reconcile/status.js'

const ready: VolumeStatus = { ready: true, message: 'ready', failed: false, gone: false, targetPath: '/t' }

t.test('a status is kept until the volume is gone, and every watcher hears each one', async t => {
  const s = new VolumeStatuses()
  const heard: string[] = []
  const stop = s.watch('v', x => heard.push(x.message))
  s.set('v', { ...ready, ready: false, message: 'issuing' })
  s.set('v', ready)
  t.same(s.get('v'), ready)
  t.same([...s.volumes()], ['v'])
  s.set('v', { ready: false, message: 'gone', failed: false, gone: true })
  t.equal(s.get('v'), undefined, 'a gone volume is forgotten')
  t.same([...s.volumes()], [])
  t.same(heard, ['issuing', 'ready', 'gone'], 'the watcher heard the gone status too')
  stop()
  s.set('v', ready)
  t.same(heard, ['issuing', 'ready', 'gone'], 'nothing after unwatching')
})
