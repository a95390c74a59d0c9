"""The package's import graph: acyclic, and layered (core < cli; emulator only from cli).

Every ``import``/``from ... import`` of an ``fto_async`` module anywhere in a file counts:
at module level, under ``if TYPE_CHECKING:`` and inside functions. A cycle hidden behind
``TYPE_CHECKING`` or a function-level import still couples the modules (and breaks
``typing.get_type_hints``, or imports half-initialised modules at run time).
"""

from __future__ import annotations

import ast
import functools
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

import pytest

import fto_async

PACKAGE = Path(fto_async.__file__).parent


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(path: Path) -> set[str]:
    """The fto_async modules ``path`` imports, anywhere in the file."""
    name = module_name(path)
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "fto_async")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            if target.split(".")[0] != "fto_async":
                continue
            submodules = {f"{target}.{a.name}" for a in node.names} & MODULES.keys()
            found |= submodules  # "from . import _serde" imports the module _serde
            if len(submodules) < len(node.names):  # and a name defined in ``target``
                found.add(target)
    found.discard(name)
    return {m for m in found if m in MODULES}


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


@functools.cache  # parsed on first use: in the one xdist worker that runs these tests
def graph() -> dict[str, set[str]]:
    """Each module of the package and the package modules it imports."""
    return {name: imported_modules(path) for name, path in MODULES.items()}


def _is_within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def test_the_graph_is_found() -> None:
    """The parse sees the known edges (the test is not vacuous)."""
    assert "fto_async.client" in MODULES
    assert "fto_async.batch" in graph()["fto_async.client"]
    assert "fto_async.journal" in graph()["fto_async.batch._values"]  # a TYPE_CHECKING one once
    assert any(_is_within(m, "fto_async.emulator") for m in graph()["fto_async.cli._main"])


def test_no_import_cycle() -> None:
    """No module imports itself through others, counting every import in the file (a
    package's ``__init__`` counts as a module that imports what it re-exports)."""
    try:
        tuple(TopologicalSorter(graph()).static_order())
    except CycleError as exc:
        pytest.fail(f"import cycle: {' -> '.join(exc.args[1])}")


def test_the_cycle_check_can_fail() -> None:
    """A TYPE_CHECKING import back from a module the package imports is a cycle."""
    edited = {name: set(deps) for name, deps in graph().items()}
    edited["fto_async.journal"].add("fto_async.batch")  # batch imports journal
    with pytest.raises(CycleError):
        tuple(TopologicalSorter(edited).static_order())


def test_core_never_imports_the_cli() -> None:
    """No module outside fto_async.cli imports fto_async.cli."""
    for name, deps in graph().items():
        if _is_within(name, "fto_async.cli"):
            continue
        bad = sorted(m for m in deps if _is_within(m, "fto_async.cli"))
        assert not bad, f"{name} imports {bad}"


def test_only_the_cli_imports_the_emulator() -> None:
    """Outside the emulator itself, only fto_async.cli imports fto_async.emulator."""
    for name, deps in graph().items():
        if _is_within(name, "fto_async.emulator") or _is_within(name, "fto_async.cli"):
            continue
        bad = sorted(m for m in deps if _is_within(m, "fto_async.emulator"))
        assert not bad, f"{name} imports {bad}"


def test_the_emulator_imports_no_client_code() -> None:
    """The emulator stands alone: it imports no SDK module (it plays the platform)."""
    for name, deps in graph().items():
        if _is_within(name, "fto_async.emulator"):
            outside = sorted(m for m in deps if not _is_within(m, "fto_async.emulator"))
            assert not outside, f"{name} imports {outside}"


#: Modules outside fto_async.outputs that may import it: the command line, and the
#: report's old module, kept as an alias because the README named it.
_OUTPUTS_USERS = ("fto_async.cli", "fto_async.report")


def test_core_never_imports_the_outputs() -> None:
    """Only the command line imports fto_async.outputs (the writers sit above the core)."""
    for name, deps in graph().items():
        if _is_within(name, "fto_async.outputs") or any(_is_within(name, u)
                                                        for u in _OUTPUTS_USERS):
            continue
        bad = sorted(m for m in deps if _is_within(m, "fto_async.outputs")
                     and (name, m) not in _LAZY_OUTPUTS_IMPORTS)  # fmt: skip
        assert not bad, f"{name} imports {bad}"


#: The core's only imports of the outputs, each inside a function (run when called,
#: never when the module loads): ``Outcome.to_record`` hands an outcome to the one
#: record rule.
_LAZY_OUTPUTS_IMPORTS = {("fto_async.batch._values", "fto_async.outputs._record")}


def test_the_core_imports_the_outputs_only_lazily() -> None:
    """Each allowed core -> outputs import sits in a function body, not at module level."""
    for name, target in _LAZY_OUTPUTS_IMPORTS:
        tree = ast.parse(MODULES[name].read_text())
        top = [node for node in tree.body if isinstance(node, ast.ImportFrom)
               and (node.module or "").endswith(target.rsplit(".", 2)[-1])]  # fmt: skip
        assert not top, f"{name} imports {target} at module level"
        assert target in graph()[name]


def test_the_outputs_import_no_cli() -> None:
    """The writers know no command line: the CLI hands them records or a journal."""
    for name, deps in graph().items():
        if _is_within(name, "fto_async.outputs"):
            bad = sorted(m for m in deps if _is_within(m, "fto_async.cli"))
            assert not bad, f"{name} imports {bad}"
