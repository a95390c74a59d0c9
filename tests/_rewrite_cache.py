"""Rewrite the test modules' asserts once, before the xdist workers start.

pytest rewrites the asserts of every test module it imports and caches the result in
``__pycache__`` (a hash-checked pyc, valid across checkouts). On a fresh clone there is no
cache yet, and the 4 workers start together and collect the whole suite, so each of them
rewrote every module. The xdist controller now fills the cache first, in two processes
(itself and a child), with pytest's own functions; the workers then read it, as any later
run does.

Nothing changes when the cache cannot be written (``PYTHONDONTWRITEBYTECODE``, a
read-only checkout) or when pytest no longer has these functions: the workers rewrite, as
before.
"""

from __future__ import annotations

import fnmatch
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING

from tests._shared import unmeasured_env

if TYPE_CHECKING:
    import pytest

#: The child's half: pytest's rewrite without a configuration, which is the same rewrite
#: as long as the assertion pass hook is off (``warm`` checks).
_CHILD = """
import sys
from pathlib import Path
from tests._rewrite_cache import _rewrite, _rewrite_functions
_rewrite(None, _rewrite_functions(), [Path(p) for p in sys.argv[1:]])
"""


def _rewrite_functions() -> SimpleNamespace | None:
    """pytest's private rewrite functions, or None when they moved."""
    try:
        from _pytest.assertion import rewrite
        return SimpleNamespace(rewrite=rewrite._rewrite_test, write=rewrite._write_pyc,
                               read=rewrite._read_pyc, tail=rewrite.PYC_TAIL,
                               cache_dir=rewrite.get_cache_dir)
    except (ImportError, AttributeError):
        return None


def test_modules(config: pytest.Config, roots: Iterable[Path]) -> list[Path]:
    """The files under ``roots`` whose asserts pytest rewrites on import: test modules
    (``python_files``) and conftest files."""
    patterns = [*config.getini("python_files"), "conftest.py"]
    return sorted(path for root in roots for path in root.rglob("*.py")
                  if any(fnmatch.fnmatch(path.name, p) for p in patterns))


def pyc_path(path: Path) -> Path | None:
    """Where pytest caches the rewritten ``path`` (None when pytest's functions moved)."""
    fns = _rewrite_functions()
    if fns is None:
        return None
    return Path(fns.cache_dir(path)) / (path.name[:-3] + fns.tail)


def stale(paths: Iterable[Path]) -> list[Path]:
    """The ``paths`` without a current rewritten pyc."""
    fns = _rewrite_functions()
    if fns is None:
        return []
    return [path for path in paths if fns.read(path, pyc_path(path)) is None]


def _rewrite(config: pytest.Config | None, fns: SimpleNamespace | None,
             paths: Iterable[Path]) -> None:
    if fns is None:
        return
    state = SimpleNamespace(trace=lambda message: None)
    for path in paths:
        pyc = pyc_path(path)
        assert pyc is not None
        try:
            pyc.parent.mkdir(exist_ok=True)
            source_hash, code = fns.rewrite(path, config)
        except (OSError, SyntaxError):
            continue  # the worker's own import reports it
        fns.write(state, code, source_hash, pyc)


def warm(config: pytest.Config, paths: list[Path]) -> int:
    """Write the rewritten pyc of each of ``paths`` that lacks a current one, half of
    them in a child process; return how many were written."""
    fns = _rewrite_functions()
    if (fns is None or sys.dont_write_bytecode
            or config.getini("enable_assertion_pass_hook")):
        return 0
    todo = stale(paths)
    half = len(todo) // 2
    # Not measured by coverage's subprocess patch: it runs no code of the package.
    with subprocess.Popen([sys.executable, "-c", _CHILD, *map(str, todo[:half])],  # noqa: S603
                          cwd=Path(__file__).parent.parent, env=unmeasured_env()):
        _rewrite(config, fns, todo[half:])
    return len(todo)
