"""A pandas step: a DataFrame of products in, a DataFrame of screening results out.

Each product row has ``sku``, ``image_url`` or ``image_path`` (a local JPG/PNG, uploaded
only if it must be screened, once per content), and optionally ``country`` (``"US,EU"``).
The result has the product's columns plus the flat record of its outcome
(``Outcome.to_record()``: ``status``, ``highest_risk``, ``high_risk_countries``,
``task_id``, ``error``, ... the fields of the CLI's CSV/JSONL rows, without the raw
report), in the input's order. A row our checks refuse gets ``status`` ``invalid`` and
its reason, with no call. The user code is the five lines of :func:`screen_frame`.

Try it against the local emulator (needs ``pip install pandas``)::

    fto-async emulator --port 8765 --time-scale 0.05
    PATSNAP_BASE_URL=http://127.0.0.1:8765 PATSNAP_API_KEY=sk-demo \\
        python examples/pandas_pipeline.py examples/catalog.csv results.csv --time-scale 0.05
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from fto_async import FtoClient, ImageSearchRequest, InvalidRequestError, Item, PollConfig


async def screen_frame(client: FtoClient, products: pd.DataFrame) -> pd.DataFrame:
    """Products in, one result row per product out (the input's order and columns kept)."""
    rows = products.to_dict("records")
    records = [r async for r in screen_records(client, rows)]
    results = pd.DataFrame.from_records(records).drop(columns=["report", "line"], errors="ignore")
    return products.merge(results, left_on="sku", right_on="key", how="left").drop(columns="key")


# -- the glue the five lines above stand on ----------------------------------------------


def item(row: dict[str, Any]) -> Item:
    """A product row as an :class:`~fto_async.Item` (raises InvalidRequestError)."""
    country = str(row.get("country") or "US").split(",")  # pandas: a missing cell is NaN
    path = row.get("image_path")
    if isinstance(path, str) and path:
        return Item.from_path(row["sku"], path, country=country, lang="en")
    return Item(row["sku"], ImageSearchRequest(url=row.get("image_url"), country=country,
                                               lang="en"))  # fmt: skip


async def screen_records(
    client: FtoClient, rows: Iterable[dict[str, Any]]
) -> AsyncIterator[dict[str, Any]]:
    """``Outcome.to_record()`` per row (completion order); refused rows as ``invalid``."""
    invalid: list[dict[str, Any]] = []

    def items() -> Iterable[Item]:
        for row in rows:
            try:
                yield item(row)
            except InvalidRequestError as exc:
                invalid.append({"key": row["sku"], "status": "invalid", "error": str(exc)})

    async for outcome in client.screen_many(items()):
        yield outcome.to_record()
    for record in invalid:
        yield record


async def main(src: Path, dst: Path, time_scale: float = 1.0) -> pd.DataFrame:
    products = pd.read_csv(src, dtype=str)
    async with FtoClient(poll=PollConfig().scaled(time_scale)) as client:  # PATSNAP_*
        results = await screen_frame(client, products)
    results.to_csv(dst, index=False)
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("src", type=Path)
    parser.add_argument("dst", type=Path)
    parser.add_argument("--time-scale", type=float, default=1.0)
    args = parser.parse_args()
    asyncio.run(main(args.src, args.dst, args.time_scale))
