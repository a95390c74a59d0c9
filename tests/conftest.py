"""Fixtures for every test: nothing writes to the real user cache folder; a refused port;
the CLI tests' fast emulator (``emu``) and the ``PATSNAP_*`` variables aimed at it (``env``).

Tests marked ``untraced`` run with coverage's tracer paused, and so do the processes they
start (fuzzing, fault storms and long replays: they are judged by what they find, not by
which lines run, and the tracer made them 1.5-3x slower); every line they reach is also
reached by a traced test (docs/development.md says how to check). The collection runs
untraced too, once the package is imported while measured.

Under ``CI=true`` (``.ci/run`` sets it) a skipped test fails the run with its reason: a
test that cannot run there means a tool CI should have installed is missing. The only
exceptions are the node ids in :data:`CI_ALLOWED_SKIPS` (empty: none is allowed).
"""

from __future__ import annotations

import contextlib
import importlib
import os
import pkgutil
from collections.abc import AsyncIterator, Generator
from pathlib import Path

import coverage
import pytest

from fto_async.emulator import Emulator, EmulatorConfig
from tests import _rewrite_cache
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


def _pause_coverage() -> list[coverage.Coverage]:
    """Stop every coverage measurement in this process; return them, newest first.

    Every one, not only the newest: an xdist worker is a subprocess, so coverage's
    subprocess patch measures it too, and stopping pytest-cov's measurement alone resumed
    that one (the tracer stayed on)."""
    paused: list[coverage.Coverage] = []
    while (cov := coverage.Coverage.current()) is not None:
        cov.stop()
        paused.append(cov)
    return paused


def _resume_coverage(paused: list[coverage.Coverage]) -> None:
    for cov in reversed(paused):
        cov.start()


@pytest.hookimpl(tryfirst=True)
def pytest_sessionstart(session: pytest.Session) -> None:
    """In the xdist controller, before the workers start: rewrite the test modules'
    asserts once, into pytest's cache, instead of once in every worker
    (tests/_rewrite_cache.py). Only for a run of whole folders (the README's command)."""
    config = session.config
    if hasattr(config, "workerinput") or not getattr(config.option, "numprocesses", None):
        return
    folders = [(config.invocation_params.dir / arg).resolve() for arg in config.args]
    if not all(folder.is_dir() for folder in folders):
        return
    tests = _rewrite_cache.TESTS  # never a folder outside the suite's (a venv, say)
    roots = {folder if folder.is_relative_to(tests) else tests for folder in folders
             if folder.is_relative_to(tests) or tests.is_relative_to(folder)}
    paused = _pause_coverage()
    try:
        _rewrite_cache.warm(config, _rewrite_cache.rewritten_modules(config, roots))
    finally:
        _resume_coverage(paused)


@pytest.hookimpl(hookwrapper=True)
def pytest_collection(session: pytest.Session) -> Generator[None, None, None]:
    """Collect with coverage paused, once every module of the package is imported while
    measured (so their module-level lines count as they would in any test). Collection
    runs no test: tracing it only doubled the cost of rewriting the test modules'
    asserts, in every xdist worker."""
    if coverage.Coverage.current() is None:
        yield
        return
    import fto_async

    for module in pkgutil.walk_packages(fto_async.__path__, "fto_async."):
        if not module.name.endswith("__main__"):
            with contextlib.suppress(ImportError):  # an optional extra not installed
                importlib.import_module(module.name)
    paused = _pause_coverage()
    try:
        yield
    finally:
        _resume_coverage(paused)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    """Pause coverage around an ``untraced`` test (pytest-cov's own ``no_cover`` marker
    breaks ``--no-cov`` runs)."""
    if not item.get_closest_marker("untraced"):
        yield
        return
    paused = _pause_coverage()
    # The processes it starts are not measured either (coverage's subprocess patch
    # measures a Python process that finds this variable in its environment).
    process_config = os.environ.pop("COVERAGE_PROCESS_CONFIG", None)
    try:
        yield
    finally:
        if process_config is not None:
            os.environ["COVERAGE_PROCESS_CONFIG"] = process_config
        _resume_coverage(paused)


@pytest.fixture(autouse=True)
def _private_cache_home(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
                        ) -> Path:
    """XDG_CACHE_HOME (and so the CLI's default report cache) points at a temporary folder;
    subprocesses inherit it through the environment."""
    home = tmp_path_factory.mktemp("xdg-cache")
    monkeypatch.setenv("XDG_CACHE_HOME", str(home))
    return home


@pytest.fixture
async def emu() -> AsyncIterator[Emulator]:
    """An emulator 1000x faster than real time, without a QPS limit."""
    async with Emulator(EmulatorConfig(time_scale=0.001, qps=None)) as emulator:
        yield emulator


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, emu: Emulator) -> None:
    """PATSNAP_* variables pointing at the emulator's demo account."""
    for name in ("PATSNAP_CLIENT_ID", "PATSNAP_CLIENT_SECRET"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PATSNAP_API_KEY", "sk-demo")
    monkeypatch.setenv("PATSNAP_BASE_URL", emu.base_url)
    monkeypatch.setenv("PATSNAP_QPS", "500")
