"""Outputs never overwrite inputs: the path checks of ``screen`` and ``export``. Private.

Two names are the same file when :func:`os.path.samefile` says so (same device and
inode: a hard link, or a symlink to it), or, when one does not exist yet, when their
resolved paths (symlinks followed) are equal.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from pathlib import Path

__all__ = ["clash", "is_sqlite", "same_file", "sqlite_files", "writable_by_others"]


def same_file(a: Path, b: Path) -> bool:
    """Whether ``a`` and ``b`` name one file (through symlinks and hard links)."""
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet): compare where they lead
        return os.path.realpath(a) == os.path.realpath(b)


def sqlite_files(path: Path) -> list[Path]:
    """A SQLite database and the ``-wal`` and ``-shm`` files beside it."""
    return [path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")]


def clash(
    output: tuple[str, Path], inputs: Iterable[tuple[str, Path]], *, fix: str | None = None
) -> str | None:
    """The refusal message if the ``(option, path)`` output is one of the inputs, else ``None``.

    ``inputs`` is read lazily and only while needed. ``fix`` ends the message (default
    "choose another OPTION").
    """
    option, out = output
    for what, path in inputs:
        if same_file(out, path):
            return (f"{option} {out} is {what} ({path}): an output never overwrites an input; "
                    f"{fix or f'choose another {option}'}")
    return None


def is_sqlite(path: Path) -> bool:
    """Whether ``path`` is an existing SQLite file (a journal of another run, say).

    Only a regular file is opened: opening a FIFO or ``/dev/stdout`` for reading would
    block for ever (no writer comes), and a pipe or a device is never a database.
    """
    try:
        if not stat.S_ISREG(path.stat().st_mode):
            return False
        with path.open("rb") as handle:
            return handle.read(16) == b"SQLite format 3\x00"
    except OSError:
        return False


def writable_by_others(path: Path) -> str | None:
    """Why a file we trust the content of (the report cache) is not ours alone, else ``None``.

    As ssh refuses a key file others could change: its folder and the file (where they
    exist) must not be writable by group or others, and the file must be ours.
    """
    for what, where in (("folder", path.parent), ("file", path)):
        try:
            info = where.stat()
        except OSError:
            continue  # made by us, private (the cache creates its folder 0700)
        if info.st_mode & 0o022:
            return (f"the {what} {where} is writable by group or others "
                    f"(mode {info.st_mode & 0o777:o}): another user could plant answers "
                    f"in it; run 'chmod go-w {where}'")
        if what == "file" and info.st_uid != os.geteuid():
            return f"the file {where} belongs to another user"
    return None
