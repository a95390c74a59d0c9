"""A real ``redis-server`` for the shared-gate tests, and a helper client process."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

REDIS_SERVER = shutil.which("redis-server") or (
    "/usr/bin/redis-server" if Path("/usr/bin/redis-server").exists() else None
)
WORKER = Path(__file__).with_name("_worker.py")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def require_redis_server() -> str:
    """The redis-server binary; skip (or, under ``CI=true``, fail) where there is none."""
    if REDIS_SERVER is None:
        reason = "no redis-server binary on PATH: the shared-gate tests need a real Redis"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return REDIS_SERVER


class RedisServer:
    """One redis-server on 127.0.0.1 at a free port, without persistence."""

    def __init__(self, binary: str, password: str | None = None) -> None:
        self.binary = binary
        self.port = free_port()
        self.password = password
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_once = False

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start the server. The first start may move to another free port if this one
        was taken meanwhile (another test worker); a restart keeps its port (clients
        hold the URL) and fails if the port is gone."""
        for _ in range(5):
            if self._launch():
                self.started_once = True
                return
            if self.started_once:
                break
            self.port = free_port()  # taken between free_port() and the bind: another
        raise RuntimeError(f"redis-server did not start on port {self.port}")

    def _launch(self) -> bool:
        args = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1",
                "--save", "", "--appendonly", "no", "--daemonize", "no"]
        if self.password:
            args += ["--requirepass", self.password]
        self.proc = subprocess.Popen(  # noqa: S603 - our own arguments, no shell
            args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:  # exited: the port is in use
                self.proc = None
                return False
            if self._answers():
                return True
            time.sleep(0.02)
        self.stop()
        return False

    def _answers(self) -> bool:
        """Whether our process (not another one on that port) answers."""
        import redis

        assert self.proc is not None
        client = redis.Redis(host="127.0.0.1", port=self.port, password=self.password,
                             socket_timeout=0.5, socket_connect_timeout=0.2)  # fmt: skip
        try:
            return int(client.info("server")["process_id"]) == self.proc.pid
        except (redis.RedisError, OSError):
            return False
        finally:
            client.close()

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(10)
            self.proc = None

    def restart(self, down_for: float = 0.0) -> None:
        self.stop()
        time.sleep(down_for)
        self.start()


def worker_command(*args: str) -> list[str]:
    """``python tests/redis/_worker.py ARGS`` with this interpreter."""
    return [sys.executable, str(WORKER), *args]
