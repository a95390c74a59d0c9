"""The ``fto-async`` command line (and only it): the core package never imports this one.

Modules:

* ``_main``: the argument parser and the ``status``, ``export``, ``demo`` and
  ``emulator`` commands;
* ``_screen``: one screening run (catalog -> journal -> batch -> output);
* ``_catalog``: reading a CSV/JSONL catalog into requests, row by row;
* ``_results``: output rows, JSONL/CSV writing, tallies;
* ``_display``: progress and summary tables (rich on a terminal, plain lines else);
* ``_doctor``: ``fto-async doctor``, the setup checks (no billable task).
"""

from ._main import build_parser, main

__all__ = ["build_parser", "main"]
