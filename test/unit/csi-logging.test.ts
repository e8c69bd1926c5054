import t from 'tap'
import { redactRequest } from '../../src/csi/redact.js'
import { createLogger, formatText, REDACTED } from '../../src/log/logger.js'

const PKCS12_PASSWORD = 'pkcs12-pass-XYZZY'
const TOKEN = 'sa-token-XYZZY'
const SECRET = 'publish-secret-XYZZY'
const KEY_PEM = '-----BEGIN PRIVATE KEY-----XYZZY'

function capture() {
  let out = ''
  return { destination: { write: (s: string) => void (out += s) }, text: () => out }
}

// A NodePublishVolume request as grpc-js hands it to the handler.
const publishRequest = {
  volume_id: 'csi-0123',
  target_path: '/var/lib/kubelet/pods/u/volumes/kubernetes.io~csi/tls/mount',
  readonly: true,
  volume_capability: { mount: { fs_type: '', mount_flags: [] }, access_mode: { mode: 'SINGLE_NODE_WRITER' }, access_type: 'mount' },
  secrets: { token: SECRET },
  publish_context: {},
  volume_context: {
    'csi.cert-manager.io/issuer-name': 'ca-issuer',
    'csi.cert-manager.io/pkcs12-enable': 'true',
    'csi.cert-manager.io/pkcs12-password': PKCS12_PASSWORD,
    'csi.storage.k8s.io/serviceAccount.tokens': JSON.stringify({ '': { token: TOKEN } }),
    'csi.storage.k8s.io/pod.name': 'app-0',
  },
}

t.test('a logged NodePublishVolume request never shows a secret, in either format', async (t) => {
  for (const format of ['json', 'text'] as const) {
    const c = capture()
    const log = createLogger({ level: 'trace', format, destination: c.destination })
    // As the server logs it (sanitised) and as a careless caller might (raw), at several depths.
    log.debug({ method: 'NodePublishVolume', req: redactRequest(publishRequest) }, 'call started')
    log.debug({ req: publishRequest }, 'raw request')
    log.info({ call: { req: publishRequest } }, 'raw request, nested')
    log.info({ volumeContext: publishRequest.volume_context, attributes: publishRequest.volume_context }, 'maps')
    log.info({ ...publishRequest }, 'request spread at the top level')
    const out = c.text()
    t.match(out, /ca-issuer/, `${format}: non-secret attributes still logged`)
    t.match(out, /csi-0123/, `${format}: volume id still logged`)
    for (const secret of [PKCS12_PASSWORD, TOKEN, SECRET]) t.notMatch(out, secret, `${format}: ${secret} redacted`)
  }
})

t.test('private keys and parsed passwords are redacted wherever they sit', async (t) => {
  const c = capture()
  const log = createLogger({ level: 'info', format: 'json', destination: c.destination })
  log.info({ key: KEY_PEM }, 'top')
  log.info({ keypair: { privateKey: KEY_PEM, keyPem: KEY_PEM } }, 'nested')
  log.info({ volume: { spec: { pkcs12: { filename: 'keystore.p12', password: PKCS12_PASSWORD } } } }, 'spec')
  log.info({ a: { b: { c: { key: KEY_PEM } } } }, 'deep')
  const out = c.text()
  t.notMatch(out, KEY_PEM)
  t.notMatch(out, PKCS12_PASSWORD)
  t.match(out, /keystore\.p12/)
})

t.test('redactRequest keeps the shape, censors values and never mutates', async (t) => {
  const r = redactRequest(publishRequest) as typeof publishRequest
  t.same(r.secrets, { token: REDACTED })
  t.equal(r.volume_context['csi.cert-manager.io/pkcs12-password'], REDACTED)
  t.equal(r.volume_context['csi.storage.k8s.io/serviceAccount.tokens'], REDACTED)
  t.equal(r.volume_context['csi.cert-manager.io/issuer-name'], 'ca-issuer')
  t.equal(publishRequest.volume_context['csi.cert-manager.io/pkcs12-password'], PKCS12_PASSWORD, 'original untouched')
  // Keys nobody listed yet are caught by name.
  const other = redactRequest({ volume_context: { 'example.com/db-password': 'p', 'example.com/api-token': 't', 'example.com/team': 'a' } }) as {
    volume_context: Record<string, string>
  }
  t.same(other.volume_context, { 'example.com/db-password': REDACTED, 'example.com/api-token': REDACTED, 'example.com/team': 'a' })
  t.equal(redactRequest(null), null)
})

t.test('levels and formats', async (t) => {
  const c = capture()
  const log = createLogger({ level: 'warn', format: 'json', destination: c.destination, now: () => Date.UTC(2025, 0, 2, 3, 4, 5) })
  log.info('hidden')
  log.warn({ volume_id: 'v1' }, 'shown')
  const lines = c.text().trim().split('\n')
  t.equal(lines.length, 1)
  t.same(JSON.parse(lines[0] ?? ''), { level: 'warn', time: '2025-01-02T03:04:05.000Z', volume_id: 'v1', msg: 'shown' })

  t.equal(
    formatText('{"level":"info","time":"2025-01-02T03:04:05.000Z","method":"Probe","n":2,"o":{"a":1},"s":"two words","msg":"call finished"}'),
    '2025-01-02T03:04:05.000Z INFO  call finished method=Probe n=2 o={"a":1} s="two words"\n',
  )
  t.equal(formatText('not json\n'), 'not json\n')
})
