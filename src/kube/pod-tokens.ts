// The pods' own service account tokens (--use-token-request): the kubelet
// passes one in NodePublishVolume (CSIDriver tokenRequests) and a fresh one
// at every republish (requiresRepublish); the driver creates the volume's
// CertificateRequests with it, so the apiserver, RBAC and approvers see the
// pod's service account rather than the driver's. Memory only: a token is
// never written to the data root, logged, or put in an Event. After a
// restart the next republish (a minute or so) brings one back.
import { FailedPreconditionError } from '../errors.js'

/** The volume_context key the kubelet fills from CSIDriver.spec.tokenRequests. */
export const TOKENS_KEY = 'csi.storage.k8s.io/serviceAccount.tokens'

/** A token this close to expiry is not handed out: the request might outlive it. */
const EXPIRY_MARGIN_MS = 10_000

interface PodToken { token: string; expiresAt: number }

export class PodTokens {
  readonly #tokens = new Map<string, PodToken>()

  constructor(readonly audience: string, readonly driverName: string, readonly now: () => number = Date.now) {}

  /**
   * Keeps the token the kubelet sent for our audience; a publish without one
   * is refused, naming what the CSIDriver object is missing.
   */
  remember(volumeId: string, volumeContext: Record<string, string>): void {
    this.#tokens.set(volumeId, parseTokens(volumeContext[TOKENS_KEY], this.audience, this.driverName))
  }

  /** The pod's token for this volume, unless none came yet or it is about to expire. */
  tokenFor(volumeId: string): string | undefined {
    const t = this.#tokens.get(volumeId)
    return t && t.expiresAt - EXPIRY_MARGIN_MS > this.now() ? t.token : undefined
  }

  forget(volumeId: string): void {
    this.#tokens.delete(volumeId)
  }
}

/** The kubelet's JSON: {"<audience>": {"token": "...", "expirationTimestamp": "RFC 3339"}}. Pure; messages never quote a token. */
export function parseTokens(raw: string | undefined, audience: string, driverName: string): PodToken {
  const setup = `the CSIDriver object ${driverName} needs tokenRequests: [{audience: ${JSON.stringify(audience)}}] and requiresRepublish: true when the driver runs with --use-token-request`
  if (raw === undefined || raw === '') throw new FailedPreconditionError(`the kubelet sent no service account token (${TOKENS_KEY}): ${setup}`)
  let parsed: unknown
  try {
    parsed = JSON.parse(raw)
  } catch {
    throw new FailedPreconditionError(`${TOKENS_KEY} is not JSON`)
  }
  const entry = typeof parsed === 'object' && parsed !== null && Object.hasOwn(parsed, audience) ? (parsed as Record<string, unknown>)[audience] : undefined
  if (entry === undefined) {
    const got = typeof parsed === 'object' && parsed !== null ? Object.keys(parsed).map(a => JSON.stringify(a)).join(', ') || 'none' : 'none'
    throw new FailedPreconditionError(`the kubelet sent no token for audience ${JSON.stringify(audience)} (audiences sent: ${got}): ${setup}`)
  }
  const { token, expirationTimestamp } = (entry ?? {}) as { token?: unknown; expirationTimestamp?: unknown }
  const expiresAt = typeof expirationTimestamp === 'string' ? Date.parse(expirationTimestamp) : NaN
  if (typeof token !== 'string' || token === '' || Number.isNaN(expiresAt)) {
    throw new FailedPreconditionError(`${TOKENS_KEY}: the entry for audience ${JSON.stringify(audience)} needs a token and an RFC 3339 expirationTimestamp`)
  }
  return { token, expiresAt }
}
