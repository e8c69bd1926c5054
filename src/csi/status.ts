// The one place where driver errors become gRPC statuses.

import { status, type StatusObject } from '@grpc/grpc-js'
import { ErrorCode, isDriverError } from '../errors.js'

const GRPC_STATUS: Record<ErrorCode, status> = {
  [ErrorCode.INVALID_ARGUMENT]: status.INVALID_ARGUMENT,
  [ErrorCode.NOT_FOUND]: status.NOT_FOUND,
  [ErrorCode.UNAVAILABLE]: status.UNAVAILABLE,
  [ErrorCode.DEADLINE_EXCEEDED]: status.DEADLINE_EXCEEDED,
  [ErrorCode.FAILED_PRECONDITION]: status.FAILED_PRECONDITION,
  [ErrorCode.ABORTED]: status.ABORTED,
  [ErrorCode.RESOURCE_EXHAUSTED]: status.RESOURCE_EXHAUSTED,
  [ErrorCode.UNIMPLEMENTED]: status.UNIMPLEMENTED,
  [ErrorCode.INTERNAL]: status.INTERNAL,
}

export function grpcStatusOf(code: ErrorCode): status {
  return GRPC_STATUS[code]
}

/**
 * Anything thrown by a handler becomes a status. Errors we did not raise on
 * purpose are INTERNAL with their message only: a stack trace or a cause chain
 * goes to our log, not to the kubelet's events.
 */
export function toStatus(err: unknown): Pick<StatusObject, 'code' | 'details'> {
  if (isDriverError(err)) return { code: GRPC_STATUS[err.code], details: err.message }
  const message = err instanceof Error ? err.message : String(err)
  return { code: status.INTERNAL, details: `internal error: ${message}` }
}

/** "INVALID_ARGUMENT" for status 3, for log lines. */
export function statusName(code: status): string {
  return status[code] ?? String(code)
}
