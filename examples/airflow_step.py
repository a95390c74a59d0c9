"""An Airflow-style task step that shells out to the ``fto-async`` command line.

:func:`screen_step` runs ``fto-async screen CATALOG --out OUT --fail-on ...
--summary-json ...`` and turns its exit code into what an orchestrator needs:

* ``0``: return the run's summary (a dict: Airflow pushes it to XCom);
* ``1``: rows failed as ``--fail-on`` counts them: raise :class:`StepFailed`, not worth
  retrying (the rows need a look, or ``--retry-failed``);
* ``3`` (fatal: quota, credentials, unreachable), ``4`` (the ``--max-calls`` budget is
  spent), ``130`` (interrupted): raise :class:`StepFailed` with ``retry=True``. Retrying
  the same command resumes from the journal beside ``OUT``: nothing is paid twice;
* ``2``: a usage, catalog or configuration error: :class:`StepFailed`, no retry.

The default ``fail_on="failed"`` lets invalid catalog rows through (they are counted in
the summary's ``status.invalid``) and fails the task on rows that were sent and failed
or left unfinished. In a DAG::

    from airflow.decorators import task

    @task(retries=3, retry_delay=timedelta(minutes=30))
    def screen_products(ds=None):
        return screen_step(f"/data/catalog-{ds}.csv", f"/data/fto-{ds}.jsonl")

Try it against the local emulator::

    fto-async emulator --port 8765 --time-scale 0.05
    PATSNAP_BASE_URL=http://127.0.0.1:8765 PATSNAP_API_KEY=sk-demo \\
        python examples/airflow_step.py examples/catalog.csv /tmp/fto.jsonl --time-scale 0.05
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

#: How to run the command line (this interpreter's fto_async; "fto-async" works too).
COMMAND = (sys.executable, "-m", "fto_async.cli")
#: Exit codes worth a retry of the same command: it resumes from the journal.
RETRYABLE = {3: "fatal platform error", 4: "call budget spent", 130: "interrupted"}


class StepFailed(RuntimeError):
    """The step failed; ``retry`` says whether running it again can help."""

    def __init__(self, message: str, *, code: int, retry: bool,
                 summary: dict[str, Any] | None) -> None:  # fmt: skip
        super().__init__(message)
        self.code = code
        self.retry = retry
        self.summary = summary


def screen_step(
    catalog: str | Path,
    out: str | Path,
    *,
    fail_on: str = "failed",
    extra: Sequence[str] = (),
    command: Sequence[str] = COMMAND,
    timeout: float | None = None,
) -> dict[str, Any]:
    """Screen ``catalog`` into ``out``; return the run's summary or raise StepFailed."""
    with tempfile.TemporaryDirectory(prefix="fto-step-") as folder:
        summary_path = Path(folder) / "summary.json"
        argv = [*command, "screen", str(catalog), "--out", str(out), "--fail-on", fail_on,
                "--summary-json", str(summary_path), "--no-report", *extra]  # fmt: skip
        proc = subprocess.run(  # noqa: S603 - an argument list, no shell
            argv, capture_output=True, text=True, timeout=timeout, check=False)
        summary = (json.loads(summary_path.read_text(encoding="utf-8"))
                   if summary_path.exists() else None)  # fmt: skip
    code = proc.returncode
    if code == 0 and summary is not None:
        return summary
    last = (proc.stderr.strip().splitlines() or [""])[-1]
    if code == 1:
        status = summary["status"] if summary else {}
        raise StepFailed(f"rows failed (--fail-on {fail_on}): {status}", code=code,
                         retry=False, summary=summary)  # fmt: skip
    if code in RETRYABLE:
        raise StepFailed(f"{RETRYABLE[code]} (exit {code}): {last}", code=code, retry=True,
                         summary=summary)  # fmt: skip
    raise StepFailed(f"fto-async exited {code}: {last}", code=code, retry=False,
                     summary=summary)  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("catalog", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--fail-on", default="failed", choices=("invalid", "failed", "never"))
    parser.add_argument("--time-scale", default="1")
    args = parser.parse_args()
    try:
        result = screen_step(args.catalog, args.out, fail_on=args.fail_on,
                             extra=["--time-scale", args.time_scale])  # fmt: skip
    except StepFailed as exc:
        sys.exit(f"step failed ({'retry' if exc.retry else 'no retry'}): {exc}")
    print(json.dumps(result, indent=2))
