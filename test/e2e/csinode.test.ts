// The kubelet knows the driver: it registered through the plugin watcher
// (the driver's own registration socket) and the node's CSINode lists it.
import t from 'tap'
import { env } from './lib.js'
import { DRIVER_NAME } from './node.js'

t.test('kubectl get csinodes lists the driver on the node', async t => {
  const e = env()
  const table = await e.kubectl(['get', 'csinodes'])
  t.comment(table.trim())
  const row = table.split('\n').find(l => l.split(/\s+/)[0] === e.node.nodeName)
  t.ok(row, `a CSINode row for ${e.node.nodeName}`)
  t.equal(row?.split(/\s+/)[1], '1', 'one driver on it')

  const csinode = JSON.parse(await e.kubectl(['get', 'csinode', e.node.nodeName, '-o', 'json'])) as { spec: { drivers: Array<{ name: string; nodeID: string }> } }
  const driver = csinode.spec.drivers.find(d => d.name === DRIVER_NAME)
  t.ok(driver, `${DRIVER_NAME} in spec.drivers`)
  t.equal(driver?.nodeID, e.node.nodeName, 'nodeID is what NodeGetInfo answers (--node-id)')
})

t.test('kubectl get csidrivers lists it as the CSIDriver object says', async t => {
  const e = env()
  const d = JSON.parse(await e.kubectl(['get', 'csidriver', DRIVER_NAME, '-o', 'json'])) as { spec: { attachRequired: boolean; podInfoOnMount: boolean; volumeLifecycleModes: string[] } }
  t.same(d.spec.volumeLifecycleModes, ['Ephemeral'])
  t.equal(d.spec.podInfoOnMount, true)
  t.equal(d.spec.attachRequired, false)
})
