"""A process that takes a question's lease and then hangs mid-submit (to be SIGKILLed).

``python tests/redis/_lease_holder.py REDIS_URL FINGERPRINT PLATFORM ACCOUNT LEASE_TTL``
prints ``holding`` once it holds the lease.
"""

from __future__ import annotations

import asyncio
import sys

from fto_async import RedisReportCache


async def main(url: str, fingerprint: str, platform: str, account: str, ttl: str) -> None:
    cache = RedisReportCache(url, lease_ttl=float(ttl))

    async def hang() -> str:
        print("holding", flush=True)  # the test reads it
        await asyncio.Event().wait()  # never returns: the submit is "in flight"
        return "never"

    await cache.submit_once(fingerprint, "image_search", hang, platform=platform,
                            account=account)  # fmt: skip


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:6]))
