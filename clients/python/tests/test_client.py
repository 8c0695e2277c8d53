"""The Python client against a real cluster (tests/cluster.py)."""

import asyncio
import fcntl
import struct
import termios

import pytest

from gamemesh_client import Client, ErrorCode, KickedError, KickReason, Options, RequestTimeout, ServerError, pb

HOST = "127.0.0.1"


def unread_bytes(fd: int) -> int:
    """Bytes waiting in a socket's receive buffer (FIONREAD)."""
    return struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"))[0]


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 30))


def test_login_and_echo(cluster, user_id):
    async def scenario():
        client = await Client.connect(HOST, cluster.client_port, user_id, "dev")
        try:
            assert client.session.session_id != 0
            assert await client.echo(b"hello gamemesh") == b"hello gamemesh"
            assert client.next_sequence_id() == 3  # login took 1, echo 2
        finally:
            await client.close()

    run(scenario())


def test_a_duplicate_sequence_id_is_answered_from_the_cache(cluster, user_id):
    async def scenario():
        client = await Client.connect(HOST, cluster.client_port, user_id, "dev")
        try:
            first_seq = client.next_sequence_id()
            assert await client.increment() == 1
            # The same id again: not run again, the first reply comes back.
            assert await client.increment(sequence_id=first_seq) == 1
            assert await client.increment() == 2
        finally:
            await client.close()

    run(scenario())


def test_a_request_cut_off_by_a_dropped_connection_runs_exactly_once(cluster, user_id):
    async def scenario():
        client = await Client.connect(HOST, cluster.client_port, user_id, "dev")
        try:
            assert await client.increment() == 1
            # Stop reading, send an increment, wait until its reply is in the
            # socket's receive buffer (so the server surely ran it), then kill
            # the connection: the reply is lost, and the client must resume and
            # re-send the increment with its original id. A new id would run
            # it a second time (3, not 2).
            transport = client._conn.writer.transport
            transport.pause_reading()
            pending = asyncio.ensure_future(client.increment())
            fd = transport.get_extra_info("socket").fileno()
            for _ in range(500):
                if unread_bytes(fd) > 0:
                    break
                await asyncio.sleep(0.01)
            assert unread_bytes(fd) > 0, "the increment was not answered within 5 s"
            client.drop_connection()
            assert await pending == 2, "a re-sent increment ran twice (or not at all)"
            assert client.resumes == 1
            assert client.resent_requests == 1
            assert await client.increment() == 3
            assert await client.echo(b"after resume") == b"after resume"
        finally:
            await client.close()

    run(scenario())


def test_a_duplicate_login_kicks_the_first_client(cluster, user_id):
    async def scenario():
        first = await Client.connect(HOST, cluster.client_port, user_id, "dev")
        kicks = []
        first.on_kicked(kicks.append)
        second = await Client.connect(HOST, cluster.client_port, user_id, "dev")
        try:
            reason = await first.wait_closed()
            assert isinstance(reason, KickedError)
            assert reason.reason == KickReason.KICK_REASON_DUPLICATE_LOGIN
            assert [k.reason for k in kicks] == [KickReason.KICK_REASON_DUPLICATE_LOGIN]
            with pytest.raises(KickedError):
                await first.echo(b"too late")
            assert await second.echo(b"still here") == b"still here"
        finally:
            await first.close()
            await second.close()

    run(scenario())


def test_pushes_arrive_on_the_iterator(cluster, user_id):
    """A chat message said by another user is a push (sequence id 0)."""

    async def scenario():
        listener = await Client.connect(HOST, cluster.client_port, user_id, "dev")
        speaker = await Client.connect(HOST, cluster.client_port, user_id + 100_000, "dev")
        room = f"py-{user_id}"
        try:
            pushes = listener.pushes()
            await listener.request(pb.ClientPacket(chat_join=pb.ChatJoinRequest(room=room)))
            await speaker.request(pb.ClientPacket(chat_join=pb.ChatJoinRequest(room=room)))
            await speaker.request(pb.ClientPacket(chat_say=pb.ChatSayRequest(room=room, text="hi")))
            async for push in pushes:
                if push.WhichOneof("body") == "chat_message":
                    assert push.chat_message.text == "hi"
                    assert push.chat_message.from_user_id == user_id + 100_000
                    break
        finally:
            await listener.close()
            await speaker.close()

    run(scenario())


def test_a_request_without_an_answer_times_out(cluster, user_id):
    async def scenario():
        client = await Client.connect(HOST, cluster.client_port, user_id, "dev")
        try:
            cluster.pause_game_server()
            try:
                with pytest.raises(RequestTimeout):
                    await client.echo(b"into the void", timeout=0.3)
            finally:
                cluster.resume_game_server()
            assert await client.echo(b"back") == b"back"
        finally:
            await client.close()

    run(scenario())


def test_errors_are_typed(cluster, user_id):
    async def scenario():
        client = await Client.connect(HOST, cluster.client_port, user_id, "dev")
        try:
            with pytest.raises(ServerError) as err:
                await client.request(pb.ClientPacket(chat_say=pb.ChatSayRequest(room="nowhere-joined", text="x")))
            assert err.value.code == ErrorCode.ERROR_CODE_NOT_IN_ROOM
            assert err.value.code_name == "ERROR_CODE_NOT_IN_ROOM"
            with pytest.raises(ServerError) as err:
                await Client.connect(HOST, cluster.client_port, 0, "dev")
            assert err.value.code == ErrorCode.ERROR_CODE_INVALID_TOKEN
        finally:
            await client.close()

    run(scenario())


def test_heartbeats_go_out_by_themselves(cluster, user_id):
    async def scenario():
        client = await Client.connect(HOST, cluster.client_port, user_id, "dev", Options(heartbeat_interval=0.05))
        try:
            for _ in range(200):
                if client.last_rtt_ms is not None:
                    break
                await asyncio.sleep(0.02)
            assert client.last_rtt_ms is not None, "no heartbeat reply within 4 s"
        finally:
            await client.close()

    run(scenario())
