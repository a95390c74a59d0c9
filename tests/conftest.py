"""Fixtures for every test: nothing writes to the real user cache folder."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _private_cache_home(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
                        ) -> Path:
    """XDG_CACHE_HOME (and so the CLI's default report cache) points at a temporary folder;
    subprocesses inherit it through the environment."""
    home = tmp_path_factory.mktemp("xdg-cache")
    monkeypatch.setenv("XDG_CACHE_HOME", str(home))
    return home
