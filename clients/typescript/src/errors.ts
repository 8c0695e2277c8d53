/** Typed errors: what a request or the session can end with. */
import { ErrorCode, KickReason } from "./gen/client_pb.js";

export class GameMeshError extends Error {}

/** The server answered ErrorResponse{code, detail}. `codeName` is for logs. */
export class ServerError extends GameMeshError {
  /**
   * `outcomeUnknown`: an UNAVAILABLE the server may have acted on. It is that
   * sequence id's answer for good: check what happened before asking again.
   */
  constructor(
    readonly code: ErrorCode,
    readonly detail: string,
    readonly sequenceId: bigint,
    readonly outcomeUnknown = false,
  ) {
    super(`${ErrorCode[code] ?? `UNKNOWN(${code})`}: ${detail} (sequence id ${sequenceId}${outcomeUnknown ? ", outcome unknown" : ""})`);
  }
  get codeName(): string {
    return ErrorCode[this.code] ?? `UNKNOWN(${this.code})`;
  }
}

/** A kick. Final ones (DUPLICATE_LOGIN, SESSION_EXPIRED) stop the client and fail its requests. */
export class KickedError extends GameMeshError {
  constructor(readonly reason: KickReason, readonly detail: string) {
    super(`kicked: ${KickReason[reason] ?? `UNKNOWN(${reason})`}: ${detail}`);
  }
}

/** No reply within the timeout; the request may have run, and is not re-sent. */
export class RequestTimeout extends GameMeshError {}

/** The session could not be resumed: log in again with a new client. */
export class SessionLost extends GameMeshError {}

/** The owner closed the client. */
export class ClientClosed extends GameMeshError {}

/** The reply's body does not fit the request. */
export class UnexpectedReply extends GameMeshError {}
