"""Fixtures for every test: nothing writes to the real user cache folder; a refused port.

Under ``CI=true`` (``.ci/run`` sets it) a skipped test fails the run with its reason: a
test that cannot run there means a tool CI should have installed is missing. The only
exceptions are the node ids in :data:`CI_ALLOWED_SKIPS` (empty: none is allowed).
"""

from __future__ import annotations

import os
from collections.abc import Generator
from pathlib import Path

import pytest

from tests._ports import refused_port  # noqa: F401 - a fixture for every test

#: Node ids that may skip under CI=true, each with a reason in a comment. Keep it empty.
CI_ALLOWED_SKIPS: frozenset[str] = frozenset()


def _under_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, None]:
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    if (report.skipped and _under_ci() and not hasattr(report, "wasxfail")
            and item.nodeid not in CI_ALLOWED_SKIPS):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"skipped under CI=true, which allows no skip: {reason}"


@pytest.fixture(autouse=True)
def _private_cache_home(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
                        ) -> Path:
    """XDG_CACHE_HOME (and so the CLI's default report cache) points at a temporary folder;
    subprocesses inherit it through the environment."""
    home = tmp_path_factory.mktemp("xdg-cache")
    monkeypatch.setenv("XDG_CACHE_HOME", str(home))
    return home
