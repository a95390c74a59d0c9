"""The suite's own rules (tests/conftest.py), checked the way CI runs them."""

from __future__ import annotations

import os
import sys

import coverage
import pytest


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
