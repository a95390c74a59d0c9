"""benchmarks/mutation.py names the files it mutates and the tests that judge them: each
must exist (a missing test path makes every mutant of its module 'survive' or fail to run,
and nobody sees it until the next mutation run)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_every_module_and_test_the_mutation_script_names_exists() -> None:
    spec = importlib.util.spec_from_file_location("mutation", ROOT / "benchmarks" / "mutation.py")
    assert spec is not None
    assert spec.loader is not None
    mutation = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mutation)
    assert mutation.MODULES
    for name, (sources, tests) in mutation.MODULES.items():
        assert sources, name
        assert tests, name
        missing = [p for p in (*sources, *tests) if not (ROOT / p).exists()]
        assert not missing, f"{name}: {missing}"
