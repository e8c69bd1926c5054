// Every error the driver raises on purpose, with a stable code. The code is
// what tests, logs and metrics key on; the message is for humans. Which gRPC
// status a code becomes is decided in one place only: src/csi/status.ts.

import type { AttributeIssue } from './volume/types.js'

export const ErrorCode = {
  /** The caller sent something we will never accept as is. */
  INVALID_ARGUMENT: 'INVALID_ARGUMENT',
  NOT_FOUND: 'NOT_FOUND',
  /** A dependency (reconciler, API server) is not there right now; retry. */
  UNAVAILABLE: 'UNAVAILABLE',
  /** Issuance has not finished within the publish deadline; the message says why. */
  DEADLINE_EXCEEDED: 'DEADLINE_EXCEEDED',
  /** The request is well formed but the system is not in a state to serve it. */
  FAILED_PRECONDITION: 'FAILED_PRECONDITION',
  /** Another operation for the same volume is in progress. */
  ABORTED: 'ABORTED',
  /** The node ran out of something (the data root's tmpfs is full); retry once there is room. */
  RESOURCE_EXHAUSTED: 'RESOURCE_EXHAUSTED',
  UNIMPLEMENTED: 'UNIMPLEMENTED',
  INTERNAL: 'INTERNAL',
} as const

export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode]

export class DriverError extends Error {
  readonly code: ErrorCode

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.code = code
    this.name = new.target.name
  }
}

/**
 * Bad input. When it comes from volume attributes, `issues` lists every
 * problem (not only the first) so a user fixes their pod spec in one round.
 */
const MAX_ISSUES_SHOWN = 20

export class InvalidArgumentError extends DriverError {
  readonly issues: readonly AttributeIssue[]

  constructor(message: string, issues: readonly AttributeIssue[] = []) {
    super(ErrorCode.INVALID_ARGUMENT, message)
    this.issues = issues
  }

  /** One message naming every attribute: "a: what is wrong; b: what is wrong". */
  static fromIssues(issues: readonly AttributeIssue[]): InvalidArgumentError {
    // A gRPC status travels in a header: thousands of issues (one per "${x}"
    // in a 16 KiB value) would overflow it. The first ones say what to fix.
    const shown = issues.slice(0, MAX_ISSUES_SHOWN)
    const more = issues.length - shown.length
    const message = shown.map((i) => `${i.attribute}: ${i.message}`).join('; ') + (more > 0 ? `; and ${more} more` : '')
    return new InvalidArgumentError(message, shown)
  }
}

export class NotFoundError extends DriverError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(ErrorCode.NOT_FOUND, message, options)
  }
}

export class UnavailableError extends DriverError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(ErrorCode.UNAVAILABLE, message, options)
  }
}

export class DeadlineExceededError extends DriverError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(ErrorCode.DEADLINE_EXCEEDED, message, options)
  }
}

export class FailedPreconditionError extends DriverError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(ErrorCode.FAILED_PRECONDITION, message, options)
  }
}

export class AbortedError extends DriverError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(ErrorCode.ABORTED, message, options)
  }
}

export class ResourceExhaustedError extends DriverError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(ErrorCode.RESOURCE_EXHAUSTED, message, options)
  }
}

export class UnimplementedError extends DriverError {
  constructor(message: string) {
    super(ErrorCode.UNIMPLEMENTED, message)
  }
}

export class InternalError extends DriverError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(ErrorCode.INTERNAL, message, options)
  }
}

export function isDriverError(err: unknown): err is DriverError {
  return err instanceof DriverError
}

// ---------------------------------------------------------------- command line

/** A bad command line. main prints the message on one line and exits 2. */
export class FlagError extends Error {
  readonly code = 'FLAG_ERROR'
  readonly exitCode = 2

  constructor(message: string) {
    super(message)
    this.name = 'FlagError'
  }
}

/**
 * Not a failure: --help or --version was asked for. Thrown so parseFlags stays
 * pure (it never writes or exits); main prints `output` and exits 0.
 */
export class FlagExit extends Error {
  readonly code = 'FLAG_EXIT'
  readonly exitCode = 0
  readonly output: string

  constructor(output: string) {
    super('exit requested by flags')
    this.name = 'FlagExit'
    this.output = output
  }
}
