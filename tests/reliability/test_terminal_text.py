"""Text from a catalog or the platform shown on a terminal is data: never rich markup, and
escape sequences are shown, never executed, in terminal (rich) and plain modes alike."""

from __future__ import annotations

import io

import pytest

from fto_async.batch import Progress
from fto_async.cli._display import ProgressView, Section, clean, render_sections
from tests.reliability._cli import FAST, cli, point_at, write_catalog

#: Outside text that a terminal would act on: markup, OSC title, clear screen, bell, C1
#: CSI, a bidi override, a line separator.
HOSTILE = ["[/x]", "[link=https://evil.example]click[/link]", "\x1b]0;owned\x07",
           "\x1b[2J", "\x07", "\x9b31m", "\u202eabc", "a\u2028b", "[bold red]loud"]
RAW = ("\x1b", "\x07", "\x9b", "\u202e", "\u2028")


def test_clean_shows_controls_as_escapes():
    """clean() escapes C0, DEL, C1, bidi controls and line separators; keeps the rest."""
    assert clean("\x1b]0;t\x07") == "\\x1b]0;t\\x07"
    assert clean("\x9b\x7f") == "\\x9b\\x7f"
    assert clean("\u202eabc\u2066") == "\\u202eabc\\u2066"
    assert clean("a\nb\tc") == "a\\x0ab\\x09c"
    assert clean("Lampe é 灯 [/x]") == "Lampe é 灯 [/x]"


@pytest.mark.parametrize("tty", [True, False])
def test_tables_and_messages_never_read_markup_or_run_escapes(tty):
    """Keys and messages full of markup and escape sequences render as text in tables, footers
    and row messages, without crashing, without links, without raw control characters."""
    stream = io.StringIO()
    sections = [Section("Failures [/x]", ["key", "message"],
                        [[text, f"error: {text}"] for text in HOSTILE])]
    render_sections(sections, [("output", "\x1b]0;x\x07[/y]")], stream, tty=tty)
    snapshot = Progress(read=1, submitting=0, running=0, done=1, failed=0, not_attempted=0,
                        resumed=0, resubmitted_unknown=0, calls=1, retries=0, rate=1.0,
                        elapsed=1.0, total=1, eta=0.0)  # fmt: skip
    with ProgressView(1, stream=stream, tty=tty, interval=0) as view:
        view.update(snapshot)
        for text in HOSTILE:
            view.row_message(f"line 2: {text}: bad")
    out = stream.getvalue()
    assert "\x1b]8;" not in out  # no hyperlink
    assert "\x1b]0;" not in out  # no window title
    assert "\x1b[2J" not in out  # no screen clearing
    assert "\u202e" not in out
    if not tty:
        assert not any(ch in out for ch in RAW)
    assert "[/x]" in out
    assert "[link=https://evil.example]click[/link]" in out
    assert "\\x1b]0;owned\\x07" in out
    assert "[bold red]loud" in out


async def test_a_hostile_catalog_is_shown_as_text(emu, monkeypatch, tmp_path, capsys):
    """A catalog whose keys and cells hold markup and escape sequences runs to its summary:
    stdout and stderr hold no raw control character, the markup shows literally."""
    point_at(monkeypatch, emu)
    rows = [f'"{text}",https://example.com/{n}.png,US' for n, text in enumerate(HOSTILE)]
    rows += ['"[/k]",https://example.com/x.png,usa', '"K\x1b[2J",not-a-url,US']
    path = write_catalog(tmp_path / "c.csv", rows)
    assert await cli("screen", str(path), "--out", str(tmp_path / "r.jsonl"), *FAST) == 1
    captured = capsys.readouterr()
    text = captured.out + captured.err
    assert not any(ch in text for ch in RAW), repr(text)
    assert "[/k]" in text
    assert "Rows by result" in captured.out
    assert await cli("screen", str(path), "--out", str(tmp_path / "r.jsonl"),
                     "--dry-run") == 0  # invalid rows alone: counted, exit 0
    captured = capsys.readouterr()
    assert not any(ch in captured.out + captured.err for ch in RAW)
