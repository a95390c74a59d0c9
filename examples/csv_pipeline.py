"""A data-pipeline step in plain Python: a CSV of products in, a CSV of results out.

Each input row has ``sku`` and ``image_url`` (or ``image_path``, a local file uploaded
only when it must be screened); each output row is ``Outcome.to_record()``, the same
fields as the CLI's CSV/JSONL rows, without the raw report. The user code is the five
lines of :func:`screen_rows`; with pandas it is the same with
``df.to_dict("records")`` in and ``pandas.DataFrame(records)`` out.

Try it against the local emulator::

    fto-async emulator --port 8765 --time-scale 0.05
    PATSNAP_BASE_URL=http://127.0.0.1:8765 PATSNAP_API_KEY=sk-demo \\
        python examples/csv_pipeline.py examples/catalog.csv results.csv --time-scale 0.05
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
from pathlib import Path
from typing import Any

from fto_async import FtoClient, ImageSearchRequest, Item, PollConfig

COLUMNS = ("key", "status", "highest_risk", "high_risk_countries", "task_id", "error")


def item(row: dict[str, str]) -> Item:
    country = (row.get("country") or "US").split(",")
    if row.get("image_path"):
        return Item.from_path(row["sku"], row["image_path"], country=country, lang="en")
    return Item(row["sku"], ImageSearchRequest(url=row["image_url"], country=country, lang="en"))


async def screen_rows(client: FtoClient, rows: list[dict[str, str]]) -> list[dict[str, Any]]:
    """Rows in, flat records out (in completion order)."""
    return [o.to_record() async for o in client.screen_many(item(r) for r in rows)]


async def main(src: Path, dst: Path, time_scale: float) -> None:
    with src.open(newline="", encoding="utf-8") as handle:
        rows = [r for r in csv.DictReader(handle) if r.get("image_url") or r.get("image_path")]
    async with FtoClient(poll=PollConfig().scaled(time_scale)) as client:  # PATSNAP_*
        records = await screen_rows(client, rows)
    with dst.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for record in records:
            countries = json.dumps(record["high_risk_countries"])
            writer.writerow({**record, "high_risk_countries": countries})


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("src", type=Path)
    parser.add_argument("dst", type=Path)
    parser.add_argument("--time-scale", type=float, default=1.0)
    args = parser.parse_args()
    asyncio.run(main(args.src, args.dst, args.time_scale))
