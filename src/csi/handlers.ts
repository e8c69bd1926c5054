// The shape of our CSI handlers: plain async functions from request to
// response. They throw DriverErrors; server.ts turns results into gRPC
// answers, statuses and log lines in one wrapper.

import type { handleUnaryCall, UntypedServiceImplementation } from '@grpc/grpc-js'

export interface CallContext {
  /** Aborted when the caller cancels or its deadline passes, or when the server shuts down. */
  signal: AbortSignal
  /** Marks the call as routine (a republish answered as things stand): its success is logged at debug, not info. */
  routine: () => void
}

export type AsyncUnary<Req, Res> = (req: Req, ctx: CallContext) => Promise<Res>

type AsyncOf<H> = H extends handleUnaryCall<infer Req, infer Res> ? AsyncUnary<Req, Res> : never

/** The async form of a generated `...Handlers` interface, minus its string index signature. */
export type AsyncService<S extends UntypedServiceImplementation> = {
  [K in keyof S as string extends K ? never : K]: AsyncOf<S[K]>
}
