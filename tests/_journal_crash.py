"""Write journal items until killed (helper for tests/test_journal.py).

Usage: ``python tests/_journal_crash.py DBPATH [MAX_ITEMS]``. Fifty workers take items
through pending -> submitting -> submitted -> done and print each key to stdout right
after its ``mark_submitted`` returns, i.e. once the journal has acknowledged it.
"""

from __future__ import annotations

import asyncio
import sys

from fto_async.journal import Journal

WORKERS = 50


async def main(path: str, max_items: int) -> None:
    async with await Journal.open(path) as journal:

        async def worker(first: int) -> None:
            for n in range(first, max_items, WORKERS):
                key = f"k{n:07d}"
                await journal.add_pending(
                    key, n, {"n": n, "url": f"https://e.test/{n}"}, "workflow"
                )
                await journal.mark_submitting(key)
                await asyncio.sleep(0)  # the "submit call"
                await journal.mark_submitted(key, f"t-{key}")
                sys.stdout.write(f"{key}\n")
                sys.stdout.flush()
                await journal.mark_done(key, {"n": n, "risk": "low"})

        await asyncio.gather(*(worker(w) for w in range(WORKERS)))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 1_000_000))
