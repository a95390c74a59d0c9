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


def _suite(folder: Path, modules: int) -> None:
    """``modules`` test modules, a conftest and a helper pytest does not rewrite."""
    names = [f"test_{n:02d}.py" for n in range(modules)] + ["conftest.py"]
    for name in names:
        (folder / name).write_text(f"def test_x():\n    assert {name!r} == 'no'\n")
    (folder / "helper.py").write_text("X = 1\n")


def _cached_as_pytest_would(module: Path, config: pytest.Config) -> bool:
    from _pytest.assertion.rewrite import _read_pyc, _rewrite_test

    pyc = _rewrite_cache.pyc_path(module)
    assert pyc is not None
    cached = _read_pyc(module, pyc)
    return cached is not None and cached == _rewrite_test(module, config)[1]


@pytest.mark.parametrize("modules", [3, 20], ids=["alone", "with-a-child"])
def test_the_controller_rewrites_each_test_module_once_as_pytest_would(
        tmp_path: Path, pytestconfig: pytest.Config, modules: int) -> None:
    """The cache the xdist controller fills (tests/_rewrite_cache.py) is the one pytest
    reads: after ``warm``, no module is stale, and each cached code object is the one
    pytest's own rewrite makes (with many modules, half of them written by a child
    process)."""
    _suite(tmp_path, modules)
    found = _rewrite_cache.rewritten_modules(pytestconfig, [tmp_path, tmp_path])
    assert [m.name for m in found] == sorted(
        ["conftest.py", *(f"test_{n:02d}.py" for n in range(modules))])
    assert _rewrite_cache.stale(found) == found
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sys, "dont_write_bytecode", False)
        assert _rewrite_cache.warm(pytestconfig, found) == modules + 1
        assert _rewrite_cache.warm(pytestconfig, found) == 0  # nothing left to do
    assert _rewrite_cache.stale(found) == []
    assert all(_cached_as_pytest_would(module, pytestconfig) for module in found)


def test_a_pycache_prefix_is_honoured_by_the_child_too(tmp_path: Path,
                                                      pytestconfig: pytest.Config) -> None:
    """Under ``PYTHONPYCACHEPREFIX`` the cache lies deep under the prefix: its folders are
    made, and the child writes there too."""
    suite = tmp_path / "suite"
    suite.mkdir()
    _suite(suite, 20)
    found = _rewrite_cache.rewritten_modules(pytestconfig, [suite])
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sys, "dont_write_bytecode", False)
        mp.setattr(sys, "pycache_prefix", str(tmp_path / "prefix"))
        assert _rewrite_cache.warm(pytestconfig, found) == 21
        assert _rewrite_cache.stale(found) == []
        assert all(str(_rewrite_cache.pyc_path(m)).startswith(str(tmp_path / "prefix"))
                   for m in found)
    assert not (suite / "__pycache__").exists()


def test_nothing_is_written_where_pytest_would_not_write(tmp_path: Path,
                                                         pytestconfig: pytest.Config) -> None:
    """No cache without bytecode, nor where the cache folder cannot be made (a file stands
    in its place), nor for a module that does not compile (its worker's import reports
    it); none of them stops the others."""
    _suite(tmp_path, 2)
    found = _rewrite_cache.rewritten_modules(pytestconfig, [tmp_path])
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sys, "dont_write_bytecode", True)
        assert _rewrite_cache.warm(pytestconfig, found) == 0
    assert not (tmp_path / "__pycache__").exists()
    (tmp_path / "test_00.py").write_text("def test_x(:\n")
    blocked = tmp_path / "blocked"
    blocked.mkdir()
    (blocked / "test_b.py").write_text("def test_b():\n    assert True\n")
    (blocked / "__pycache__").write_text("not a folder")
    found += _rewrite_cache.rewritten_modules(pytestconfig, [blocked])
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sys, "dont_write_bytecode", False)
        assert _rewrite_cache.warm(pytestconfig, found) == 2  # conftest.py, test_01.py
    assert [m.name for m in _rewrite_cache.stale(found)] == ["test_00.py", "test_b.py"]
