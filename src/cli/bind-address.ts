// --metrics-bind-address: where the metrics and health server listens.
import { isIP } from 'node:net'
import { FlagError } from '../errors.js'

export interface BindAddress {
  /** '' means every interface. IPv6 hosts come without brackets. */
  host: string
  port: number
}

// A hostname as RFC 1123 allows it (e.g. "localhost"); listen() resolves it.
const HOSTNAME = /^(?=.{1,253}$)[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)*$/

/**
 * ":9402" (every interface), "127.0.0.1:9402", "localhost:9402",
 * "[::1]:9402"; ":0" asks for an ephemeral port; "0" alone disables the
 * server (null). Throws a FlagError saying what is wrong.
 */
export function parseBindAddress(value: string): BindAddress | null {
  const s = value.trim()
  if (s === '0') return null
  const bad = (why: string): FlagError => new FlagError(`--metrics-bind-address: bind address "${value}": ${why}`)
  if (s === '') throw bad('empty; use host:port, :port, or 0 to disable')
  const colon = s.lastIndexOf(':')
  if (colon < 0) throw bad('missing port; use host:port, :port, or 0 to disable')
  const rawHost = s.slice(0, colon)
  const rawPort = s.slice(colon + 1)
  if (!/^\d{1,5}$/.test(rawPort) || Number(rawPort) > 65535) throw bad(`port "${rawPort}" must be a number from 0 to 65535`)
  const port = Number(rawPort)

  let host = rawHost
  if (rawHost.startsWith('[')) {
    if (!rawHost.endsWith(']')) throw bad('unclosed "[" around the IPv6 address')
    host = rawHost.slice(1, -1)
    if (isIP(host) !== 6) throw bad(`"${host}" is not an IPv6 address`)
  } else if (rawHost.includes(':')) {
    throw bad('an IPv6 address must be in brackets, e.g. [::1]:9402')
  } else if (rawHost !== '' && isIP(rawHost) !== 4 && !HOSTNAME.test(rawHost)) {
    throw bad(`"${rawHost}" is not an IPv4 address or a host name`)
  }
  return { host, port }
}

