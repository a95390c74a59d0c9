"""The ``fto-async`` command line (and only it): the core package never imports this one.

Modules:

* ``_main``: the argument parser and the dispatch (and the ``emulator`` command);
* ``_args``: argument types and defaults (durations, ``--qps``, ``--follow-up``, ...);
* ``_job``: a ``screen`` command checked before any call (:class:`~._job.Job`);
* ``_screen``: one screening run (catalog -> journal -> batch -> output), its summary;
* ``_images``: a row's identity (fingerprint, image digest), uploads and their reuse;
* ``_caches``: the run's report cache (the file, Redis with ``--shared-cache``, or none);
* ``_signals``: Ctrl-C and SIGTERM during a run and during the output's rebuild;
* ``_dryrun``: ``screen --dry-run``, counting the calls a run would make;
* ``_status``, ``_export``, ``_demo``: the ``status``, ``export`` and ``demo`` commands;
* ``_report``: the ``report`` command and the HTML report beside ``screen --out``;
* ``_catalog``: reading a CSV/JSONL catalog into requests, row by row;
* ``_results``: the screen's output rebuilt from the journal, and the summary's tally;
* ``_display``: progress and summary tables (rich on a terminal, plain lines else);
* ``_doctor``: ``fto-async doctor``, the setup checks (no billable task);
* ``_usage``, ``_reconcile``: ``fto-async usage`` (the call ledger) and ``--reconcile``
  (against the platform's usage statement);
* ``_budget``: ``screen --max-calls`` (when to stop taking rows) and ``--dry-run``'s
  polls per task;
* ``_common``, ``_paths``: exit codes, error lines, opening a journal; output clashes;
* ``_pipes``: a catalog on stdin (``screen -``) and outputs that are streams (``--out -``);
* ``_machine``: what a run tells machines: ``--fail-on`` (the exit code) and
  ``--summary-json``.

The records and their writers (JSONL, CSV, XLSX, HTML) are :mod:`fto_async.outputs`.
"""

from ._main import build_parser, main

__all__ = ["build_parser", "main"]
