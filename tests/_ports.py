"""A TCP port that refuses connections and that no one else can take meanwhile.

A port bound then closed (the old helper) is free again at once: another test worker, a
redis-server or an emulator may take it before the test connects, and the "refused"
port then answers. Here the socket stays bound, never listening, for the whole test:
Linux refuses every connection to it (RST), and no one else can bind it.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

__all__ = ["refused_port"]


@pytest.fixture
def refused_port() -> Iterator[int]:
    """A 127.0.0.1 port, bound and not listening while the test runs: connections fail
    with "connection refused"."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])
