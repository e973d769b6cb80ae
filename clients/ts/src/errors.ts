/** Typed errors: one class per status code the overlay answers with. */

/** Base class of every error this package throws. */
export class OverlayError extends Error {
  constructor(message: string) {
    super(message);
    this.name = new.target.name;
  }
}

/** The connection ended. */
export class ConnectionClosed extends OverlayError {}

/** The server sent something this client cannot accept. */
export class ProtocolError extends OverlayError {}

/** The server's identity is not the pinned PeerId. */
export class IdentityMismatch extends OverlayError {}

/** The server answered with an error status; `fatal` says whether the session ended. */
export class StatusError extends OverlayError {
  constructor(
    readonly code: number,
    readonly label: string = "",
    public fatal: boolean = false,
  ) {
    super(`${code} ${label}`.trim());
  }
}

/** 400: a malformed frame or message. */
export class BadRequest extends StatusError {}
/** 401: missing, invalid or expired token. */
export class Unauthorized extends StatusError {}
/** 403: the token does not allow this session or operation. */
export class Forbidden extends StatusError {}
/** 408: the handshake or the session timed out. */
export class Timeout extends StatusError {}
/** 413: the frame or message is larger than allowed. */
export class TooLarge extends StatusError {}
/** 429: a rate or credit limit was exceeded. */
export class TooManyRequests extends StatusError {}
/** 503: the node is busy, full, or shutting down. */
export class Unavailable extends StatusError {}

const BY_CODE: Record<number, new (code: number, label?: string, fatal?: boolean) => StatusError> = {
  400: BadRequest,
  401: Unauthorized,
  403: Forbidden,
  408: Timeout,
  413: TooLarge,
  429: TooManyRequests,
  503: Unavailable,
};

/** The typed error for a status code. */
export function statusError(code: number, label = "", fatal = false): StatusError {
  const cls = BY_CODE[code] ?? StatusError;
  return new cls(code, label, fatal);
}
