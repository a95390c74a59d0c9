"""The HTML report's thumbnail cache: a rerun's report reuses its thumbnails. Strictly private.

:meth:`ThumbCache.thumbnail` answers as :func:`fto_async.outputs._cards.thumbnail` does for
a local image file, but remembers the answer, in memory for the run and, given a file
(``fto-async screen --out OUT`` uses ``OUT.thumbs.db``, beside ``OUT.journal.db``), in a
small SQLite table, for the next run. The key is the SHA-256 of the file's bytes, the
thumbnail's size and :data:`~fto_async.outputs._cards.ENCODER`: an edited file (even one
given back its size and modification time), a new size or a new encoder misses. The
bytes hashed are the bytes decoded (read once). Within one cache object the digest of a
file is remembered by its path, size, inode, ``mtime_ns`` and ``ctime_ns`` (a change
time no ``touch`` can set back), in memory and in the file's ``digests`` table, so a
report reads each file at most once and a rerun reads no unchanged file at all.

Only thumbnails we encoded are stored: a file that does not decode as an image is never
cached (it is tried again next time), and what is read back must be a ``data:`` URI of
the kind we write, or it is ignored. The cache is an optimisation only: if the file
cannot be opened, is not ours (another SQLite database, or not SQLite), or any SQLite
call fails, the cache carries on in memory and the report is written all the same. A
file of the earlier schema (keyed by path and mtime) is emptied on sight.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import os
import sqlite3
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Final, TypeAlias

from .. import _sqlite
from . import _cards
from ._cards import ENCODER, is_thumbnail_uri

__all__ = ["ThumbCache", "Warmer", "cache_path"]

Key: TypeAlias = tuple[str, int, str]  # (SHA-256 of the file, px, encoder)
_Stat: TypeAlias = tuple[str, int, int, int, int]
_MEMORY: Final = 2048  # thumbnails kept in memory (about 1 KB each)
_FLUSH: Final = 256  # new thumbnails written per transaction
_KEEP_DAYS: Final = 60  # an entry no report has used for this long is dropped
_DAY: Final = 86_400
_DIGESTS: Final = """
CREATE TABLE IF NOT EXISTS digests (
    path TEXT NOT NULL PRIMARY KEY, size INTEGER NOT NULL, ino INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL, ctime_ns INTEGER NOT NULL, digest TEXT NOT NULL,
    used INTEGER NOT NULL
) WITHOUT ROWID
"""
_HEX64: Final = frozenset("0123456789abcdef")
_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS thumbs (
    digest TEXT NOT NULL, px INTEGER NOT NULL, encoder TEXT NOT NULL, uri TEXT NOT NULL,
    used INTEGER NOT NULL, PRIMARY KEY (digest, px, encoder)
) WITHOUT ROWID
"""


def cache_path(out: Path) -> Path:
    """The cache beside a run's results: ``OUT.thumbs.db`` for ``OUT`` or ``OUT.journal.db``."""
    name = out.name.removesuffix(".journal.db")
    return out.with_name(name + ".thumbs.db")


