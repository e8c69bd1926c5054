// Sanitises a CSI request before it is logged. The logger redacts known paths
// as well (src/log/logger.ts); this edge pass also catches secrets under keys
// nobody listed yet: any `secrets` map, and any volume_context value whose key
// names a password, token or key.

import { REDACTED } from '../log/logger.js'

const SENSITIVE_CONTEXT_KEY = /(password|passphrase|token|secret|private-?key)s?$/i

export function redactRequest(req: unknown): unknown {
  if (req === null || typeof req !== 'object') return req
  const out: Record<string, unknown> = {}
  for (const [k, v] of Object.entries(req as Record<string, unknown>)) {
    if (k === 'secrets') out[k] = redactMap(v, () => true)
    else if (k === 'volume_context' || k === 'publish_context') out[k] = redactMap(v, (key) => SENSITIVE_CONTEXT_KEY.test(key))
    else out[k] = v
  }
  return out
}

// Keeps the keys, censors the values.
function redactMap(v: unknown, sensitive: (key: string) => boolean): unknown {
  if (v === null || typeof v !== 'object') return v
  return Object.fromEntries(Object.entries(v as Record<string, unknown>).map(([k, x]) => [k, sensitive(k) ? REDACTED : x]))
}
