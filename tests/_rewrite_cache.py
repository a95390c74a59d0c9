"""Rewrite the test modules' asserts once, before the xdist workers start.

pytest rewrites the asserts of every test module it imports and caches the result in
``__pycache__`` (a hash-checked pyc, valid across checkouts). On a fresh clone there is no
cache yet, and the 4 workers start together and collect the whole suite, so each of them
rewrote every module. The xdist controller now fills the cache first, in two processes
(itself and a child), with pytest's own functions; the workers then read it, as any later
run does. Once the cache is current, this costs only the check that it is.

Nothing is done when pytest would not read or write the cache (``--assert=plain``,
``PYTHONDONTWRITEBYTECODE``), for a module whose cache folder cannot be written, or when
pytest no longer has these functions: the workers rewrite, as before.
"""

from __future__ import annotations

import fnmatch
import os
import subprocess
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from types import CodeType
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    import pytest

#: The folder of the test modules: nothing outside it is warmed (a venv in the checkout,
#: say, is not the suite's).
TESTS = Path(__file__).resolve().parent

#: Below this many stale modules the controller rewrites them alone (a child process
#: costs about 0.3 s to start).
_SPLIT_FROM = 16

#: The child's half: pytest's rewrite without a configuration, which is the same rewrite
#: as long as the assertion pass hook is off (``warm`` checks). It imports this module
#: and pytest's rewrite, nothing of the package.
_CHILD = """
import sys
from pathlib import Path
from tests._rewrite_cache import rewrite
rewrite(None, [Path(p) for p in sys.argv[1:]])
"""


class _Pytest(NamedTuple):
    """pytest's private rewrite functions, as this module uses them."""

    rewrite: Callable[[Path, Any], tuple[bytes, CodeType]]
    write: Callable[[Any, CodeType, bytes, Path], bool]
    read: Callable[[Path, Path], CodeType | None]
    tail: str
    cache_dir: Callable[[Path], Path]


def _pytest() -> _Pytest | None:
    """pytest's rewrite functions, or None when they moved."""
    try:
        from _pytest.assertion import rewrite as r

        return _Pytest(r._rewrite_test, r._write_pyc, r._read_pyc, r.PYC_TAIL,
                       r.get_cache_dir)  # fmt: skip
    except (ImportError, AttributeError):
        return None


def rewritten_modules(config: pytest.Config, roots: Iterable[Path]) -> list[Path]:
    """The files under ``roots`` whose asserts pytest rewrites on import: test modules
    (``python_files``) and conftest files, each once."""
    patterns = [*config.getini("python_files"), "conftest.py"]
    return sorted({path for root in roots for path in root.rglob("*.py")
                   if any(fnmatch.fnmatch(path.name, p) for p in patterns)})


def _pyc(fns: _Pytest, path: Path) -> Path:
    return fns.cache_dir(path) / (path.name[:-3] + fns.tail)


def pyc_path(path: Path) -> Path | None:
    """Where pytest caches the rewritten ``path`` (None when pytest's functions moved)."""
    fns = _pytest()
    return None if fns is None else _pyc(fns, path)


def stale(paths: Iterable[Path]) -> list[Path]:
    """The ``paths`` without a current rewritten pyc."""
    fns = _pytest()
    if fns is None:
        return []
    return [path for path in paths if fns.read(path, _pyc(fns, path)) is None]


def _writable(path: Path) -> bool:
    """Whether the cache folder of ``path`` exists or can be made, and takes files."""
    pyc = pyc_path(path)
    if pyc is None:
        return False
    try:
        pyc.parent.mkdir(parents=True, exist_ok=True)
    except OSError:
        return False
    return os.access(pyc.parent, os.W_OK)


def rewrite(config: pytest.Config | None, paths: Iterable[Path]) -> int:
    """Rewrite each of ``paths`` into pytest's cache; return how many were written. A
    module that does not compile is left to the worker's import, which reports it."""
    fns = _pytest()
    if fns is None:
        return 0
    state = _State()
    written = 0
    for path in paths:
        try:
            source_hash, code = fns.rewrite(path, config)
        except Exception:  # noqa: S112 - the worker's own import reports it
            continue
        written += fns.write(state, code, source_hash, _pyc(fns, path))
    return written


class _State:
    """What ``_write_pyc`` asks of pytest's assertion state: a trace to write to."""

    @staticmethod
    def trace(message: str) -> None:
        """Drop the message (pytest traces only under ``--debug``)."""


def warm(config: pytest.Config, paths: list[Path]) -> int:
    """Write the rewritten pyc of each of ``paths`` that lacks a current one, half of
    them in a child process when there are many; return how many were written."""
    if (_pytest() is None or sys.dont_write_bytecode
            or config.getoption("assertmode", "rewrite") != "rewrite"
            or config.getini("enable_assertion_pass_hook")):
        return 0
    todo = [path for path in stale(paths) if _writable(path)]
    if len(todo) < _SPLIT_FROM:
        return rewrite(config, todo)
    from tests._shared import unmeasured_env  # here: the child does not import it

    half = len(todo) // 2
    env = unmeasured_env()
    if sys.pycache_prefix:  # the child must write where pytest will read
        env["PYTHONPYCACHEPREFIX"] = sys.pycache_prefix
    with subprocess.Popen([sys.executable, "-c", _CHILD, *map(str, todo[:half])],  # noqa: S603
                          cwd=TESTS.parent, env=env):
        written = rewrite(config, todo[half:])
    return written + half - len(stale(todo[:half]))  # what the child wrote
