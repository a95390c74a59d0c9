"""The package guide (``fto_async/__init__.py``'s docstring) names every module, and no
library module outgrows one job (issue 18: about 600 lines; the emulator aside)."""

from __future__ import annotations

import pkgutil
import re
from pathlib import Path

import fto_async

PACKAGE = Path(fto_async.__file__).resolve().parent
MAX_LINES = 600


def _modules() -> list[str]:
    """Dotted names below ``fto_async`` (``batch._engine``, ``outputs``, ``client``...)."""
    return [m.name.split(".", 1)[1] for m in pkgutil.walk_packages(fto_async.__path__,
                                                                   "fto_async.")]


def test_the_guide_names_every_top_level_module() -> None:
    guide = fto_async.__doc__ or ""
    top = sorted({name.split(".")[0] for name in _modules()})
    assert len(top) > 30
    missing = [name for name in top if not re.search(rf"(?<![\w.]){re.escape(name)}\b", guide)]
    assert not missing, f"not in the package guide: {missing}"


def test_no_library_module_is_over_600_lines() -> None:
    sizes = {
        path.relative_to(PACKAGE).as_posix(): len(path.read_text(encoding="utf-8").splitlines())
        for path in PACKAGE.rglob("*.py") if "emulator" not in path.parts
    }  # fmt: skip
    assert len(sizes) > 50
    over = {name: n for name, n in sizes.items() if n > MAX_LINES}
    assert not over, over
