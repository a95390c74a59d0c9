"""Mutation testing of the critical rule modules, with mutmut: the score per module.

Each module is mutated alone, in a scratch copy of the project (the worktree is never
touched), and its mutants are run against a FAST targeted selection of tests, not the
whole suite. The base options are ``[tool.mutmut]`` in pyproject.toml; this script adds
``only_mutate`` and the test selection per module. Too slow for every CI run: run it
after changing a rule, and record the scores (docs' reliability page, issue notes).

    python benchmarks/mutation.py                      # the default modules
    python benchmarks/mutation.py fingerprint cells    # some of them
    python benchmarks/mutation.py journal --only '*_Journal_mark_*'   # a subset of mutants
    python benchmarks/mutation.py --list

Prints, per module: the score (killed and timed out over killed, timed out and
survived), the count of each verdict (``not checked``: left out by ``--only``) and the
surviving mutants' names (``mutmut show NAME`` in the printed scratch folder shows the
diff). ``-j`` bounds the worker processes (default
2: the machine is shared).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

#: module -> (source file, the tests that judge it). Keep each selection fast (seconds).
MODULES: dict[str, tuple[str, list[str]]] = {
    "fingerprint": ("fto_async/fingerprint.py",
                    ["tests/test_fingerprint.py", "tests/test_mutants.py"]),
    "cells": ("fto_async/_cells.py", ["tests/outputs/test_exports.py"]),
    "errors": ("fto_async/errors.py", ["tests/test_errors.py", "tests/test_mutants.py"]),
    "cache": ("fto_async/cache.py", ["tests/test_cache.py"]),
    "journal": ("fto_async/journal.py",
                ["tests/test_journal.py", "tests/test_journal_follow_ups.py",
                 "tests/test_mutants.py"]),
    "ratelimit": ("fto_async/ratelimit.py",
                  ["tests/test_ratelimit.py", "tests/test_ratelimit_budget.py"]),
    "redisgate": ("fto_async/redisgate.py",
                  ["tests/redis/test_gate.py", "tests/redis/test_budget.py",
                   "tests/redis/test_clock.py"]),
}  # fmt: skip
DEFAULT = ["fingerprint", "cells", "errors"]


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(value)


def _scratch(module: str, only: list[str]) -> Path:
    """A copy of the project whose [tool.mutmut] mutates ``module`` alone."""
    source, tests = MODULES[module]
    work = Path(tempfile.mkdtemp(prefix=f"mutation-{module}-"))
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "mutants")
    shutil.copytree(ROOT / "fto_async", work / "fto_async", ignore=ignore)
    shutil.copytree(ROOT / "tests", work / "tests", ignore=ignore)
    text = (ROOT / "pyproject.toml").read_text("utf-8")
    options = dict(tomllib.loads(text)["tool"]["mutmut"])
    options["only_mutate"] = [source]
    options["pytest_add_cli_args_test_selection"] = tests
    table = "[tool.mutmut]\n" + "".join(f"{k} = {_toml_value(v)}\n" for k, v in options.items())
    text = re.sub(r"(?ms)^\[tool\.mutmut\]\n.*?(?=^\[|\Z)", "", text) + "\n" + table
    (work / "pyproject.toml").write_text(text, "utf-8")
    return work


def run(module: str, jobs: int, only: list[str]) -> dict[str, Any]:
    work = _scratch(module, only)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "CI")}
    mutmut = [sys.executable, "-m", "mutmut"]
    started = time.monotonic()
    subprocess.run([*mutmut, "run", "--max-children", str(jobs), *only], cwd=work, env=env,
                   stdout=subprocess.DEVNULL, check=False)  # fmt: skip
    took = time.monotonic() - started
    listing = subprocess.run([*mutmut, "results", "--all", "true"], cwd=work, env=env,
                             capture_output=True, text=True, check=True).stdout  # fmt: skip
    status: dict[str, str] = {}
    for line in listing.splitlines():
        name, _, verdict = line.strip().rpartition(": ")
        if name:
            status[name] = verdict
    counts = {v: list(status.values()).count(v) for v in set(status.values())}
    caught = counts.get("killed", 0) + counts.get("timeout", 0)
    tested = caught + counts.get("survived", 0)
    return {"module": module, "seconds": round(took), "work": str(work), "counts": counts,
            "score": caught / tested if tested else float("nan"),
            "survivors": [n for n, v in status.items() if v == "survived"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("modules", nargs="*", help=f"default: {' '.join(DEFAULT)}")
    parser.add_argument("-j", "--jobs", type=int, default=2)
    parser.add_argument("--only", action="append", default=[], metavar="GLOB",
                        help="run only the mutants whose names match (mutmut globs)")
    parser.add_argument("--list", action="store_true", help="list the modules and exit")
    args = parser.parse_args()
    if args.list:
        for name, (source, tests) in MODULES.items():
            print(f"{name:12} {source:28} {' '.join(tests)}")
        return
    unknown = [m for m in args.modules if m not in MODULES]
    if unknown:
        parser.error(f"unknown module(s) {unknown}: choose from {sorted(MODULES)}")
    for module in args.modules or DEFAULT:
        r = run(module, args.jobs, args.only)
        counts = ", ".join(f"{k} {v}" for k, v in sorted(r["counts"].items()))
        print(f"{r['module']:12} score {r['score']:6.1%}  ({counts}; {r['seconds']} s, "
              f"{r['work']})", flush=True)
        for name in r["survivors"]:
            print(f"    survived: {name}")


if __name__ == "__main__":
    main()
