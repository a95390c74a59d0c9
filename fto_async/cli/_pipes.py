"""Pipes: a catalog on stdin (``fto-async screen -``) and an output that is a stream
(``--out -``, ``/dev/stdout``, a FIFO, a device).

A catalog is read twice (counted, then screened) and its rows are read again to rebuild
the output, so stdin is first copied to a file named by its content's hash in the user
cache folder (``stdin/``): the same input piped again is the same catalog, and its
default journal (``journals/``, named by the catalog) resumes it. Its format is told by
its first character: ``{`` is JSONL, anything else CSV.

An output that is not a regular file is written straight through, never replaced by a
temporary file (:func:`fto_async.outputs._flat.atomic_write`), never opened for reading;
the summary then goes to stderr, and no HTML report is written beside it.
"""

from __future__ import annotations

import hashlib
import os
import stat
import sys
from pathlib import Path
from typing import BinaryIO

__all__ = ["DASH", "default_journal", "is_dash", "is_stream", "spool_stdin"]

#: The path that names stdin (a catalog) or stdout (``--out``).
DASH = Path("-")
#: Where ``--out -`` writes.
STDOUT = Path("/dev/stdout")


def is_dash(path: Path) -> bool:
    return str(path) == "-"


def is_stream(path: Path) -> bool:
    """Whether ``path`` is ``-`` or an existing file that is not a regular one (a pipe,
    a FIFO, a terminal, ``/dev/stdout``): judged by ``stat``, never by opening it."""
    if is_dash(path):
        return True
    try:
        return not stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return False  # not there yet: a regular file will be created


def spool_stdin(folder: Path, source: BinaryIO | None = None) -> Path:
    """Copy stdin to ``folder/stdin-<sha256>.csv`` (or ``.jsonl``); return that path."""
    data = (source or sys.stdin.buffer).read()
    digest = hashlib.sha256(data).hexdigest()[:16]
    first = data.lstrip(b"\xef\xbb\xbf \t\r\n")[:1]
    suffix = ".jsonl" if first == b"{" else ".csv"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"stdin-{digest}{suffix}"
    if not path.exists():
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)
    return path


def default_journal(folder: Path, catalog: Path) -> Path:
    """The journal of a run whose ``--out`` is a stream: in ``folder``, named by the
    catalog's resolved path (so rerunning the same command resumes it)."""
    tag = hashlib.sha256(str(catalog.resolve()).encode()).hexdigest()[:12]
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{catalog.stem[:40]}-{tag}.journal.db"
