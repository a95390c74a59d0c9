"""A Ctrl-C (or SIGTERM) while the output is rebuilt at the end of a run still prints the
resume command, and leaves the previous output file whole.

``main()`` runs in the main thread here (signals are only delivered there); the catalog's
rows are all invalid, so the run needs no platform and makes no call.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import pytest

from fto_async.cli import _screen, main
from tests._shared import API_KEY

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["sigint", "sigterm"])
def test_a_signal_during_the_rebuild_prints_the_resume_command(sig, tmp_path: Path, capsys,
                                                               monkeypatch):  # fmt: skip
    """The signal stops the rebuild; the command says how to resume; the old output stays."""
    catalog = tmp_path / "c.csv"
    catalog.write_text("sku,image_url,country\nA,not-a-url,US\nB,ftp://x/b.png,US\n",
                       encoding="utf-8")  # fmt: skip
    out = tmp_path / "o.jsonl"
    out.write_text("previous results\n", encoding="utf-8")
    monkeypatch.setenv("PATSNAP_API_KEY", API_KEY)
    monkeypatch.setenv("PATSNAP_BASE_URL", "http://127.0.0.1:9")
    real = _screen.write_output
    rebuilds: list[int] = []

    async def interrupted_rebuild(catalog, journal, path, **options):
        rebuilds.append(1)
        os.kill(os.getpid(), sig)  # the user presses Ctrl-C (again) right now
        return await real(catalog, journal, path, **options)

    monkeypatch.setattr(_screen, "write_output", interrupted_rebuild)
    previous = signal.getsignal(signal.SIGTERM)
    try:
        code = main(["screen", str(catalog), "--out", str(out)])
    finally:
        signal.signal(signal.SIGTERM, previous)
    err = capsys.readouterr().err
    assert rebuilds == [1]
    assert code == 130, err
    assert "Resume with the same command" in err
    assert f"--out {out}" in err
    assert out.read_text(encoding="utf-8") == "previous results\n"
    assert not list(tmp_path.glob(".o.jsonl.*.tmp"))
