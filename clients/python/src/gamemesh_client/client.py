"""The asyncio client: one session over a connection that it keeps alive.

`Client.connect` opens a TCP connection to a gateway and logs in. From then
on a supervisor task owns the connection: it reads every frame, answers
futures by sequence id, hands pushes to callbacks and iterators, sends
heartbeats when idle, and after a dropped connection reconnects, resumes the
session and re-sends every request that had no reply, with its original
sequence id (the server's exactly-once rules make that safe: PROTOCOL.md
section 5)."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Optional, Union

from ._proto import client_pb2 as pb
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
from .framing import DEFAULT_MAX_FRAME, encode_frame, read_frame

log = logging.getLogger("gamemesh_client")

# Kicks after which reconnecting would fight another device or a dead
# session (PROTOCOL.md section 7): the client stops instead of resuming.
FINAL_KICKS = frozenset({KickReason.KICK_REASON_DUPLICATE_LOGIN, KickReason.KICK_REASON_SESSION_EXPIRED})
# Resume answers that mean "this session is gone": log in again.
SESSION_GONE = frozenset({ErrorCode.ERROR_CODE_SESSION_NOT_FOUND, ErrorCode.ERROR_CODE_INVALID_TOKEN})

Callback = Callable[..., Union[None, Awaitable[None]]]


@dataclass
class Options:
    """Tuning; the defaults follow PROTOCOL.md's checklist."""

    request_timeout: float = 5.0  # seconds a request waits for its reply by default
    heartbeat_interval: float = 10.0  # a heartbeat goes out after this long without sending
    reconnect_for: float = 55.0  # keep trying to resume this long (the server keeps a session 60 s)
    reconnect_backoff: tuple[float, float] = (0.05, 2.0)  # first and longest pause between attempts
    unavailable_retry_pause: float = 0.2  # UNAVAILABLE is retried with the same id after this
    max_frame: int = DEFAULT_MAX_FRAME


@dataclass
class Session:
    """What lets the client come back after a lost connection."""

    session_id: int
    resume_token: str
    user_id: int
    game_server_node_id: int


@dataclass
class _Pending:
    """A request sent (or waiting to be sent) and not yet answered."""

    packet: pb.ClientPacket
    future: asyncio.Future
    retry_unavailable: bool
    deadline: float


@dataclass
class _Connection:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    last_sent: float = field(default_factory=time.monotonic)


