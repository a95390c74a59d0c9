"""SQLite plumbing shared by the journal, the report cache and the thumbnail cache. Private.

One home for each rule of how fto-async keeps a file:

* :func:`lock` creates a file private (0600) and takes its ``flock``: one writer per file,
  whatever name (symlink, hard link) reaches it;
* :func:`read_only_uri` and :func:`connect_read_only` read a file without ever writing to
  it or beside it (``status``, ``export``, the dry run);
* :func:`connect` opens a connection in autocommit mode (transactions are explicit), and
  ``wal=True`` switches the file to WAL with ``synchronous=NORMAL`` (refused: an error);
* :func:`one_thread` is the one-thread executor every connection is used from;
* :func:`write_batch` is group commit's last step: many statements, one transaction,
  rolled back whole on any error.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import sys
import urllib.parse
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

if sys.platform != "win32":  # pragma: no branch
    import fcntl

__all__ = [
    "connect",
    "connect_read_only",
    "lock",
    "one_thread",
    "read_only_uri",
    "transaction",
    "write_batch",
]


def lock(path: Path, locked: Callable[[str], Exception]) -> int:
    """Create ``path`` if needed (mode 0600) and ``flock`` the file itself; return the
    descriptor (closing it releases the lock).

    The lock belongs to the file (its inode), not to a name: a symlink or a hard link
    reaches the same lock. SQLite's own POSIX locks are separate from ``flock`` ones.

    Raises:
        Exception: ``locked(message)`` when another descriptor holds the lock.
    """
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    if sys.platform == "win32":  # pragma: no cover - no advisory lock there
        return fd
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise locked(f"{str(path)!r} is open elsewhere") from None
    return fd


def read_only_uri(path: Path) -> str:
    """A URI that opens ``path`` without ever writing to it or beside it.

    ``mode=ro`` while a writer has the file open (its ``-wal`` exists: read it as a WAL
    reader); ``immutable=1`` otherwise, so SQLite creates no ``-wal``/``-shm`` files and
    needs no write access to the folder.
    """
    resolved = path.resolve()
    quoted = urllib.parse.quote(str(resolved))
    wal = resolved.with_name(resolved.name + "-wal")
    return f"file:{quoted}?mode=ro" if wal.exists() else f"file:{quoted}?mode=ro&immutable=1"


def connect(
    path: Path | str, *, wal: bool = False, what: str = "database", **options: Any
) -> sqlite3.Connection:
    """A connection in autocommit mode (``isolation_level=None``: transactions are
    explicit), usable from any one thread at a time; ``wal`` switches the file to WAL
    with ``synchronous=NORMAL``. ``options`` go to :func:`sqlite3.connect`.

    Raises:
        RuntimeError: ``wal`` and SQLite refused WAL mode (``what`` names the file).
    """
    db: sqlite3.Connection = sqlite3.connect(
        path, isolation_level=None, check_same_thread=False, **options
    )
    if wal:
        mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if mode != "wal":
            db.close()
            raise RuntimeError(f"{what} {str(path)!r}: WAL mode refused ({mode})")
        db.execute("PRAGMA synchronous=NORMAL")
    return db


def connect_read_only(path: Path, *, uri: bool = False) -> sqlite3.Connection:
    """A connection that cannot write (``query_only``); ``uri``: through
    :func:`read_only_uri`, so nothing is written beside the file either."""
    target = read_only_uri(path) if uri else path
    db = sqlite3.connect(target, uri=uri, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA query_only=1")
    return db


def one_thread(name: str) -> ThreadPoolExecutor:
    """The executor a connection is used from: one thread, so calls never overlap."""
    return ThreadPoolExecutor(1, thread_name_prefix=name)


@contextlib.contextmanager
def transaction(db: sqlite3.Connection, begin: str = "BEGIN") -> Iterator[sqlite3.Connection]:
    """``begin`` ... ``COMMIT``; any error rolls the whole transaction back."""
    db.execute(begin)
    try:
        yield db
        db.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            db.execute("ROLLBACK")
        raise


def write_batch(
    db: sqlite3.Connection,
    statements: Iterable[tuple[str, Sequence[Sequence[Any]]]],
    begin: str = "BEGIN",
) -> None:
    """Group commit: every ``(sql, rows)`` executed in one transaction (all or nothing)."""
    with transaction(db, begin):
        for sql, rows in statements:
            if rows:
                db.executemany(sql, rows)
