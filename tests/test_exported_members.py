"""The public surface: ``fto_async.__all__`` and each module's ``__all__`` (as httpx checks)."""

from __future__ import annotations

import ast
import types
from pathlib import Path

import fto_async

PACKAGE = Path(fto_async.__file__).parent


def _public_names() -> set[str]:
    return {
        name
        for name, value in vars(fto_async).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }


def _isort_key(name: str) -> tuple[int, str]:
    """ruff RUF022's isort-style order: CONSTANTS, then CamelCase classes, then the rest."""
    if name.isupper():
        return (0, name)
    if name[:1].isupper():
        return (1, name)
    return (2, name)


def test_all_is_sorted() -> None:
    """fto_async.__all__ is sorted isort-style: constants, then classes, then functions."""
    assert fto_async.__all__ == sorted(fto_async.__all__, key=_isort_key)


def test_all_has_no_duplicates() -> None:
    """No name is listed twice in fto_async.__all__."""
    assert len(fto_async.__all__) == len(set(fto_async.__all__))


def test_all_equals_public_names() -> None:
    """__all__ lists exactly the public, non-module names of the package namespace."""
    assert set(fto_async.__all__) == _public_names()


def test_exported_classes_live_in_fto_async() -> None:
    """Every exported class reports ``fto_async`` as its module (short reprs, tracebacks)."""
    for name in fto_async.__all__:
        value = getattr(fto_async, name)
        if isinstance(value, type):
            assert value.__module__ == "fto_async", name
            assert value.__qualname__ == name


def test_version_comes_from_metadata() -> None:
    """__version__ is available (read from the installed package metadata)."""
    assert isinstance(fto_async.__version__, str)
    assert fto_async.__version__


def _declares_all(path: Path) -> bool:
    tree = ast.parse(path.read_text("utf-8"), filename=str(path))
    for node in tree.body:
        targets: list[ast.expr] = []
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, ast.AnnAssign):
            targets = [node.target]
        if any(isinstance(t, ast.Name) and t.id == "__all__" for t in targets):
            return True
    return False


def test_every_module_defines_all() -> None:
    """Every fto_async/*.py module (and the emulator's, but __main__) defines __all__."""
    paths = sorted(PACKAGE.glob("*.py")) + sorted(
        p for p in (PACKAGE / "emulator").glob("*.py") if p.name != "__main__.py"
    )
    assert len(paths) > 10
    missing = [str(p.relative_to(PACKAGE)) for p in paths if not _declares_all(p)]
    assert missing == []


def test_module_all_names_exist() -> None:
    """Every name a core module lists in __all__ exists in that module."""
    import importlib

    for name in ("auth", "config", "errors", "models", "ratelimit", "retry", "transport",
                 "_envelope", "_serde"):
        module = importlib.import_module(f"fto_async.{name}")
        for member in module.__all__:
            assert hasattr(module, member), f"fto_async.{name}.{member}"


def test_the_journal_and_fingerprint_are_exported() -> None:
    """What the README uses is importable from the package, and plumbing is not public."""
    from fto_async import models

    for name in ("Journal", "JournalLockedError", "NotAJournalError", "image_digest",
                 "request_fingerprint"):  # fmt: skip
        assert name in fto_async.__all__, name
    for name in ("SUBMIT_PATHS", "REPORT_PATHS", "UPLOAD_PATH", "request_kind"):
        assert name not in models.__all__, name
