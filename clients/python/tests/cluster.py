"""A real gamemesh cluster for the tests: redis-server, one game server and
one gateway as child processes on free loopback ports.

The binaries are this checkout's (`cargo build -p gamemesh-gateway -p
gamemesh-game-server` at the repository root, run by the fixture: a no-op
when they are current) unless GAMEMESH_BIN_DIR names a directory holding
`gateway` and `game-server` already built."""

from __future__ import annotations

import os
import pathlib
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from contextlib import ExitStack
from dataclasses import dataclass

REPO = pathlib.Path(__file__).resolve().parents[3]
START_TIMEOUT = 30.0


def binary_dir() -> pathlib.Path:
    """Where gateway and game-server are: GAMEMESH_BIN_DIR, else built here."""
    given = os.environ.get("GAMEMESH_BIN_DIR")
    if given:
        return pathlib.Path(given)
    if shutil.which("cargo") is None:
        raise RuntimeError("cargo is not on PATH: install Rust, or set GAMEMESH_BIN_DIR to built binaries")
    subprocess.run(
        ["cargo", "build", "-q", "-p", "gamemesh-gateway", "-p", "gamemesh-game-server"], cwd=REPO, check=True
    )
    target = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
    return target / "debug"


def free_ports(count: int) -> list[int]:
    """Ports the kernel hands out now; held together so they differ."""
    socks = [socket.socket() for _ in range(count)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def wait_until(what: str, condition, timeout: float = START_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not happen within {timeout} s")
        time.sleep(0.05)


def accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False


def ready(admin_port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/readyz", timeout=0.5) as r:
            return r.status == 200
    except OSError:
        return False


def thread_states(pid: int) -> list[str]:
    """The scheduler state (R, S, T, ...) of each thread of `pid`, from
    /proc/<pid>/task/<tid>/stat; ["gone"] when the process is gone."""
    try:
        states = []
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                stat = f.read()
            # "tid (comm) S ...": comm may hold spaces and parentheses.
            states.append(stat[stat.rindex(")") + 1 :].split()[0])
        return states
    except (OSError, ValueError, IndexError):
        return ["gone"]


@dataclass
class Cluster:
    client_port: int
    game_server: subprocess.Popen

    def pause_game_server(self) -> None:
        """SIGSTOP: the game server stalls (it answers nothing) until resumed.

        Returns once every thread has stopped: a signal stops a
        multi-threaded process one thread at a time, as each is next
        scheduled, so on a busy machine the others can still answer a
        request sent right after the kill.
        """
        self.game_server.send_signal(signal.SIGSTOP)
        deadline = time.monotonic() + 5
        while not all(s == "T" for s in thread_states(self.game_server.pid)):
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"game server (pid {self.game_server.pid}) not stopped 5 s after SIGSTOP: "
                    f"thread states {thread_states(self.game_server.pid)}"
                )
            time.sleep(0.005)

    def resume_game_server(self) -> None:
        self.game_server.send_signal(signal.SIGCONT)


def start(stack: ExitStack, log_dir: pathlib.Path) -> Cluster:
    """Starts the three processes; `stack` stops them."""
    if shutil.which("redis-server") is None:
        raise RuntimeError("redis-server is not on PATH: apt-get install redis-server")
    bins = binary_dir()
    redis, gs_p2p, gs_mesh, gw_client, gw_p2p, gw_admin = free_ports(6)

    def spawn(name: str, argv: list[str]) -> subprocess.Popen:
        out = open(log_dir / f"{name}.log", "wb")
        stack.callback(out.close)
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)

        def stop() -> None:
            proc.send_signal(signal.SIGCONT)
            proc.kill()
            proc.wait()

        stack.callback(stop)
        return proc

    spawn("redis", ["redis-server", "--port", str(redis), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
    wait_until("redis-server accepting", lambda: accepts(redis))
    game_server = spawn(
        "game-server",
        [str(bins / "game-server"), "--node-id", "1", "--p2p-port", str(gs_p2p), "--mesh-port", str(gs_mesh),
         "--admin-port", "0", "--redis", f"127.0.0.1:{redis}", "--heartbeat-ms", "200"],
    )
    spawn(
        "gateway",
        [str(bins / "gateway"), "--node-id", "1", "--client-bind", "127.0.0.1", "--client-port", str(gw_client),
         "--p2p-port", str(gw_p2p), "--admin-port", str(gw_admin), "--game-servers", f"127.0.0.1:{gs_p2p}",
         "--heartbeat-ms", "200"],
    )
    wait_until("the gateway ready (/readyz)", lambda: ready(gw_admin))
    return Cluster(gw_client, game_server)
