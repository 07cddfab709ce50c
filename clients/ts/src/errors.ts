// Typed errors: each carries the gRPC status code and the server's message.
import { Metadata, status, type ServiceError } from "@grpc/grpc-js";

export class GatewayError extends Error {
  /** the gRPC status code, e.g. status.INVALID_ARGUMENT (3) */
  readonly code: status;
  /** its name, e.g. "INVALID_ARGUMENT" */
  readonly codeName: string;
  /** the server's message; for bad input it names the field */
  readonly details: string;
  /** the call's trailing metadata (string values) */
  readonly metadata: Readonly<Record<string, string>>;

  constructor(code: status, details: string, metadata: Record<string, string> = {}) {
    const codeName = status[code] ?? `CODE_${code}`;
    super(`${codeName}: ${details}`);
    this.name = new.target.name;
    this.code = code;
    this.codeName = codeName;
    this.details = details;
    this.metadata = Object.freeze({ ...metadata });
  }
}

/** The request is malformed; the message names the field. */
export class InvalidArgumentError extends GatewayError {}
/** No API key, a wrong one, or a revoked one. */
export class UnauthenticatedError extends GatewayError {}
/** The key may not use this task or tier. */
export class PermissionDeniedError extends GatewayError {}
/** Out of budget or capacity, or over the key's quota; the message says until when. */
export class ResourceExhaustedError extends GatewayError {}
/** The call's deadline passed before an answer. */
export class DeadlineExceededError extends GatewayError {}
/** The gateway could not be reached or is draining: the only code that is retried. */
export class UnavailableError extends GatewayError {}
export class CancelledError extends GatewayError {}
export class InternalError extends GatewayError {}
/** A stream ended without its final chunk. */
export class IncompleteStreamError extends GatewayError {
  constructor() {
    super(status.DATA_LOSS, "the stream ended without its final chunk");
  }
}

const BY_CODE: Partial<Record<status, new (code: status, details: string, metadata: Record<string, string>) => GatewayError>> = {
  [status.INVALID_ARGUMENT]: InvalidArgumentError,
  [status.UNAUTHENTICATED]: UnauthenticatedError,
  [status.PERMISSION_DENIED]: PermissionDeniedError,
  [status.RESOURCE_EXHAUSTED]: ResourceExhaustedError,
  [status.DEADLINE_EXCEEDED]: DeadlineExceededError,
  [status.UNAVAILABLE]: UnavailableError,
  [status.CANCELLED]: CancelledError,
  [status.INTERNAL]: InternalError,
};

export function fromServiceError(error: unknown): GatewayError {
  if (error instanceof GatewayError) return error;
  const e = error as Partial<ServiceError>;
  if (typeof e.code !== "number") throw error; // not a gRPC failure: a fault of the caller or the client
  const metadata: Record<string, string> = {};
  if (e.metadata instanceof Metadata) {
    for (const [key, value] of Object.entries(e.metadata.getMap())) {
      if (typeof value === "string") metadata[key] = value;
    }
  }
  const Type = BY_CODE[e.code as status] ?? GatewayError;
  return new Type(e.code as status, e.details || (status[e.code] ?? "").toLowerCase(), metadata);
}
