import t from 'tap'
import { createServer, type Server } from 'node:net'
import { ephemeralLow, freePort } from '../cluster/ports.js'

const listen = (port: number): Promise<Server> => new Promise((resolve, reject) => {
  const srv = createServer()
  srv.once('error', reject)
  srv.listen(port, '127.0.0.1', () => resolve(srv))
})

t.test('reads the low end of the ephemeral range, with a fallback', async t => {
  t.equal(ephemeralLow(() => '40000\t60999\n'), 40000)
  t.equal(ephemeralLow(() => 'garbage'), 32768)
  t.equal(ephemeralLow(() => { throw new Error('no procfs') }), 32768)
})

t.test('hands out a port below the ephemeral range that a server can bind', async t => {
  const port = await freePort()
  t.ok(port >= 10_000 && port < ephemeralLow(), `port ${port} is below the ephemeral range`)
  const srv = await listen(port)
  srv.close()
})

t.test('skips a port that is taken and never hands out one port twice', async t => {
  const taken = await listen(0)
  const takenPort = (taken.address() as { port: number }).port
  t.teardown(() => { taken.close() })
  const first = await freePort()
  const picks = [takenPort, first, first + 1]
  const next = await freePort(() => picks.shift() ?? 0)
  t.equal(next, first + 1, 'the listening port and the port already handed out are skipped')
})

t.test('gives up with a clear error when nothing is free', async t => {
  const taken = await listen(0)
  const takenPort = (taken.address() as { port: number }).port
  t.teardown(() => { taken.close() })
  await t.rejects(freePort(() => takenPort), /no free loopback port in 10000-\d+ after 50 tries/)
})
