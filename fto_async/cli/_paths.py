"""Outputs never overwrite inputs: the path checks of ``screen`` and ``export``. Private.

Two names are the same file when :func:`os.path.samefile` says so (same device and
inode: a hard link, or a symlink to it), or, when one does not exist yet, when their
resolved paths (symlinks followed) are equal.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

__all__ = ["clash", "same_file", "sqlite_files"]


def same_file(a: Path, b: Path) -> bool:
    """Whether ``a`` and ``b`` name one file (through symlinks and hard links)."""
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet): compare where they lead
        return os.path.realpath(a) == os.path.realpath(b)


def sqlite_files(path: Path) -> list[Path]:
    """A SQLite database and the ``-wal`` and ``-shm`` files beside it."""
    return [path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")]


def clash(output: tuple[str, Path], inputs: Iterable[tuple[str, Path]]) -> str | None:
    """The refusal message if the ``(option, path)`` output is one of the inputs, else ``None``.

    ``inputs`` is read lazily and only while needed.
    """
    option, out = output
    for what, path in inputs:
        if same_file(out, path):
            return (f"{option} {out} is {what} ({path}): an output never overwrites an input; "
                    f"choose another {option}")
    return None
