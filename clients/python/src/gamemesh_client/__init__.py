"""gamemesh client for Python (asyncio): see clients/python/README.md.

    client = await Client.connect("127.0.0.1", 5000, user_id=42, token="dev")
    print(await client.echo(b"hi"))
"""

from ._proto import client_pb2 as pb
from .client import Client, Options, Session
from .errors import (
    ClientClosed,
    ErrorCode,
    GameMeshError,
    KickedError,
    KickReason,
    RequestTimeout,
    ServerError,
    SessionLost,
    UnexpectedReply,
)
from .framing import FrameError, encode_frame, read_frame

__all__ = [
    "Client",
    "ClientClosed",
    "ErrorCode",
    "FrameError",
    "GameMeshError",
    "KickReason",
    "KickedError",
    "Options",
    "RequestTimeout",
    "ServerError",
    "Session",
    "SessionLost",
    "UnexpectedReply",
    "encode_frame",
    "pb",
    "read_frame",
]
