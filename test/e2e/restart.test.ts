// The driver is killed with SIGKILL and started again while pods run: the
// pods keep their files throughout, the kubelet registers the new process,
// renewals go on, no volume gets a certificate it did not need, and no
// CertificateRequest leaks (one per volume, none after the pods go).
import { readFileSync } from 'node:fs'
import t from 'tap'
import { SHORT, certMatchesKey, createPod, deletePod, env, eventually, examplePod, exists, hostVolume, isMountPoint, readTls, requestsFor, runId, serialOf, waitRunning } from './lib.js'
import { killDriver, startDriver } from './node.js'

t.test('SIGKILL and restart of the driver while pods run', async t => {
  const e = env()
  const steady = `restart-steady-${runId()}`
  const short = `restart-short-${runId()}`
  const late = `restart-late-${runId()}`
  t.teardown(() => Promise.all([steady, short, late].map(n => deletePod(e, n))))
  await createPod(e, examplePod(e.node, steady))
  await createPod(e, examplePod(e.node, short, { attributes: SHORT }))
  const pods = { steady: (await waitRunning(e, steady)).pod, short: (await waitRunning(e, short)).pod }
  const vols = { steady: hostVolume(e.node, pods.steady), short: hostVolume(e.node, pods.short) }
  const before = { steady: await readTls(e, steady), short: await readTls(e, short) }
  const steadyRequest = (await requestsFor(e, vols.steady.volumeId)).map(r => r.metadata.name)
  t.equal(steadyRequest.length, 1, 'one request for the steady volume before the kill')

  const oldPid = e.node.processes.driver.pid
  await killDriver(e.node)
  t.comment(`killed driver pid ${oldPid} with SIGKILL`)
  const during = { steady: await readTls(e, steady), short: await readTls(e, short) }
  t.equal(during.steady.crt, before.steady.crt, 'steady pod still reads its certificate with the driver dead')
  t.equal(during.steady.key, before.steady.key, 'and its key')
  t.ok(certMatchesKey(during.short.crt, during.short.key), 'short pod still reads a matching pair with the driver dead')

  const logFile = e.node.processes.driver.log
  const logFrom = readFileSync(logFile).length
  await startDriver(e.node) // waits for the kubelet to register it and CSINode to list it
  t.not(e.node.processes.driver.pid, oldPid, 'a new driver process')
  const restartLog = readFileSync(logFile).subarray(logFrom).toString()
  t.match(restartLog, /removed stale registration socket/, 'the dead process\'s registration socket was replaced')
  t.match(restartLog, /"msg":"registered with the kubelet"/, 'the kubelet registered the new process')

  // Renewals go on: the short certificate is replaced after the restart.
  const renewed = await eventually('the short-lived certificate renewed after the restart', 90_000, async () => {
    const now = await readTls(e, short)
    return serialOf(now.crt) !== serialOf(during.short.crt) && now
  }, 1_000)
  t.ok(certMatchesKey(renewed.crt, renewed.key), 'renewed certificate matches its key')

  // No certificate that was not needed, no leaked request.
  const after = await readTls(e, steady)
  t.equal(after.crt, before.steady.crt, 'steady pod kept its certificate: nothing re-issued on restart')
  t.same((await requestsFor(e, vols.steady.volumeId)).map(r => r.metadata.name), steadyRequest, 'steady volume: the same single request')
  await eventually('one request for the short volume', 15_000, async () => (await requestsFor(e, vols.short.volumeId)).length === 1)
  t.pass('short volume: one request')

  // The kubelet talks to the new process for new pods too.
  await createPod(e, examplePod(e.node, late))
  const { pod: latePod } = await waitRunning(e, late)
  const lateTls = await readTls(e, late)
  t.ok(certMatchesKey(lateTls.crt, lateTls.key), 'a pod created after the restart gets its files')

  // And the restarted driver tears down what the old one set up.
  const all = [vols.steady, vols.short, hostVolume(e.node, latePod)]
  await Promise.all([steady, short, late].map(n => deletePod(e, n)))
  for (const v of all) {
    t.notOk(isMountPoint(v.targetPath), `${v.volumeId.slice(0, 12)}: unmounted`)
    t.notOk(exists(v.dataDir), `${v.volumeId.slice(0, 12)}: files destroyed`)
    await eventually(`${v.volumeId.slice(0, 12)}: requests deleted`, 10_000, async () => (await requestsFor(e, v.volumeId)).length === 0)
  }
  t.pass('no CertificateRequest left for any of the three volumes')
})