class Client:
    """A logged-in session. Build it with `await Client.connect(...)`."""

    def __init__(self, host: str, port: int, options: Optional[Options] = None):
        self.host = host
        self.port = port
        self.options = options or Options()
        self.session: Optional[Session] = None
        self._next_seq = 1
        self._pending: dict[int, _Pending] = {}
        self._conn: Optional[_Connection] = None
        self._closed: Optional[GameMeshError] = None
        self._tasks: list[asyncio.Task] = []
        self._route_handlers: dict[str, list[Callback]] = {}
        self._push_handlers: list[Callback] = []
        self._kick_handlers: list[Callback] = []
        self._resume_handlers: list[Callback] = []
        self._push_queues: set[asyncio.Queue] = set()
        # Observability, also what the tests check.
        self.resent_requests = 0  # requests re-sent after a resume
        self.resumes = 0  # successful resumes
        self.last_rtt_ms: Optional[float] = None  # from the latest heartbeat

    # ------------------------------------------------------------ lifecycle

    @classmethod
    async def connect(
        cls, host: str, port: int, user_id: int, token: str, options: Optional[Options] = None
    ) -> "Client":
        """Connects to a gateway and logs in as `user_id`; raises ServerError
        (e.g. INVALID_TOKEN) or KickedError if the login is refused."""
        client = cls(host, port, options)
        conn = await client._open()
        try:
            await client._login(conn, user_id, token)
        except BaseException:
            conn.writer.close()
            raise
        client._conn = conn
        client._tasks = [
            asyncio.create_task(client._supervise(conn), name="gamemesh-supervisor"),
            asyncio.create_task(client._heartbeat(), name="gamemesh-heartbeat"),
        ]
        return client

    async def close(self, logout: bool = False) -> None:
        """Stops the client; with `logout` the session is ended on the server
        first (it can no longer be resumed)."""
        if logout and self._closed is None:
            with contextlib.suppress(GameMeshError):
                await self.request(pb.ClientPacket(logout=pb.LogoutRequest()), timeout=2.0)
        self._finish(ClientClosed("client closed"))
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def __aenter__(self) -> "Client":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    @property
    def connected(self) -> bool:
        return self._conn is not None

    def drop_connection(self) -> None:
        """Aborts the TCP connection as a network fault would (for tests and
        drills): the client resumes on a new one by itself."""
        if self._conn is not None:
            self._conn.writer.transport.abort()

    # ------------------------------------------------------------ requests

    async def request(
        self,
        packet: pb.ClientPacket,
        timeout: Optional[float] = None,
        sequence_id: Optional[int] = None,
        retry_unavailable: bool = True,
    ) -> pb.ServerPacket:
        """Sends `packet` (its body set, its id taken from the session's
        counter unless `sequence_id` is given: re-using an id is how a
        duplicate is tested) and returns the reply packet. An ErrorResponse
        raises ServerError; UNAVAILABLE is first retried with the same id
        until the timeout. Raises RequestTimeout when no reply came."""
        if self._closed is not None:
            raise self._closed
        timeout = self.options.request_timeout if timeout is None else timeout
        if sequence_id is None:
            sequence_id = self._take_seq()
        packet.sequence_id = sequence_id
        future = asyncio.get_running_loop().create_future()
        self._pending[sequence_id] = _Pending(packet, future, retry_unavailable, time.monotonic() + timeout)
        await self._send_if_connected(packet)
        try:
            return await asyncio.wait_for(future, timeout)
        except asyncio.TimeoutError:
            raise RequestTimeout(f"no reply to sequence id {sequence_id} within {timeout} s") from None
        finally:
            if self._pending.get(sequence_id, None) is not None and self._pending[sequence_id].future is future:
                del self._pending[sequence_id]

    async def echo(self, data: bytes, timeout: Optional[float] = None) -> bytes:
        reply = await self.request(pb.ClientPacket(echo=pb.EchoRequest(data=data)), timeout)
        return _expect(reply, "echo").data

    async def increment(self, timeout: Optional[float] = None, sequence_id: Optional[int] = None) -> int:
        packet = pb.ClientPacket(increment=pb.IncrementRequest())
        reply = await self.request(packet, timeout, sequence_id=sequence_id)
        return _expect(reply, "increment").value

    async def heartbeat(self, timeout: Optional[float] = None) -> float:
        """One heartbeat round trip; returns it in milliseconds."""
        start = time.monotonic()
        packet = pb.ClientPacket(heartbeat=pb.HeartbeatRequest(client_time_ms=int(start * 1000)))
        _expect(await self.request(packet, timeout), "heartbeat")
        return (time.monotonic() - start) * 1000

    async def call(self, route: str, payload: bytes = b"", timeout: Optional[float] = None) -> bytes:
        """A game route (PROTOCOL.md section 10): returns the GameResponse
        payload; the game's refusals arrive as ServerError (UNKNOWN_ROUTE,
        BAD_PAYLOAD, REFUSED)."""
        packet = pb.ClientPacket(game=pb.GameRequest(route=route, payload=payload))
        return _expect(await self.request(packet, timeout), "game").payload

    def next_sequence_id(self) -> int:
        """The id the next request will use (not taken)."""
        return self._next_seq

    # ------------------------------------------------------------ pushes

    def on_push(self, route: str, callback: Optional[Callback] = None):
        """Calls `callback(payload: bytes)` for every GamePush of `route`.
        Usable as a decorator. A callback may be a coroutine function."""
        return self._register(self._route_handlers.setdefault(route, []), callback)

    def on_packet(self, callback: Optional[Callback] = None):
        """Calls `callback(packet: ServerPacket)` for every push (chat,
        notices, game pushes, kicks)."""
        return self._register(self._push_handlers, callback)

    def on_kicked(self, callback: Optional[Callback] = None):
        """Calls `callback(error: KickedError)` on every kick, final or not."""
        return self._register(self._kick_handlers, callback)

    def on_resumed(self, callback: Optional[Callback] = None):
        """Calls `callback(snapshot: SessionSnapshot)` after each resume."""
        return self._register(self._resume_handlers, callback)

    def pushes(self) -> "PushIterator":
        """Every push from the moment of this call, as an async iterator;
        it ends when the client stops (the reason is in `closed_reason`).
        Close it (`aclose()`) when done to stop queueing."""
        return PushIterator(self._push_queues, self._closed is not None)

    @property
    def closed_reason(self) -> Optional[GameMeshError]:
        """Why the client stopped (KickedError, SessionLost, ClientClosed),
        or None while it runs."""
        return self._closed

    async def wait_closed(self) -> GameMeshError:
        """Waits until the client stops and returns why."""
        await asyncio.gather(*self._tasks, return_exceptions=True)
        assert self._closed is not None
        return self._closed

    # ------------------------------------------------------------ internals: connection

    async def _open(self) -> _Connection:
        reader, writer = await asyncio.open_connection(self.host, self.port)
        return _Connection(reader, writer)

    async def _login(self, conn: _Connection, user_id: int, token: str) -> None:
        packet = pb.ClientPacket(sequence_id=self._take_seq(), login=pb.LoginRequest(user_id=user_id, token=token))
        reply = await self._handshake(conn, packet, lambda p: p.sequence_id == packet.sequence_id)
        login = _expect(reply, "login")
        self.session = Session(login.session_id, login.resume_token, user_id, login.game_server_node_id)

    async def _resume(self, conn: _Connection) -> pb.SessionSnapshot:
        # Sequence id 0: the resume must not take an id of the session's
        # sequence, or the unanswered requests below it could never run.
        assert self.session is not None
        packet = pb.ClientPacket(
            resume=pb.ResumeRequest(session_id=self.session.session_id, resume_token=self.session.resume_token)
        )
        reply = await self._handshake(
            conn, packet, lambda p: p.sequence_id == 0 and p.WhichOneof("body") in ("resume", "error")
        )
        return _expect(reply, "resume").snapshot

    async def _handshake(self, conn: _Connection, packet: pb.ClientPacket, is_reply) -> pb.ServerPacket:
        """Sends a login or resume and reads until its reply, handing pushes
        that come first to their handlers."""
        await self._write(conn, packet)
        while True:
            reply = pb.ServerPacket.FromString(await read_frame(conn.reader, self.options.max_frame))
            if is_reply(reply):
                return reply
            if reply.WhichOneof("body") == "kicked":
                raise KickedError(reply.kicked.reason, reply.kicked.detail)
            if reply.sequence_id == 0:
                self._deliver_push(reply)

    async def _supervise(self, conn: _Connection) -> None:
        """Reads the connection until it drops, then resumes; repeats until
        the client stops."""
        try:
            while self._closed is None:
                try:
                    await self._read_loop(conn)
                except (OSError, asyncio.IncompleteReadError, EOFError) as err:
                    log.info("connection lost: %r", err)
                except GameMeshError as err:
                    self._finish(err)
                    return
                self._conn = None
                with contextlib.suppress(Exception):
                    conn.writer.close()
                if self._closed is not None:
                    return
                conn = await self._reconnect()
        except GameMeshError as err:
            self._finish(err)
        except asyncio.CancelledError:
            raise
        except Exception as err:  # a bug here must not leave futures hanging
            log.exception("gamemesh client supervisor failed")
            self._finish(SessionLost(f"client failed: {err!r}"))
        finally:
            if self._conn is not None:
                self._conn.writer.close()
                self._conn = None

    async def _reconnect(self) -> _Connection:
        """Opens a new connection and resumes on it, with growing pauses,
        for at most `reconnect_for` seconds; then re-sends what was not
        answered, in id order."""
        pause, longest = self.options.reconnect_backoff
        give_up = time.monotonic() + self.options.reconnect_for
        while True:
            try:
                conn = await self._open()
                snapshot = await self._resume(conn)
                break
            except ServerError as err:
                if err.code in SESSION_GONE:
                    raise SessionLost(f"resume refused: {err}") from err
                log.info("resume failed, will retry: %s", err)
            except KickedError as err:
                if err.reason in FINAL_KICKS:
                    raise
                log.info("kicked while resuming, will retry: %s", err)
            except (OSError, asyncio.IncompleteReadError, EOFError) as err:
                log.info("reconnect failed, will retry: %r", err)
            if time.monotonic() + pause > give_up:
                raise SessionLost("no gateway took the resume in time")
            await asyncio.sleep(pause)
            pause = min(pause * 2, longest)
        self._next_seq = max(self._next_seq, snapshot.last_sequence_id + 1)
        # Re-send in id order with no await until the connection is public:
        # a new request must not overtake an older one (the server would
        # then refuse the older id as already passed).
        for seq in sorted(self._pending):
            self.resent_requests += 1
            conn.writer.write(encode_frame(self._pending[seq].packet.SerializeToString()))
        self._conn = conn
        self.resumes += 1
        await conn.writer.drain()
        for callback in list(self._resume_handlers):
            self._invoke(callback, snapshot)
        return conn

    async def _read_loop(self, conn: _Connection) -> None:
        while True:
            body = await read_frame(conn.reader, self.options.max_frame)
            try:
                packet = pb.ServerPacket.FromString(body)
            except Exception:
                log.warning("undecodable ServerPacket of %d bytes ignored", len(body))
                continue
            self._dispatch(conn, packet)

    def _dispatch(self, conn: _Connection, packet: pb.ServerPacket) -> None:
        kind = packet.WhichOneof("body")
        if packet.sequence_id != 0:
            self._answer(packet, kind)
        elif kind == "kicked":
            self._kicked(packet.kicked)
        elif kind == "heartbeat":  # our own idle heartbeat (sequence id 0)
            now_ms = time.monotonic() * 1000
            self.last_rtt_ms = max(0.0, now_ms - packet.heartbeat.client_time_ms)
        else:
            self._deliver_push(packet)

    def _answer(self, packet: pb.ServerPacket, kind: Optional[str]) -> None:
        pending = self._pending.get(packet.sequence_id)
        if pending is None or pending.future.done():
            return  # late reply to a request that timed out
        if kind == "error":
            code = packet.error.code
            # outcome_unknown: the server kept this answer for the id, so a
            # re-send only gets it again; the caller decides what to do.
            retry = (
                pending.retry_unavailable
                and code == ErrorCode.ERROR_CODE_UNAVAILABLE
                and not packet.error.outcome_unknown
            )
            if retry and time.monotonic() + self.options.unavailable_retry_pause < pending.deadline:
                asyncio.get_running_loop().call_later(
                    self.options.unavailable_retry_pause, self._resend_soon, packet.sequence_id
                )
                return
            del self._pending[packet.sequence_id]
            pending.future.set_exception(
                ServerError(code, packet.error.detail, packet.sequence_id, packet.error.outcome_unknown)
            )
            return
        del self._pending[packet.sequence_id]
        pending.future.set_result(packet)

    def _resend_soon(self, seq: int) -> None:
        pending = self._pending.get(seq)
        if pending is not None and not pending.future.done():
            asyncio.ensure_future(self._send_if_connected(pending.packet))

    def _kicked(self, kicked: pb.Kicked) -> None:
        error = KickedError(kicked.reason, kicked.detail)
        for callback in list(self._kick_handlers):
            self._invoke(callback, error)
        if kicked.reason in FINAL_KICKS:
            raise error  # ends the supervisor: no resume
        # Any other kick: the server closes the connection; we resume.

    def _deliver_push(self, packet: pb.ServerPacket) -> None:
        if packet.WhichOneof("body") == "game_push":
            for callback in list(self._route_handlers.get(packet.game_push.route, ())):
                self._invoke(callback, packet.game_push.payload)
        for callback in list(self._push_handlers):
            self._invoke(callback, packet)
        for queue in self._push_queues:
            queue.put_nowait(packet)

    def _finish(self, reason: GameMeshError) -> None:
        """Stops for good: every waiting request and iterator ends."""
        if self._closed is not None:
            return
        self._closed = reason
        for pending in self._pending.values():
            if not pending.future.done():
                pending.future.set_exception(reason)
        self._pending.clear()
        for queue in self._push_queues:
            queue.put_nowait(None)
        if self._conn is not None:
            self._conn.writer.close()

    async def _heartbeat(self) -> None:
        """Keeps an idle connection alive (the gateway kicks after 30 s
        without a frame). Sequence id 0: a heartbeat needs no retry."""
        interval = self.options.heartbeat_interval
        while self._closed is None:
            conn = self._conn
            idle = time.monotonic() - conn.last_sent if conn else 0.0
            if conn is not None and idle >= interval:
                ms = int(time.monotonic() * 1000)
                with contextlib.suppress(OSError):
                    await self._write(conn, pb.ClientPacket(heartbeat=pb.HeartbeatRequest(client_time_ms=ms)))
                idle = 0.0
            await asyncio.sleep(max(interval - idle, 0.01))

    # ------------------------------------------------------------ internals: small steps

    def _take_seq(self) -> int:
        seq = self._next_seq
        self._next_seq += 1
        return seq

    async def _send_if_connected(self, packet: pb.ClientPacket) -> None:
        """Writes now, or leaves it to the resume (the request stays pending)."""
        conn = self._conn
        if conn is None:
            return
        with contextlib.suppress(OSError):  # a drop: the resume re-sends it
            await self._write(conn, packet)

    async def _write(self, conn: _Connection, packet: pb.ClientPacket) -> None:
        conn.writer.write(encode_frame(packet.SerializeToString()))
        conn.last_sent = time.monotonic()
        await conn.writer.drain()

    @staticmethod
    def _register(handlers: list, callback: Optional[Callback]):
        if callback is None:  # decorator form
            def decorator(fn):
                handlers.append(fn)
                return fn

            return decorator
        handlers.append(callback)
        return callback

    @staticmethod
    def _invoke(callback: Callback, *args: Any) -> None:
        try:
            result = callback(*args)
            if inspect.isawaitable(result):
                asyncio.ensure_future(result)
        except Exception:
            log.exception("push callback failed")


class PushIterator:
    """An async iterator of pushes; subscribed from its creation on, so
    nothing sent between creating it and the first `async for` is lost."""

    def __init__(self, queues: set, finished: bool):
        self._queue: asyncio.Queue = asyncio.Queue()
        self._queues = queues
        queues.add(self._queue)
        if finished:
            self._queue.put_nowait(None)

    def __aiter__(self) -> "PushIterator":
        return self

    async def __anext__(self) -> pb.ServerPacket:
        item = await self._queue.get()
        if item is None:
            await self.aclose()
            raise StopAsyncIteration
        return item

    async def aclose(self) -> None:
        self._queues.discard(self._queue)


def _expect(reply: pb.ServerPacket, kind: str):
    """The reply's body if it is `kind`; an ErrorResponse raises ServerError."""
    got = reply.WhichOneof("body")
    if got == kind:
        return getattr(reply, kind)
    if got == "error":
        raise ServerError(reply.error.code, reply.error.detail, reply.sequence_id)
    raise UnexpectedReply(f"expected {kind}, got {got} (sequence id {reply.sequence_id})")
