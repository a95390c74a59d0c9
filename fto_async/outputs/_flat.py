"""The line writers of the one record: JSONL and CSV, and the atomic file they write to.

Both take the records of :mod:`fto_async.outputs._record` as they come (streaming): a
JSONL line is the whole record (flat fields, then the full report and the follow-ups), a
CSV row its flat fields (:data:`~fto_async.outputs._record.FLAT_COLUMNS`). CSV
cells go through :func:`~fto_async.outputs._cells.cell_text` (no formulas, no controls).
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import stat
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Final, TextIO

from ._cells import cell_text
from ._record import FLAT_COLUMNS, flat_cells

__all__ = ["CSV_COLUMNS", "atomic_write", "write_csv", "write_jsonl"]

#: Columns of ``fto-async export --format csv``: the record's flat fields, in order.
CSV_COLUMNS: Final = FLAT_COLUMNS


@contextlib.contextmanager
def atomic_write(out: Path) -> Iterator[TextIO]:
    """A text handle on a temporary file that replaces ``out`` only if the block succeeds.

    An existing ``out`` that is not a regular file (a pipe, a FIFO, ``/dev/stdout``) is
    written straight through: replacing it would unlink the pipe the reader holds.
    """
    if _is_stream(out):
        with out.open("w", encoding="utf-8", newline="") as stream:
            yield stream
        return
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("w", encoding="utf-8", newline="") as handle:
            yield handle
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)


def _is_stream(path: Path) -> bool:
    try:
        return not stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return False  # not there yet: a regular file


def write_jsonl(records: Iterable[dict[str, Any]], handle: TextIO) -> None:
    """Write records as JSON lines."""
    for rec in records:
        handle.write(json.dumps(rec, ensure_ascii=False) + "\n")


def write_csv(records: Iterable[dict[str, Any]], handle: TextIO) -> None:
    """Write records as CSV with :data:`CSV_COLUMNS` (:func:`~._record.flat_cells`: lists
    ``;``-joined, scores as percentages).

    Every cell goes through :func:`~fto_async.outputs._cells.cell_text`: no formulas, no controls.
    """
    writer = csv.writer(handle)
    writer.writerow(CSV_COLUMNS)
    for rec in records:
        writer.writerow([cell_text(value) for value in flat_cells(rec)])
