"""Shared helpers of the reliability suites: a fast emulator and client, unique requests."""

from __future__ import annotations

from typing import Any

from fto_async import FtoClient, ImageSearchRequest, PollConfig, RetryConfig
from fto_async.emulator import Emulator, EmulatorConfig
from tests._shared import credentials

#: Emulator time factor: a 5 s submit takes 25 ms, a 30 s task 150 ms.
SCALE = 0.005


def emulator(**changes: Any) -> Emulator:
    """An emulator on 127.0.0.1 at :data:`SCALE`, seeded, without a QPS limit by default."""
    return Emulator(EmulatorConfig(**{"time_scale": SCALE, "qps": None, "seed": 11, **changes}))


def make_client(emu: Emulator, scheme: str = "oauth", **options: Any) -> FtoClient:
    """A client of the demo account: short backoff, polls at :data:`SCALE`, 200 QPS."""
    settings: dict[str, Any] = {
        "qps": 200.0,
        "timeout": 2.0,
        "retry": RetryConfig(base=0.01, cap=0.1, max_attempts=8),
        "poll": PollConfig().scaled(SCALE),
        **options,
    }
    return FtoClient(**credentials(scheme), base_url=emu.base_url, **settings)


def image_url(i: int | str, tag: str = "item") -> str:
    """The image URL of item ``i`` (the emulator's identity of the item's image)."""
    return f"https://img.example/{tag}/{i}.png"


def request(i: int | str, tag: str = "item") -> ImageSearchRequest:
    """A valid image-search request whose image is unique to ``i``."""
    return ImageSearchRequest(url=image_url(i, tag), country=["US", "CN"], lang="en")
