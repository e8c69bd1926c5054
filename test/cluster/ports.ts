// Loopback ports for the test servers (etcd, kube-apiserver, kubelet).
//
// A port from listen(0) comes out of the kernel's ephemeral range, and so does
// the source port of every outgoing connection. Between closing the probe and
// the server binding it, a client connection anywhere on the machine can take
// that port, and the server fails with "address already in use" (it did once
// in CI). Ports below the ephemeral range are never handed out to clients, so
// a free one there stays free unless another server asks for it by number.

import { readFileSync } from 'node:fs'
import { createServer } from 'node:net'

const FLOOR = 10_000
const FALLBACK_EPHEMERAL_LOW = 32_768
const ATTEMPTS = 50

/** The first port of the kernel's ephemeral range, from procfs where there is one. */
export function ephemeralLow(read: () => string = () => readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8')): number {
  try {
    const low = Number(read().trim().split(/\s+/)[0])
    return Number.isInteger(low) && low > FLOOR + 1000 ? low : FALLBACK_EPHEMERAL_LOW
  } catch {
    return FALLBACK_EPHEMERAL_LOW
  }
}

function canListen(port: number): Promise<boolean> {
  return new Promise(resolvePort => {
    const srv = createServer()
    srv.unref()
    srv.once('error', () => resolvePort(false))
    srv.listen({ port, host: '127.0.0.1', exclusive: true }, () => srv.close(() => resolvePort(true)))
  })
}

// Ports this process has handed out, so two calls never return the same one
// before its server has bound it.
const handedOut = new Set<number>()

/** A loopback port below the ephemeral range that nothing listens on now. */
export async function freePort(pick: (low: number, high: number) => number = (low, high) => low + Math.floor(Math.random() * (high - low))): Promise<number> {
  const high = ephemeralLow()
  for (let i = 0; i < ATTEMPTS; i++) {
    const port = pick(FLOOR, high)
    if (handedOut.has(port)) continue
    if (await canListen(port)) {
      handedOut.add(port)
      return port
    }
  }
  throw new Error(`no free loopback port in ${FLOOR}-${high - 1} after ${ATTEMPTS} tries`)
}
