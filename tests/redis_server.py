"""A real redis-server (Debian's `redis-server` package) on a free loopback port, for the tests
and benchmarks of the shared level: started, killed, paused and started again on its port."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

MISSING = (
    "redis-server is not installed, and the tests of the shared level need a real one:"
    " apt-get install redis-server (.ci/run installs it when missing)"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class RedisServer:
    """One redis-server process: no persistence, its files in a temporary directory.

    `start()` (again after `kill()`, on the same port, empty), `kill()` (SIGKILL: a crash),
    `pause()` / `resume()` (SIGSTOP / SIGCONT: a Redis that accepts connections and never
    answers), `stop()` (and remove its directory).
    """

    def __init__(self, port: int | None = None) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise FileNotFoundError(MISSING)
        self.binary = binary
        self.port = port or free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._dir = tempfile.TemporaryDirectory(prefix="gistscan-redis-")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 10.0) -> None:
        argv = [
            self.binary,
            *("--port", str(self.port), "--bind", "127.0.0.1", "--dir", self._dir.name),
            *("--save", "", "--appendonly", "no", "--loglevel", "warning"),
        ]
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout
        while not self._pong():
            if self.proc.poll() is not None:
                assert self.proc.stderr is not None
                raise RuntimeError(f"redis-server exited: {self.proc.stderr.read().decode()}")
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"redis-server did not answer on port {self.port}")
            time.sleep(0.02)

    def _pong(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGCONT)  # a paused one would not die of SIGKILL
            self.proc.kill()
        if self.proc is not None:
            self.proc.wait()
            if self.proc.stderr is not None:
                self.proc.stderr.close()
        self.proc = None

    def pause(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGCONT)

    def stop(self) -> None:
        self.kill()
        self._dir.cleanup()
