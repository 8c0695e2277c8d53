"""Length-prefixed frames (docs/PROTOCOL.md section 1): a big-endian u32
body length, then the body. Kept apart from the client so that a transport
with its own message boundaries (WebSocket) needs none of it."""

import asyncio
import struct

HEADER = struct.Struct(">I")
# The gateway's default --max-frame-bytes; a server frame above it is a
# broken stream, and we refuse it before reserving memory for it.
DEFAULT_MAX_FRAME = 65_536


class FrameError(Exception):
    """The peer sent a length the protocol forbids (0 or above the limit)."""


def encode_frame(body: bytes) -> bytes:
    """Prefixes `body` with its length."""
    return HEADER.pack(len(body)) + body


async def read_frame(reader: asyncio.StreamReader, max_frame: int = DEFAULT_MAX_FRAME) -> bytes:
    """Reads one frame's body; raises IncompleteReadError at end of stream."""
    (length,) = HEADER.unpack(await reader.readexactly(HEADER.size))
    if length == 0 or length > max_frame:
        raise FrameError(f"frame length {length} outside 1..={max_frame}")
    return await reader.readexactly(length)
