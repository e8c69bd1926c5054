// A GET over TLS with the client certificate of a kubeconfig: for the
// apiserver's /metrics and /readyz, which the typed clients do not cover.
import { request } from 'node:https'
import type { KubeConfig } from '@kubernetes/client-node'

export interface Tls { ca: Buffer; cert: Buffer; key: Buffer }

export function tlsFrom(kc: KubeConfig): Tls {
  const user = kc.getCurrentUser()
  const cluster = kc.getCurrentCluster()
  if (!user?.certData || !user.keyData || !cluster?.caData) throw new Error('the kubeconfig has no client certificate data')
  const d = (s: string): Buffer => Buffer.from(s, 'base64')
  return { ca: d(cluster.caData), cert: d(user.certData), key: d(user.keyData) }
}

export function httpsGet(url: string, tls: Tls, timeoutMs: number): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { ...tls, timeout: timeoutMs, agent: false }, res => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (c: string) => (body += c))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }))
    })
    req.on('timeout', () => req.destroy(new Error(`GET ${url}: timeout after ${timeoutMs}ms`)))
    req.on('error', reject)
    req.end()
  })
}
