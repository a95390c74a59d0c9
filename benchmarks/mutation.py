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

#: module -> (the source files mutated, the tests that judge them). Keep each selection fast.
MODULES: dict[str, tuple[list[str], list[str]]] = {
    "fingerprint": (["fto_async/fingerprint.py"],
                    ["tests/test_fingerprint.py", "tests/test_mutants.py"]),
    "cells": (["fto_async/outputs/_cells.py"], ["tests/outputs/test_exports.py"]),
    "errors": (["fto_async/errors.py"],
               ["tests/test_errors.py", "tests/test_mutants.py", "tests/test_errors_mutants.py"]),
    "cache": (["fto_async/cache.py"],
              ["tests/test_cache.py", "tests/test_mutants.py",
               "tests/reliability/test_answer_provenance.py"]),
    "journal_rows": (["fto_async/_journal_rows.py"],
                     ["tests/test_journal.py", "tests/test_journal_follow_ups.py",
                      "tests/test_mutants.py", "tests/test_journal_mutants.py",
                      "tests/reliability/test_journal_lock.py",
                      "tests/reliability/test_readonly.py"]),
    "journal": (["fto_async/journal.py", "fto_async/_journal_follow_ups.py"],
                ["tests/test_journal.py", "tests/test_journal_follow_ups.py",
                 "tests/test_mutants.py", "tests/test_journal_mutants.py"]),
    "ratelimit": (["fto_async/ratelimit.py"],
                  ["tests/test_ratelimit.py", "tests/test_ratelimit_budget.py"]),
    "redisgate": (["fto_async/redisgate.py"],
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
    options["only_mutate"] = list(source)
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


# -- the transition table: data, which mutmut (functions only) never mutates -------------

#: The tests that judge the journal's transition table (the table-only tests first, so a
#: killed mutant stops in seconds).
TABLE_TESTS = ["tests/test_mutants.py", "tests/test_journal.py",
               "tests/test_journal_follow_ups.py", "tests/test_journal_mutants.py"]  # fmt: skip
_TABLE = re.compile(r"(?ms)^_TRANSITIONS: .*? = \{\n.*?^\}  # fmt: skip\n")


def _table_file() -> Path:
    for path in sorted((ROOT / "fto_async").rglob("*.py")):
        if _TABLE.search(path.read_text("utf-8")):
            return path
    raise SystemExit("no _TRANSITIONS table found under fto_async/")


def _table_text(table: dict[str, tuple[frozenset[Any], frozenset[Any]]]) -> str:
    def states(group: frozenset[Any]) -> str:
        names = ", ".join(f"_S.{s.name}" for s in sorted(group, key=lambda s: s.name))
        return f"frozenset({{{names}}})" if names else "frozenset()"

    lines = [f"    {write!r}: ({states(src)}, {states(dst)}),\n"
             for write, (src, dst) in table.items()]  # fmt: skip
    return ("_TRANSITIONS: dict[str, tuple[frozenset[ItemState], frozenset[ItemState]]] = {\n"
            + "".join(lines) + "}  # fmt: skip\n")


def _semantics(table: dict[str, tuple[frozenset[Any], frozenset[Any]]]) -> Any:
    """What the table decides: the states each write accepts (items), and which state
    a follow-up may go to from which (every write but ``mark_shared``)."""
    allowed = {write: src for write, (src, _) in table.items()}
    moves = frozenset((a, b) for write, (src, dst) in table.items() if write != "mark_shared"
                      for a in src for b in dst)  # fmt: skip
    return allowed, moves


def run_table() -> dict[str, Any]:
    """Plant every one-state change of the table (a state added to or removed from one
    write's sources or targets) and run the table's tests against each. A change that
    decides nothing differently (same accepted states, same follow-up moves) is
    equivalent by construction and is not run."""
    from fto_async._journal_rows import _TRANSITIONS, ItemState

    source = _table_file()
    work = _scratch("journal_rows", [])
    target = work / source.relative_to(ROOT)
    original = target.read_text("utf-8")
    base = _semantics(_TRANSITIONS)
    mutants: list[tuple[str, dict[str, Any]]] = []
    for write, (src, dst) in _TRANSITIONS.items():
        for side, group in (("from", src), ("to", dst)):
            for state in ItemState:
                sign = "-" if state in group else "+"
                changed = group - {state} if sign == "-" else group | {state}
                pair = (changed, dst) if side == "from" else (src, changed)
                mutants.append((f"{write} {side} {sign}{state}", {**_TRANSITIONS, write: pair}))
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["PYTHONPATH"] = str(work)
    status: dict[str, str] = {}
    started = time.monotonic()

    def judge(name: str, table: dict[str, Any]) -> str:
        if _semantics(table) == base:
            return "equivalent"
        text = _TABLE.sub(lambda _: _table_text(table), original)
        target.write_text(text, "utf-8")
        try:
            done = subprocess.run(
                [sys.executable, "-m", "pytest", "-x", "-q", "--no-cov", "-p", "no:cacheprovider",
                 "-n", "0", *TABLE_TESTS], cwd=work, env=env, capture_output=True, check=False,
                timeout=600)  # fmt: skip
        except subprocess.TimeoutExpired:
            return "timeout"
        finally:
            target.write_text(original, "utf-8")
        return "survived" if done.returncode == 0 else "killed"

    for name, table in mutants:  # one at a time: the scratch file is shared
        status[name] = judge(name, table)

    counts = {v: list(status.values()).count(v) for v in set(status.values())}
    caught = counts.get("killed", 0) + counts.get("timeout", 0)
    tested = caught + counts.get("survived", 0)
    return {"module": "transitions", "seconds": round(time.monotonic() - started),
            "work": str(work), "counts": counts,
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
            print(f"{name:12} {' '.join(source)}: {' '.join(tests)}")
        print(f"{'transitions':12} the _TRANSITIONS table, one state changed at a time: "
              f"{' '.join(TABLE_TESTS)}")
        return
    unknown = [m for m in args.modules if m not in MODULES and m != "transitions"]
    if unknown:
        parser.error(f"unknown module(s) {unknown}: choose from {[*MODULES, 'transitions']}")
    for module in args.modules or DEFAULT:
        r = (run_table() if module == "transitions"
             else run(module, args.jobs, args.only))
        counts = ", ".join(f"{k} {v}" for k, v in sorted(r["counts"].items()))
        print(f"{r['module']:12} score {r['score']:6.1%}  ({counts}; {r['seconds']} s, "
              f"{r['work']})", flush=True)
        for name in r["survivors"]:
            print(f"    survived: {name}")


if __name__ == "__main__":
    main()
