// The logger factory. Redaction lives here, in the logger itself, so that no
// caller can print a secret by accident: whatever object a line carries, the
// paths below are censored before it is serialised.

import pino, { type DestinationStream, type Logger } from 'pino'
import type { LogFormat, LogLevel } from '../cli/flags.js'

export type { Logger }

export const REDACTED = '[REDACTED]'

// Keys whose value is secret wherever they appear.
const SECRET_KEYS = [
  // PKCS#12 keystore password, as a volume attribute (volume_context / attributes).
  '["csi.cert-manager.io/pkcs12-password"]',
  // Service account tokens the kubelet passes when the CSIDriver asks for them.
  '["csi.storage.k8s.io/serviceAccount.tokens"]',
  // CSI secrets maps (NodePublishVolume, NodeStageVolume, NodeExpandVolume).
  'secrets',
  // Private key material, and the parsed keystore password (spec.pkcs12.password).
  'key',
  'privateKey',
  'keyPem',
  'password',
]

// pino's wildcards match exactly one level, so each key is listed at every
// depth a handler is likely to log it: `req.volume_context[...]` is depth 2,
// `call.req.volume_context[...]` depth 3.
const MAX_DEPTH = 4

function join(prefix: string, key: string): string {
  if (prefix === '') return key
  return key.startsWith('[') ? `${prefix}${key}` : `${prefix}.${key}`
}

export const REDACT_PATHS: readonly string[] = SECRET_KEYS.flatMap((key) =>
  Array.from({ length: MAX_DEPTH + 1 }, (_, depth) => join(Array(depth).fill('*').join('.'), key)),
)

export interface LoggerOptions {
  level: LogLevel
  format: LogFormat
  /** Where lines go; default: stderr, synchronously (no line lost on exit). */
  destination?: DestinationStream
  /** Milliseconds since the epoch; lets tests pin timestamps. */
  now?: () => number
  /** Fields on every line. */
  base?: Record<string, unknown>
}

export function createLogger(opts: LoggerOptions): Logger {
  const dest = opts.destination ?? pino.destination({ fd: 2, sync: true })
  const now = opts.now ?? Date.now
  return pino(
    {
      level: opts.level,
      base: opts.base ?? null,
      redact: { paths: [...REDACT_PATHS], censor: REDACTED },
      serializers: { err: serializeError },
      timestamp: () => `,"time":"${new Date(now()).toISOString()}"`,
      formatters: { level: (label) => ({ level: label }) },
    },
    opts.format === 'text' ? textStream(dest) : dest,
  )
}

/**
 * An error as a log field: type, message, code, stack and its cause chain,
 * so what a step was doing and what failed under it both show. Not the
 * enumerable rest: a Kubernetes client error carries the whole response
 * (headers, body) there.
 */
export function serializeError(err: unknown, depth = 0): unknown {
  if (!(err instanceof Error)) return typeof err === 'string' ? err : JSON.stringify(err)
  const code = (err as { code?: unknown }).code
  const out: Record<string, unknown> = { type: err.name, message: err.message }
  if (typeof code === 'string' || typeof code === 'number') out.code = code
  if (err.stack) out.stack = err.stack
  if (err.cause !== undefined && depth < 4) out.cause = serializeError(err.cause, depth + 1)
  return out
}

/**
 * Turns pino's JSON lines into `time LEVEL msg key=value ...`. Redaction has
 * already happened: this only reformats what pino serialised.
 */
function textStream(dest: DestinationStream): DestinationStream {
  return {
    write(line: string) {
      dest.write(formatText(line))
    },
  }
}

export function formatText(line: string): string {
  let rec: Record<string, unknown>
  try {
    rec = JSON.parse(line) as Record<string, unknown>
  } catch {
    return line
  }
  const { time, level, msg, ...rest } = rec
  const head = [plain(time), plain(level).toUpperCase().padEnd(5), plain(msg)]
  const fields = Object.entries(rest).map(([k, v]) => `${k}=${fieldValue(v)}`)
  return `${[...head, ...fields].join(' ')}\n`
}

/** A head field as it is: strings bare, numbers as digits, nothing as "". */
function plain(v: unknown): string {
  return typeof v === 'string' ? v : v === undefined || v === null ? '' : JSON.stringify(v)
}

function fieldValue(v: unknown): string {
  if (typeof v === 'string') return /^[^\s"=]+$/.test(v) ? v : JSON.stringify(v)
  return JSON.stringify(v)
}
