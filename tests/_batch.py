"""Helpers of the batch tests: an emulator and a client at a small time scale, requests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fto_async import FtoClient, ImageSearchRequest, PollConfig, RetryConfig, WorkflowRequest
from fto_async.emulator import Emulator, EmulatorConfig
from tests._shared import credentials

SCALE = 0.005  # 5 s submits take 25 ms, 30 s tasks 150 ms


def emulator(**changes: Any) -> Emulator:
    """An emulator at SCALE, without a QPS limit unless ``qps`` is given."""
    return Emulator(EmulatorConfig(**{"time_scale": SCALE, "qps": None, **changes}))


def make_client(emu: Emulator, **options: Any) -> FtoClient:
    """A client of the demo account, polling at SCALE, with a generous QPS by default."""
    settings_: dict[str, Any] = {
        "qps": 1000.0,
        "timeout": 10.0,
        "retry": RetryConfig.for_testing(),
        "poll": PollConfig(initial_estimate=20.0).scaled(SCALE),  # tests sized for 20 s
        **options,
    }
    return FtoClient(**credentials("oauth"), base_url=emu.base_url, **settings_)


@asynccontextmanager
async def running(**emu_changes: Any) -> AsyncIterator[tuple[Emulator, FtoClient]]:
    """A started emulator and an open client pointing at it."""
    async with emulator(**emu_changes) as emu, make_client(emu) as client:
        yield emu, client


def image(i: int | str) -> ImageSearchRequest:
    return ImageSearchRequest(url=f"https://img.example/{i}.png", country=["US"], lang="en")


def workflow(i: int | str) -> WorkflowRequest:
    return WorkflowRequest(url=f"https://img.example/wf-{i}.png", country=["US", "CN"])


def refused_image(i: int | str) -> ImageSearchRequest:
    """A request that passes our checks only because we forced a field: the platform refuses it."""
    request = image(i)
    object.__setattr__(request, "lang", "xx")
    return request


def refused_workflow(i: int | str) -> WorkflowRequest:
    """A workflow request the platform answers with HTTP 422."""
    request = workflow(i)
    object.__setattr__(request, "simple_legal_status", "7")
    return request
