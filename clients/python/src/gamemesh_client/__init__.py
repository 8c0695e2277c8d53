"""gamemesh client for Python (asyncio): see clients/python/README.md.

    client = await Client.connect("127.0.0.1", 5000, user_id=42, token="dev")
    print(await client.echo(b"hi"))
"""

from ._proto import client_pb2 as pb
from .client import Client, Options, Session
from . import errors
from .errors import *  # noqa: F401,F403 (the names are errors.__all__)
from .framing import FrameError, encode_frame, read_frame

__all__ = [
    "Client",
    "FrameError",
    "Options",
    "Session",
    "encode_frame",
    "pb",
    "read_frame",
    *errors.__all__,
]