class ThumbCache:
    """Thumbnails of local image files, by (content hash, px, encoder).

    Thread-safe: report workers call :meth:`thumbnail` at once (decoding runs outside
    the lock). Use as a context manager, or call :meth:`close`, to write what is new.
    The file is opened (and created) on the first lookup only.

    Attributes:
        hits: answers from memory or the file. made: thumbnails encoded here.
    """

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self._lock = threading.Lock()
        self._memory: collections.OrderedDict[Key, str] = collections.OrderedDict()
        self._new: list[tuple[str, int, str, str, int]] = []
        self._digests: dict[_Stat, str] = {}  # this object's files, by what stat says
        self._new_digests: list[tuple[str, int, int, int, int, str, int]] = []
        self._used: list[Key] = []
        self._making: dict[Key, Future[str | None]] = {}
        self._today = int(time.time()) // _DAY
        self._db: sqlite3.Connection | None = None
        self._path = None if path is None else Path(path)  # opened on the first lookup
        self.hits = 0
        self.made = 0

    def __enter__(self) -> ThumbCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _open(self, path: Path) -> sqlite3.Connection | None:
        db = None
        try:
            db = _sqlite.connect(path, timeout=2.0)
            tables = {name for (name,) in db.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'")}  # fmt: skip
            if tables - {"thumbs", "digests"}:  # someone else's database: leave it alone
                db.close()
                return None
            columns = {row[1] for row in db.execute("PRAGMA table_info(thumbs)")}
            if columns and "digest" not in columns:  # keyed by path and mtime: not trusted
                db.execute("DROP TABLE thumbs")
            db.execute(_SCHEMA)
            db.execute(_DIGESTS)
            db.execute("DELETE FROM digests WHERE used < ?", (self._today - _KEEP_DAYS,))
            db.execute("DELETE FROM thumbs WHERE encoder != ? OR used < ?",
                       (ENCODER, self._today - _KEEP_DAYS))  # fmt: skip
            db.commit()
        except sqlite3.Error:
            if db is not None:
                with contextlib.suppress(sqlite3.Error):
                    db.close()
            return None
        return db

    def ready(self, path: Path | None, px: int) -> bool:
        """Whether :meth:`thumbnail` would answer from the cache (no decoding, no reading:
        a file whose stat is new is read, hashed and looked up by :meth:`thumbnail`)."""
        digest = None if path is None else self._known_digest(path)
        return digest is not None and self._get((digest, px, ENCODER)) is not None

    def _known_digest(self, path: Path) -> str | None:
        """The digest of ``path`` if its stat is the one it was hashed with."""
        stat = _stat(path)
        if stat is None:
            return None
        with self._lock:
            digest = self._digests.get(stat)
            if digest is not None or self._connection() is None:
                return digest
            assert self._db is not None
            try:
                found = self._db.execute(
                    "SELECT digest FROM digests WHERE path = ? AND size = ? AND ino = ? AND "
                    "mtime_ns = ? AND ctime_ns = ?", stat).fetchone()  # fmt: skip
            except sqlite3.Error:
                self._disable()
                return None
            if found is None or not isinstance(found[0], str) or len(found[0]) != 64 \
                    or not set(found[0]) <= _HEX64:
                return None
            self._digests[stat] = found[0]
            return str(found[0])

    def _connection(self) -> sqlite3.Connection | None:
        """The file, opened on first use (the lock is held)."""
        if self._path is not None:  # a report without local images makes no file
            self._db, self._path = self._open(self._path), None
        return self._db

    def _remember_digest(self, path: Path, data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        stat = _stat(path)
        if stat is not None:
            with self._lock:
                if len(self._digests) >= _MEMORY:
                    self._digests.clear()
                self._digests[stat] = digest
                if self._db is not None:  # kept for the next report
                    self._new_digests.append((*stat, digest, self._today))
        return digest

    def thumbnail(self, path: Path, px: int) -> str | None:
        """``thumbnail(path, px)``, from the cache when a file of the same bytes was seen."""
        digest = self._known_digest(path)
        hit = None if digest is None else self._get((digest, px, ENCODER))
        if hit is not None:
            return hit
        data = _read(path)
        if data is None:
            return None  # no such file, or too large: nothing to decode
        key: Key = (self._remember_digest(path, data), px, ENCODER)
        hit = self._get(key)
        if hit is not None:
            return hit
        with self._lock:  # a file shared by rows in flight at once is decoded once
            done = self._memory.get(key)  # (made since the lookup above)
            making = self._making.get(key)
            if done is None and making is None:
                self._making[key] = mine = Future[str | None]()
        if done is not None:
            return done
        if making is not None:
            return making.result()
        try:
            uri = _cards.thumbnail(path, px, data=data)  # the bytes hashed are decoded
            if uri is not None and is_thumbnail_uri(uri):  # else not an image: never cached
                with self._lock:
                    self.made += 1
                self._put(key, uri)
            mine.set_result(uri)
        except BaseException as exc:
            mine.set_exception(exc)
            raise
        finally:
            with self._lock:
                del self._making[key]
        return uri

    def _get(self, key: Key) -> str | None:
        with self._lock:
            uri = self._memory.get(key)
            if uri is not None:
                self._memory.move_to_end(key)
                self.hits += 1
                return uri
            if self._connection() is None:
                return None
            assert self._db is not None
            try:
                found = self._db.execute(
                    "SELECT uri, used FROM thumbs WHERE digest = ? AND px = ? AND encoder = ?",
                    key).fetchone()  # fmt: skip
            except sqlite3.Error:
                self._disable()
                return None
            if found is None or not is_thumbnail_uri(found[0]):
                return None
            if found[1] != self._today:
                self._used.append(key)
            self._remember(key, found[0])
            self.hits += 1
            return str(found[0])

    def _put(self, key: Key, uri: str) -> None:
        with self._lock:
            self._remember(key, uri)
            if self._db is None:
                return
            self._new.append((*key, uri, self._today))
            if len(self._new) >= _FLUSH:
                self._flush()

    def _remember(self, key: Key, uri: str) -> None:
        self._memory[key] = uri
        if len(self._memory) > _MEMORY:
            self._memory.popitem(last=False)

    def _flush(self) -> None:
        """Write new and reused entries (the lock is held)."""
        if self._db is None or not (self._new or self._used or self._new_digests):
            return
        try:
            with _sqlite.transaction(self._db):
                self._db.executemany(
                    "INSERT OR REPLACE INTO thumbs VALUES (?, ?, ?, ?, ?)", self._new)
                self._db.executemany(
                    "UPDATE thumbs SET used = ? WHERE digest = ? AND px = ? AND encoder = ?",
                    [(self._today, *k) for k in self._used])
                self._db.executemany("INSERT OR REPLACE INTO digests VALUES (?, ?, ?, ?, ?, ?, ?)",
                                     self._new_digests)  # fmt: skip
        except sqlite3.Error:
            self._disable()
        self._new.clear()
        self._used.clear()
        self._new_digests.clear()

    def _disable(self) -> None:
        if self._db is not None:
            with contextlib.suppress(sqlite3.Error):
                self._db.close()
        self._db = None

    def close(self) -> None:
        """Write what is new and close the file (the memory stays usable)."""
        with self._lock:
            self._flush()
            self._disable()
            self._path = None


def _stat(path: Path) -> _Stat | None:
    try:
        resolved = path.resolve(strict=True)
        st = resolved.stat()
    except (OSError, RuntimeError, ValueError):
        return None
    return (str(resolved), st.st_size, st.st_ino, st.st_mtime_ns, st.st_ctime_ns)


def _read(path: Path) -> bytes | None:
    """The file's bytes (``None``: missing, unreadable, or larger than a thumbnail reads)."""
    try:
        with path.open("rb") as handle:
            data = handle.read(_cards.MAX_IMAGE_BYTES + 1)
    except (OSError, ValueError):
        return None
    return None if len(data) > _cards.MAX_IMAGE_BYTES else data


class Warmer:
    """Fills a cache in the background, one thread, while a screening run waits on the
    platform, so the report at the end of the run finds its thumbnails made.

    :meth:`add` never blocks and never raises (a file that fails is left to the report);
    :meth:`close` waits for what was added, then writes the cache.
    """

    def __init__(self, path: str | os.PathLike[str], px: int) -> None:
        self._cache = ThumbCache(path)
        self._px = px
        self._seen: set[Path] = set()
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="fto-thumbs")

    def add(self, path: Path) -> None:
        """Make ``path``'s thumbnail soon (once per path)."""
        if path not in self._seen:
            self._seen.add(path)
            self._pool.submit(self._make, path)

    def _make(self, path: Path) -> None:
        with contextlib.suppress(Exception):  # the report tries again and says nothing
            self._cache.thumbnail(path, self._px)

    def close(self) -> None:
        """Wait for the thumbnails asked for (the report would make them anyway)."""
        self._pool.shutdown(wait=True)
        self._cache.close()

    def abandon(self) -> None:
        """Drop what was not started (after an error); keep what is made."""
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._cache.close()
