// CertificateRequest API calls: create (adopting our own on a retry, never
// someone else's), delete (only the object we mean, by uid), list a volume's
// requests. Each call has a deadline (--kube-api-timeout).
import type { ApiClient, ApiRequest } from './api-client.js'
import {
  CR_GROUP, CR_VERSION, CR_PLURAL, LABEL_VOLUME, ANNOTATION_VOLUME_ID,
  parseCertificateRequest, volumeLabelValue, type CertificateRequest,
} from './certificate-request.js'
import { apiStatus, isConflict, isNotFound } from './errors.js'

const requestsIn = (namespace: string): string =>
  `/apis/${CR_GROUP}/${CR_VERSION}/namespaces/${encodeURIComponent(namespace)}/${CR_PLURAL}`
const requestPath = (namespace: string, name: string): string => `${requestsIn(namespace)}/${encodeURIComponent(name)}`

/** Says why an existing request is not ours, or undefined when it is. */
export type OwnershipCheck = (existing: CertificateRequest) => string | undefined

/** The request's name is taken by an object the driver did not create. */
export class RequestNameTakenError extends Error {
  constructor(readonly namespace: string, readonly requestName: string, readonly why: string) {
    super(`CertificateRequest ${namespace}/${requestName} already exists and is not this volume's: ${why}`)
    this.name = 'RequestNameTakenError'
  }
}

export interface RequestClient {
  /** Creates, or adopts the existing object of that name when `isOurs` finds nothing wrong with it; throws RequestNameTakenError otherwise. */
  create(namespace: string, body: object, isOurs: OwnershipCheck, as?: { bearerToken: string }): Promise<CertificateRequest>
  get(namespace: string, name: string): Promise<CertificateRequest | undefined>
  /** Deletes; with a uid only that object (another of the same name is left alone). A 404 or a uid mismatch is success. */
  delete(namespace: string, name: string, uid?: string): Promise<void>
  listForVolume(namespace: string, volumeId: string): Promise<CertificateRequest[]>
}

export interface RequestClientOptions {
  /** The apiserver answered a call (success or an HTTP error): it is reachable. */
  onAnswered?: () => void
}

export class KubeRequestClient implements RequestClient {
  readonly #api: ApiClient
  readonly #onAnswered: () => void

  constructor(api: ApiClient, opts: RequestClientOptions = {}) {
    this.#api = api
    this.#onAnswered = opts.onAnswered ?? (() => {})
  }

  /** One call with its deadline, telling onAnswered when the server answered at all. */
  async #call(what: string, req: ApiRequest): Promise<unknown> {
    try {
      const result = await this.#api.request<unknown>(what, req)
      this.#onAnswered()
      return result
    } catch (err) {
      if (apiStatus(err) !== undefined) this.#onAnswered()
      throw err
    }
  }

  /** `as`: created with the pod's own token (--use-token-request); an adoption's GET is the driver's. */
  async create(namespace: string, body: object, isOurs: OwnershipCheck, as?: { bearerToken: string }): Promise<CertificateRequest> {
    try {
      return parseCertificateRequest(await this.#call('CertificateRequest create', { method: 'POST', path: requestsIn(namespace), body, ...as }))
    } catch (err) {
      if (!isConflict(err)) throw err
      // Our deterministic name already exists: a retry of a create whose
      // answer was lost, or one made before a restart. Adopt it if it is ours.
      const name = (body as { metadata: { name: string } }).metadata.name
      const existing = await this.get(namespace, name)
      if (!existing) throw err
      const why = isOurs(existing)
      if (why !== undefined) throw new RequestNameTakenError(namespace, name, why)
      return existing
    }
  }

  async get(namespace: string, name: string): Promise<CertificateRequest | undefined> {
    try {
      return parseCertificateRequest(await this.#call('CertificateRequest get', { method: 'GET', path: requestPath(namespace, name) }))
    } catch (err) {
      if (isNotFound(err)) return undefined
      throw err
    }
  }

  async delete(namespace: string, name: string, uid?: string): Promise<void> {
    const body = uid === undefined ? undefined : { apiVersion: 'v1', kind: 'DeleteOptions', preconditions: { uid } }
    try {
      await this.#call('CertificateRequest delete', { method: 'DELETE', path: requestPath(namespace, name), body })
    } catch (err) {
      // 409 with a uid precondition: the name now holds another object, which is not ours to delete.
      if (!isNotFound(err) && !(uid !== undefined && isConflict(err))) throw err
    }
  }

  async listForVolume(namespace: string, volumeId: string): Promise<CertificateRequest[]> {
    const list = (await this.#call('CertificateRequest list', {
      method: 'GET', path: requestsIn(namespace), query: { labelSelector: `${LABEL_VOLUME}=${volumeLabelValue(volumeId)}` },
    })) as { items?: unknown[] }
    return (list.items ?? []).map(item => parseCertificateRequest(item))
      .filter(cr => cr.metadata.annotations?.[ANNOTATION_VOLUME_ID] === volumeId)
  }
}
