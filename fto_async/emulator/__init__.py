"""A local emulator of the PatSnap open platform's design-patent FTO endpoints.

It is the SDK's contract with the real service, written from ``reference/patsnap-api.md``:
OAuth and ``sk-`` key authentication, the gateway's quotas and per-account QPS window, the
image-search and workflow task endpoints with deterministic reports, the image upload, and
seeded fault injection. It imports nothing from the rest of ``fto_async``.

Example::

    from fto_async.emulator import Emulator, EmulatorConfig

    async with Emulator(EmulatorConfig(time_scale=0.01, busy_rate=0.05)) as emu:
        async with aiohttp.ClientSession() as session:
            await session.post(f"{emu.base_url}/ai/image-search/submit?apikey=sk-demo", json=...)
        print(emu.stats.snapshot())

From a shell: ``python -m fto_async.emulator --port 8765 --time-scale 0.1``.
"""

from ._app import create_app
from ._cli import main
from ._config import EmulatorConfig
from ._server import Emulator
from ._stats import EmulatorStats

__all__ = ["Emulator", "EmulatorConfig", "EmulatorStats", "create_app", "main"]

for _name in __all__:
    globals()[_name].__module__ = __name__
del _name
