// HTTP status of a failed Kubernetes API call, whichever way the client threw it.
export function apiStatus(err: unknown): number | undefined {
  if (typeof err !== 'object' || err === null) return undefined
  const e = err as { code?: unknown; statusCode?: unknown; response?: { statusCode?: unknown } }
  for (const v of [e.code, e.statusCode, e.response?.statusCode]) if (typeof v === 'number') return v
  return undefined
}

export const isNotFound = (err: unknown): boolean => apiStatus(err) === 404
export const isConflict = (err: unknown): boolean => apiStatus(err) === 409

/**
 * A short message for logs and volume status, without the response body's
 * noise: it reaches the pod's events through the kubelet, so never the client
 * library's dump of the HTTP exchange (headers, "Unknown API Status Code!").
 */
export function apiMessage(err: unknown): string {
  if (typeof err === 'object' && err !== null) {
    const body = (err as { body?: unknown }).body
    if (typeof body === 'string') {
      try {
        const parsed = JSON.parse(body) as { message?: string }
        if (parsed.message) return parsed.message
      } catch { /* not JSON */ }
      const code = apiStatus(err)
      if (code !== undefined) {
        const text = body.trim().slice(0, 200)
        // A bare 404 page: the API does not serve the resource type at all.
        const hint = code === 404 && /page not found/i.test(text) ? " (the API does not serve CertificateRequests: are cert-manager's CRDs installed?)" : ''
        return `the Kubernetes API answered ${code}${text ? `: ${text}` : ''}${hint}`
      }
    } else if (typeof body === 'object' && body !== null && 'message' in body) {
      return String((body).message)
    }
  }
  return err instanceof Error ? err.message : String(err)
}
