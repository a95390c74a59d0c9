"""``fto-async demo``: screen a sample catalog on a local emulator. Strictly private."""

from __future__ import annotations

import argparse
import asyncio
import csv
import io
import sys
import tempfile
from importlib import resources
from pathlib import Path

from ..batch import FollowUp
from ..client import FtoClient
from ..config import PollConfig
from ..models import RiskLevel
from ._catalog import Catalog, check_defaults
from ._common import EXIT_OK, EXIT_ROWS
from ._job import Job
from ._report import html_path
from ._screen import run_screen

__all__ = ["cmd_demo"]


def _demo_catalog(folder: Path, rows: int | None) -> Path:
    """Write the bundled sample catalog (first ``rows`` rows, repeated if more) to ``folder``."""
    text = resources.files("fto_async").joinpath("data/sample_catalog.csv").read_text("utf-8")
    reader = csv.DictReader(io.StringIO(text))
    sample = list(reader)
    wanted = len(sample) if rows is None else max(1, rows)
    path = folder / "catalog.csv"
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=reader.fieldnames or [])
        writer.writeheader()
        for n in range(wanted):
            row = dict(sample[n % len(sample)])
            copy = n // len(sample)
            if copy:
                row["sku"] = f"{row['sku']}-{copy + 1}"
                row["image_url"] = f"{row['image_url']}?copy={copy + 1}" if row["image_url"] else ""
            writer.writerow(row)
    return path


def cmd_demo(args: argparse.Namespace) -> int:
    from ..emulator import Emulator, EmulatorConfig

    scale = args.time_scale
    folder = Path(tempfile.mkdtemp(prefix="fto-async-demo-"))
    catalog = Catalog(_demo_catalog(folder, args.rows), check_defaults("US", "en", None, None,
                                                                        False))  # fmt: skip
    out = folder / "results.jsonl"
    job = Job(catalog, catalog.scan(), out, folder / "results.jsonl.journal.db",
              resume="fto-async demo (a demo does not resume; it starts afresh)",
              follow_up=FollowUp(min_risk=RiskLevel.HIGH, top=1),
              cache=folder / "reports.cache.db")  # fmt: skip  # never the user's cache
    config = EmulatorConfig(time_scale=scale, qps=20, fail_rate=0.05, task_duration_sigma=0.4,
                            seed=7)  # fmt: skip

    async def demo() -> int:
        async with Emulator(config) as emu:
            sys.stderr.write(f"fto-async demo: emulator at {emu.base_url} (time scale {scale}), "
                             f"{job.total} catalog rows\n")  # fmt: skip
            return await run_screen(job, lambda: FtoClient(
                api_key="sk-demo", base_url=emu.base_url, qps=20,
                poll=PollConfig().scaled(scale),
            ))  # fmt: skip

    code = asyncio.run(demo())
    sys.stdout.write(f"\nDemo files in {folder}:\n  catalog  {catalog.path}\n  results  {out}\n"
                     f"  journal  {job.journal}\n  report   {html_path(out)}\n"
                     f"Try: fto-async status {job.journal}\n\n"
                     f"open the report: {html_path(out)}\n"
                     f"to screen your own catalog: copy {catalog.path} and run\n"
                     f"  export PATSNAP_API_KEY=sk-...   # or PATSNAP_CLIENT_ID and "
                     f"PATSNAP_CLIENT_SECRET\n"
                     f"  fto-async screen catalog.csv --out results.jsonl --country US\n")
    return EXIT_OK if code in (EXIT_OK, EXIT_ROWS) else code  # failed rows are part of the show
