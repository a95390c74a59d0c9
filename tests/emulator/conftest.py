"""Fixtures for the emulator tests: a fast emulator and a client session."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from fto_async.emulator import Emulator

from ._helpers import fast


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    """A client session, closed after the test."""
    async with aiohttp.ClientSession() as client:
        yield client


@pytest.fixture
async def emu() -> AsyncIterator[Emulator]:
    """An emulator 1000x faster than real time, without a QPS limit."""
    async with Emulator(fast()) as emulator:
        yield emulator
