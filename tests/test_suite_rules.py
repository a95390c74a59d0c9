"""The suite's own rules (tests/conftest.py), checked the way CI runs them."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import coverage
import pytest

from tests import _rewrite_cache


@pytest.mark.untraced
def test_an_untraced_test_runs_with_no_tracer() -> None:
    """The ``untraced`` marker pauses every coverage measurement in the process: under
    xdist a worker is measured twice (pytest-cov's and coverage's subprocess patch), and
    pausing only the newest left the other one tracing."""
    assert coverage.Coverage.current() is None
    assert sys.gettrace() is None
    assert "COVERAGE_PROCESS_CONFIG" not in os.environ  # nor the processes it starts


def test_a_traced_test_is_measured(request: pytest.FixtureRequest) -> None:
    """Outside the marker, a run that measures coverage traces the test (after an untraced
    test on the same worker too: the measurements are started again)."""
    measuring = request.config.pluginmanager.hasplugin("_cov") and not request.config.getoption(
        "no_cov", default=True)
    if not measuring:  # --no-cov: nothing to resume (no skip: CI=true fails skips)
        return
    assert coverage.Coverage.current() is not None
    assert sys.gettrace() is not None


def test_the_controller_rewrites_each_test_module_once_as_pytest_would(
        tmp_path: Path, pytestconfig: pytest.Config) -> None:
    """The cache the xdist controller fills (tests/_rewrite_cache.py) is the one pytest
    reads: after ``warm``, no module is stale, and each cached code object is the one
    pytest's own rewrite makes (half of them written by the forked child)."""
    from _pytest.assertion.rewrite import _read_pyc, _rewrite_test

    for name in ("test_a.py", "test_b.py", "conftest.py", "test_c.py"):
        (tmp_path / name).write_text(f"def test_x():\n    assert {name!r} == 'no'\n")
    (tmp_path / "helper.py").write_text("X = 1\n")  # not rewritten by pytest
    modules = _rewrite_cache.test_modules(pytestconfig, [tmp_path])
    assert [m.name for m in modules] == ["conftest.py", "test_a.py", "test_b.py", "test_c.py"]
    assert _rewrite_cache.stale(modules) == modules

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sys, "dont_write_bytecode", False)
        assert _rewrite_cache.warm(pytestconfig, modules) == 4
        assert _rewrite_cache.warm(pytestconfig, modules) == 0  # nothing left to do
    assert _rewrite_cache.stale(modules) == []
    for module in modules:
        pyc = _rewrite_cache.pyc_path(module)
        assert pyc is not None
        cached = _read_pyc(module, pyc)
        assert cached is not None
        assert cached == _rewrite_test(module, pytestconfig)[1]


def test_no_cache_is_written_where_bytecode_is_not(tmp_path: Path,
                                                   pytestconfig: pytest.Config) -> None:
    (tmp_path / "test_a.py").write_text("def test_x():\n    assert 1\n")
    modules = _rewrite_cache.test_modules(pytestconfig, [tmp_path])
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sys, "dont_write_bytecode", True)
        assert _rewrite_cache.warm(pytestconfig, modules) == 0
    assert not (tmp_path / "__pycache__").exists()
