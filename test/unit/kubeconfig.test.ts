// Our kubeconfig loader: the fields a node agent needs, relative file paths,
// and a clear error for everything it does not support.
import t from 'tap'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { accessFromKubeconfig, inClusterAccess, readKubeconfig, KubeconfigError } from '../../src/kube/kubeconfig.js'

const b64 = (s: string): string => Buffer.from(s).toString('base64')
const doc = (cluster: object, user: object | null = {}, extra: object = {}) => ({
  apiVersion: 'v1', kind: 'Config',
  clusters: [{ name: 'c', cluster: { server: 'https://10.0.0.1:6443', ...cluster } }],
  users: [{ name: 'u', user }],
  contexts: [{ name: 'x', context: { cluster: 'c', user: 'u' } }, { name: 'y', context: { cluster: 'c' } }],
  'current-context': 'x',
  ...extra,
})
const files: Record<string, string> = { '/base/ca.pem': 'CA', '/abs/cert.pem': 'CERT', '/base/key.pem': 'KEY' }
const read = (p: string): Buffer => {
  const v = files[p]
  if (v === undefined) throw Object.assign(new Error(`ENOENT: no such file or directory, open '${p}'`), { code: 'ENOENT' })
  return Buffer.from(v)
}

t.test('inline data and files relative to the kubeconfig', async t => {
  const a = accessFromKubeconfig(doc({ 'certificate-authority': 'ca.pem', 'tls-server-name': 'kubernetes' }, { 'client-certificate': '/abs/cert.pem', 'client-key': 'key.pem' }), '/base', read)
  t.same(a, { server: 'https://10.0.0.1:6443', ca: Buffer.from('CA'), tlsServerName: 'kubernetes', clientCert: Buffer.from('CERT'), clientKey: Buffer.from('KEY') })
  const b = accessFromKubeconfig(doc({ 'certificate-authority-data': b64('CA2'), 'insecure-skip-tls-verify': true }, { token: 'tok' }), '/base', read)
  t.same(b, { server: 'https://10.0.0.1:6443', ca: Buffer.from('CA2'), insecureSkipTlsVerify: true, token: 'tok' })
  t.same(accessFromKubeconfig(doc({}, { tokenFile: 'tok' }), '/base', read).tokenFile, '/base/tok')
  t.same(accessFromKubeconfig(doc({}, { username: 'a', password: 'b' }), '/base', read).basic, { username: 'a', password: 'b' })
  t.same(accessFromKubeconfig(doc({}), '/base', read, 'y'), { server: 'https://10.0.0.1:6443' }, 'a context without a user')
  t.same(accessFromKubeconfig(doc({}, null), '/base', read), { server: 'https://10.0.0.1:6443' }, 'a user with no fields')
})

t.test('each unsupported or broken kubeconfig names what is wrong', async t => {
  const cases: Array<[string, unknown, RegExp]> = [
    ['exec plugin', doc({}, { exec: { command: 'aws' } }), /user "u" uses an exec plugin, which this driver does not support/],
    ['auth-provider', doc({}, { 'auth-provider': { name: 'gcp' } }), /uses an auth-provider plugin/],
    ['proxy', doc({ 'proxy-url': 'http://proxy:3128' }), /cluster "c" sets proxy-url/],
    ['no context', doc({}, {}, { 'current-context': undefined }), /has no current-context/],
    ['unknown context', doc({}, {}, { 'current-context': 'z' }), /no context named "z"/],
    ['unknown cluster', { ...doc({}), clusters: [] }, /names cluster "c", which the kubeconfig does not have/],
    ['unknown user', { ...doc({}), users: [] }, /names user "u", which the kubeconfig does not have/],
    ['server not a URL', doc({ server: 'not a url' }), /server "not a url", which is not a URL/],
    ['server scheme', doc({ server: 'ftp://x' }), /must be https:\/\/ \(or http:\/\/\), not ftp:/],
    ['missing file', doc({ 'certificate-authority': 'nope.pem' }), /cannot read the certificate authority \/base\/nope.pem named in the kubeconfig: ENOENT/],
    ['cert without key', doc({}, { 'client-certificate-data': b64('C') }), /client certificate without a key/],
    ['not a kubeconfig', 'hello', /not a kubeconfig/],
    ['wrong shape', { clusters: [{ name: 'c', cluster: { server: 7 } }] }, /not a kubeconfig: clusters.0.cluster.server/],
  ]
  for (const [name, input, message] of cases) t.throws(() => accessFromKubeconfig(input, '/base', read), { name: 'KubeconfigError', message }, name)
})

t.test('readKubeconfig takes YAML and JSON, and says which file is wrong', async t => {
  const dir = mkdtempSync(join(tmpdir(), 'kubeconfig-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  writeFileSync(join(dir, 'ca.pem'), 'CA')
  writeFileSync(join(dir, 'config.yaml'), 'apiVersion: v1\nclusters:\n- name: c\n  cluster:\n    server: https://h:6443/\n    certificate-authority: ca.pem\nusers:\n- name: u\n  user:\n    token: t\ncontexts:\n- name: x\n  context: {cluster: c, user: u}\ncurrent-context: x\n')
  t.same(await readKubeconfig(join(dir, 'config.yaml')), { server: 'https://h:6443', ca: Buffer.from('CA'), token: 't' })
  writeFileSync(join(dir, 'config.json'), JSON.stringify(doc({ 'certificate-authority': 'ca.pem' }, { token: 't' })))
  t.equal((await readKubeconfig(join(dir, 'config.json'))).ca?.toString(), 'CA')
  writeFileSync(join(dir, 'bad.yaml'), 'clusters: [\n')
  await t.rejects(readKubeconfig(join(dir, 'bad.yaml')), { name: 'KubeconfigError', message: new RegExp(`^kubeconfig ${join(dir, 'bad.yaml')} is not YAML`) })
  await t.rejects(readKubeconfig(join(dir, 'none.yaml')), { name: 'KubeconfigError', message: /cannot read kubeconfig .*none.yaml: ENOENT/ })
  writeFileSync(join(dir, 'exec.yaml'), JSON.stringify(doc({}, { exec: {} })))
  await t.rejects(readKubeconfig(join(dir, 'exec.yaml')), { message: new RegExp(`^kubeconfig ${join(dir, 'exec.yaml')}: user "u" uses an exec plugin`) })
})

t.test('in cluster: the service host and port, the CA and a token file; IPv6 in brackets', async t => {
  const sa = (p: string): Buffer => (p === '/sa/ca.crt' ? Buffer.from('CA') : read(p))
  t.same(inClusterAccess({ KUBERNETES_SERVICE_HOST: '10.96.0.1', KUBERNETES_SERVICE_PORT: '443' }, '/sa', sa), { server: 'https://10.96.0.1:443', ca: Buffer.from('CA'), tokenFile: '/sa/token' })
  t.equal(inClusterAccess({ KUBERNETES_SERVICE_HOST: 'fd00::1', KUBERNETES_SERVICE_PORT: '443' }, '/sa', sa).server, 'https://[fd00::1]:443')
  t.throws(() => inClusterAccess({}, '/sa', sa), { message: /not running in a cluster.*give --kubeconfig/ })
  t.throws(() => inClusterAccess({ KUBERNETES_SERVICE_HOST: 'h', KUBERNETES_SERVICE_PORT: '1' }, '/nope', sa), KubeconfigError)
})
