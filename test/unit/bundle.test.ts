// The image runs the esbuild bundle (scripts/bundle.ts) with no node_modules
// beside it: build one, lay it out as the Dockerfile does (dist/bundle/,
// proto/, package.json) in a scratch folder with no node_modules, start it
// with no Kubernetes API (it then serves Identity only), and call it.
import t from 'tap'
import { spawnSync } from 'node:child_process'
import { cpSync, existsSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { CsiTestClient, startDriver } from '../helpers/csi-client.js'

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..')

t.test('the bundle runs alone, as the image lays it out', async t => {
  const app = mkdtempSync(join(tmpdir(), 'bundle-app-'))
  t.teardown(() => rmSync(app, { recursive: true, force: true }))
  const built = spawnSync(process.execPath, ['--import', 'tsx', 'scripts/bundle.ts', join(app, 'dist/bundle')], { cwd: root, encoding: 'utf8' })
  t.equal(built.status, 0, `bundled: ${built.stderr}`)
  cpSync(join(root, 'proto'), join(app, 'proto'), { recursive: true })
  cpSync(join(root, 'package.json'), join(app, 'package.json'))
  t.notOk(existsSync(join(app, 'node_modules')), 'no node_modules anywhere above the bundle')

  const version = spawnSync(process.execPath, [join(app, 'dist/bundle/main.js'), '--version'], { cwd: app, encoding: 'utf8' })
  t.equal(version.stdout.trim(), (await import(join(root, 'package.json'), { with: { type: 'json' } })).default.version, '--version reads ../../package.json')

  const socket = join(app, 'csi.sock')
  const driver = await startDriver({
    entry: [join(app, 'dist/bundle/main.js')], cwd: app, socketPath: socket, dataRoot: join(app, 'data'),
    nodeId: 'bundle-node', extraArgs: ['--metrics-bind-address', '0'], startTimeoutMs: 30_000,
    env: { KUBERNETES_SERVICE_HOST: '' },
  })
  t.teardown(() => { driver.proc.kill('SIGKILL') })
  const client = new CsiTestClient(socket)
  const info = await client.call('GetPluginInfo', {})
  t.equal(info.name, 'csi.cert-manager.io', 'serves CSI from the bundled proto')
  client.close()
  t.equal(await driver.stop('SIGTERM'), 0, `stopped cleanly on SIGTERM: ${driver.logs().slice(-500)}`)
})
