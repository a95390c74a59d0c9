"""The documentation site and the README: nothing public goes undocumented, nothing drifts.

The generated parts of the site (errors, CLI, emulator options, API reference) come from
``docs/hooks.py``, which ``mkdocs build`` runs; these tests run the same functions.
``mkdocs build --strict`` itself runs in ``.ci/run``.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import re
import shlex
import sys
import tempfile
from pathlib import Path
from types import ModuleType

import pytest

import fto_async
from fto_async.cli import build_parser, main
from fto_async.errors import CODE_TABLE

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


def hooks() -> ModuleType:
    """docs/hooks.py, imported by path (it is not a package module)."""
    spec = importlib.util.spec_from_file_location("docs_hooks", DOCS / "hooks.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def site_text() -> str:
    """Every page's Markdown with its generated parts expanded, as mkdocs builds it."""
    expand = hooks().expand
    return "\n".join(expand(p.read_text(encoding="utf-8")) for p in sorted(DOCS.glob("*.md")))


def test_every_public_name_is_in_the_site() -> None:
    """Each name in fto_async.__all__ appears in the pages (the reference documents it)."""
    text = site_text()
    missing = [name for name in fto_async.__all__ if f"fto_async.{name}" not in text]
    assert not missing


def test_rest_docstrings_become_markdown() -> None:
    """docs/griffe_rst.py turns Sphinx roles and ``::`` blocks into Markdown."""
    pytest.importorskip("griffe")  # the docs extra
    spec = importlib.util.spec_from_file_location("griffe_rst", DOCS / "griffe_rst.py")
    assert spec is not None
    assert spec.loader is not None
    rst = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(rst)
    text = "See :class:`~fto_async.errors.TaskTimeoutError` and ``x``. Example::\n\n    f(1)\n"
    assert rst.markdown(text) == (
        "See `TaskTimeoutError` and `x`. Example:\n\n```python\nf(1)\n```\n"
    )


def test_every_platform_code_is_on_the_errors_page() -> None:
    """The errors page lists every code of the code table, with class and advice."""
    page = hooks().expand((DOCS / "errors.md").read_text(encoding="utf-8"))
    for code, cls in CODE_TABLE.items():
        row = next((line for line in page.splitlines() if line.startswith(f"| {code} |")), "")
        assert f"`{cls.__name__}`" in row, code
        assert row.count("|") == 7, row  # code, message, class, retryable, fatal, advice


def test_every_error_class_has_advice() -> None:
    """A class that a code or HTTP status maps to has a 'what to do' (else the build fails)."""
    from fto_async.errors import _HTTP_TABLE

    advice = hooks().ADVICE
    for cls in {*CODE_TABLE.values(), *_HTTP_TABLE.values()}:
        assert cls.__name__ in advice


def test_retryable_and_fatal_come_from_the_code() -> None:
    """68300008 is retryable and 68300005 is not; 67200003 is fatal (read from instances)."""
    page = hooks().render_errors()
    rows = {int(line.split("|")[1]): line for line in page.splitlines()
            if re.match(r"\| \d{8} \|", line)}
    assert rows[68300008].split("|")[4].strip() == "yes"
    assert rows[68300005].split("|")[4].strip() == "no"
    assert rows[67200003].split("|")[5].strip() == "yes"


def test_every_cli_flag_and_command_is_documented() -> None:
    """Each subcommand and each of its flags appears on the CLI page."""
    page = hooks().expand((DOCS / "cli.md").read_text(encoding="utf-8"))
    parser = build_parser()
    (subparsers,) = [a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction"]
    for name, sub in subparsers.choices.items():
        assert f"### `fto-async {name}`" in page
        if name == "emulator":
            sub = hooks().emulator_parser()
        for action in sub._actions:
            for flag in action.option_strings:
                if flag in ("-h", "--help"):
                    continue  # every command has them; the page says so once
                assert f"`{flag}`" in page, (name, flag)


def test_every_environment_variable_is_documented() -> None:
    """Every PATSNAP_* variable the package reads is named in the pages."""
    names = set()
    for path in (ROOT / "fto_async").rglob("*.py"):
        names |= set(re.findall(r"PATSNAP_[A-Z_]+[A-Z]", path.read_text(encoding="utf-8")))
    text = site_text()
    assert names
    assert sorted(n for n in names if n not in text) == []


def test_every_nav_page_exists_and_every_page_is_in_the_nav() -> None:
    """mkdocs.yml's nav and docs/*.md agree."""
    nav = set(re.findall(r":\s+([\w-]+\.md)", (ROOT / "mkdocs.yml").read_text(encoding="utf-8")))
    pages = {p.name for p in DOCS.glob("*.md")}
    assert nav == pages


def test_readme_is_short_and_its_doc_links_resolve() -> None:
    """The README stays under 150 lines; each docs/ link and image it has exists."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 150
    links = re.findall(r"\]\((docs/[^)#]+)", text)
    assert links
    assert [link for link in links if not (ROOT / link).exists()] == []


def test_the_screenshot_is_a_png() -> None:
    """docs/img/report.png, made by scripts/screenshot.py, is a real PNG."""
    assert (DOCS / "img" / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def fast_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    return tmp_path


async def test_demo_points_onward(fast_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The demo ends with the report's path and how to screen one's own catalog."""
    assert await asyncio.to_thread(main, ["demo", "--rows", "3", "--time-scale", "0.002"]) == 0
    lines = capsys.readouterr().out.rstrip().splitlines()
    (folder,) = fast_env.glob("fto-async-demo-*")
    report = folder / "results.jsonl.html"
    assert report.is_file()
    assert f"open the report: {report}" in lines
    assert f"to screen your own catalog: copy {folder / 'catalog.csv'} and run" in lines
    assert lines[-1].strip().startswith("fto-async screen catalog.csv --out results.jsonl")


def command_lines() -> list[tuple[str, str]]:
    """``fto-async ...`` lines of the bash blocks in the README and the pages."""
    found = []
    for path in [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]:
        text = path.read_text(encoding="utf-8")
        for block in re.findall(r"```bash\n(.*?)```", text, re.S):
            for line in block.splitlines():
                line = line.split("  #", 1)[0].strip()
                if line.startswith("fto-async "):
                    found.append((path.name, line))
    return found


def test_documented_commands_parse() -> None:
    """Every fto-async command shown in the README and the pages is accepted by the parser."""
    lines = command_lines()
    assert len(lines) > 10
    for page, line in lines:
        argv = shlex.split(line)[1:]
        if argv[0] == "emulator":
            hooks().emulator_parser().parse_args(argv[1:])
        else:
            build_parser().parse_args(argv)  # SystemExit(2) on a wrong flag
        assert page


async def test_readme_library_example_runs(tmp_path: Path) -> None:
    """The README's Python example screens its row against the emulator (in a subprocess)."""
    from fto_async.emulator import Emulator, EmulatorConfig

    text = (ROOT / "README.md").read_text(encoding="utf-8")
    (source,) = re.findall(r"```python\n(.*?)```", text, re.S)
    script = tmp_path / "example.py"
    script.write_text(source, encoding="utf-8")
    async with Emulator(EmulatorConfig(time_scale=0.02)) as emu:
        env = {**os.environ, "PATSNAP_BASE_URL": emu.base_url, "PATSNAP_API_KEY": "sk-demo",
               "PYTHONPATH": str(ROOT)}
        proc = await asyncio.create_subprocess_exec(
            sys.executable, str(script), cwd=tmp_path, env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    assert out.decode().startswith("LAMP-001 ")
    assert "failed" not in out.decode()
