"""The README's quick start: exactly two commands, and CI runs the test one verbatim."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def quick_start_commands() -> list[str]:
    """The commands in the fenced blocks of the README's "Quick start" section."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return [block.strip() for block in re.findall(r"```bash\n(.*?)```", section, re.S)]


def test_quick_start_has_exactly_two_commands() -> None:
    """The quick start holds two one-line commands: the demo and the tests."""
    commands = quick_start_commands()
    assert len(commands) == 2
    assert all("\n" not in c for c in commands)
    assert commands[0].endswith("fto-async demo")
    assert "pytest" in commands[1]


def test_ci_runs_the_readme_test_command() -> None:
    """.ci/run runs the README's test command exactly as written."""
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert quick_start_commands()[1] in ci


def test_sample_catalog_is_bundled_and_mirrored() -> None:
    """The demo's packaged catalog and examples/catalog.csv are the same file."""
    packaged = ROOT / "fto_async" / "data" / "sample_catalog.csv"
    assert packaged.read_bytes() == (ROOT / "examples" / "catalog.csv").read_bytes()
