"""Typed errors: what a request or the session can end with.

Codes and reasons are the protobuf enum values (ErrorCode, KickReason);
`code_name` / `reason_name` give their names for logs. An unknown value is
kept as a number, as PROTOCOL.md asks."""

from ._proto import client_pb2 as pb

ErrorCode = pb.ErrorCode
KickReason = pb.KickReason


def _enum_name(enum, value: int) -> str:
    try:
        return enum.Name(value)
    except ValueError:
        return f"UNKNOWN({value})"


class GameMeshError(Exception):
    """Base of every error this library raises."""


class ServerError(GameMeshError):
    """The server answered the request with ErrorResponse{code, detail}."""

    def __init__(self, code: int, detail: str, sequence_id: int, outcome_unknown: bool = False):
        self.code = code
        self.detail = detail
        self.sequence_id = sequence_id
        # True on an UNAVAILABLE the server may have acted on: it is that
        # sequence id's answer for good, so check what happened before
        # asking again (with a new id).
        self.outcome_unknown = outcome_unknown
        unknown = ", outcome unknown" if outcome_unknown else ""
        super().__init__(f"{self.code_name}: {detail} (sequence id {sequence_id}{unknown})")

    @property
    def code_name(self) -> str:
        return _enum_name(ErrorCode, self.code)


class KickedError(GameMeshError):
    """The server kicked this client for good (another login took the
    session, or the session ended): pending and later requests fail with it."""

    def __init__(self, reason: int, detail: str):
        self.reason = reason
        self.detail = detail
        super().__init__(f"kicked: {self.reason_name}: {detail}")

    @property
    def reason_name(self) -> str:
        return _enum_name(KickReason, self.reason)


class RequestTimeout(GameMeshError, TimeoutError):
    """No reply within the request's timeout. The request may still have run
    on the server; it is not re-sent after this."""


class SessionLost(GameMeshError):
    """The connection dropped and the session could not be resumed
    (SESSION_NOT_FOUND, a refused resume token, or no gateway reachable in
    time): log in again with a new Client."""


class ClientClosed(GameMeshError):
    """The client was closed by its owner."""


class UnexpectedReply(GameMeshError):
    """The server answered with a body that does not fit the request."""

__all__ = [
    "ClientClosed",
    "ErrorCode",
    "GameMeshError",
    "KickReason",
    "KickedError",
    "RequestTimeout",
    "ServerError",
    "SessionLost",
    "UnexpectedReply",
]
