"""What every part of the ``fto-async`` command shares: exit codes, error lines, the journal.

Strictly private. Its own module so that ``_screen`` and ``_report`` (which ``_screen``
calls once a run ends) both import it, and not each other.
"""

from __future__ import annotations

import sqlite3
import sys
from pathlib import Path
from typing import Final

from ..journal import Journal, JournalLockedError, NotAJournalError
from ._display import clean

__all__ = [
    "EXIT_BUDGET",
    "EXIT_FATAL",
    "EXIT_OK",
    "EXIT_ROWS",
    "EXIT_STOPPED",
    "EXIT_USAGE",
    "open_journal",
    "say_error",
]

EXIT_OK: Final = 0  #: every row done
EXIT_ROWS: Final = 1  #: some rows failed, were invalid or are unfinished
EXIT_USAGE: Final = 2  #: bad command line, catalog or configuration
EXIT_FATAL: Final = 3  #: a fatal platform error (quota, credentials) stopped the run
EXIT_BUDGET: Final = 4  #: the --max-calls budget is spent; rerun to go on
EXIT_STOPPED: Final = 130  #: stopped by Ctrl-C or SIGTERM


def say_error(message: str) -> None:
    """Write ``fto-async: message`` to stderr (each line :func:`~._display.clean`-ed)."""
    text = "\n".join(clean(line) for line in message.split("\n"))
    sys.stderr.write(f"fto-async: {text}\n")
    sys.stderr.flush()


async def open_journal(path: Path, *, readonly: bool = False) -> Journal | None:
    """Open a journal (``readonly``: never written), or say why not (and return ``None``)."""
    try:
        return await Journal.open(path, readonly=readonly)
    except JournalLockedError:
        say_error(f"the journal {path} is in use by another fto-async run; wait for it to end")
    except NotAJournalError as exc:
        say_error(f"{exc}; it was left unchanged")
    except (sqlite3.DatabaseError, RuntimeError, OSError) as exc:
        say_error(f"cannot open the journal {path}: {exc}")
    return None
