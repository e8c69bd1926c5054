import t from 'tap'
import { FailedPreconditionError } from '../../src/errors.js'
import { PodTokens, TOKENS_KEY, parseTokens } from '../../src/kube/pod-tokens.js'

const kubelet = (entries: Record<string, { token: string; expirationTimestamp: string }>) => ({ [TOKENS_KEY]: JSON.stringify(entries) })
const SECRET = 'eyJhbGciOi.secret-token.sig'

t.test('the token for our audience is kept until shortly before it expires', async t => {
  let now = Date.parse('2026-12-03T10:00:00Z')
  const tokens = new PodTokens('', 'csi.cert-manager.io', () => now)
  tokens.remember('v1', kubelet({ '': { token: SECRET, expirationTimestamp: '2026-12-03T11:00:00Z' }, other: { token: 'x', expirationTimestamp: '2026-12-03T11:00:00Z' } }))
  t.equal(tokens.tokenFor('v1'), SECRET)
  t.equal(tokens.tokenFor('v2'), undefined, 'another volume has none')
  now = Date.parse('2026-12-03T10:59:55Z')
  t.equal(tokens.tokenFor('v1'), undefined, 'within 10 s of expiry it is not handed out')
  tokens.remember('v1', kubelet({ '': { token: 'fresh', expirationTimestamp: '2026-12-03T12:00:00Z' } }))
  t.equal(tokens.tokenFor('v1'), 'fresh', 'a republish brings a fresh one')
  tokens.forget('v1')
  t.equal(tokens.tokenFor('v1'), undefined, 'forgotten at unpublish')
})

t.test('a publish without a usable token is refused, naming the CSIDriver setup and never a token', async t => {
  const cases: Array<[string, string | undefined, RegExp]> = [
    ['no key', undefined, /sent no service account token \(csi\.storage\.k8s\.io\/serviceAccount\.tokens\): the CSIDriver object csi\.cert-manager\.io needs tokenRequests: \[\{audience: "cert-manager"\}\] and requiresRepublish: true/],
    ['not JSON', `{"cert-manager": ${SECRET}`, /is not JSON$/],
    ['another audience only', JSON.stringify({ '': { token: SECRET, expirationTimestamp: '2026-12-03T11:00:00Z' } }), /no token for audience "cert-manager" \(audiences sent: ""\)/],
    ['no expiry', JSON.stringify({ 'cert-manager': { token: SECRET } }), /needs a token and an RFC 3339 expirationTimestamp/],
    ['empty token', JSON.stringify({ 'cert-manager': { token: '', expirationTimestamp: '2026-12-03T11:00:00Z' } }), /needs a token/],
  ]
  for (const [name, raw, msg] of cases) {
    const err = (() => { try { parseTokens(raw, 'cert-manager', 'csi.cert-manager.io') } catch (e) { return e } })() as Error
    t.ok(err instanceof FailedPreconditionError, `${name}: FAILED_PRECONDITION`)
    t.match(err?.message, msg, name)
    t.notMatch(err?.message, /secret-token/, `${name}: the token is not quoted`)
  }
})
