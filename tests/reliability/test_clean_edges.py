"""Clean edges (issue 19, item 9): bad URLs and unsafe cache files are refused, clearly.

* A base URL with user info (``https://user:password@host``) is refused before anything
  is created or sent: exit 2 in the CLI (``--base-url`` or ``PATSNAP_BASE_URL``),
  :class:`~fto_async.ConfigurationError` in the library, and the password is never printed
  nor put in a file name (it used to crash in aiohttp and name the default cache file).
* A malformed Redis URL (a bad port) is a clear one-line error, exit 2, not a traceback.
* The resume hint of a run with ``--redis-url`` holding a password names
  ``"$PATSNAP_REDIS_URL"`` (pasteable), not a redacted URL that cannot be pasted back.
* A report cache whose folder or file is writable by group or others is refused (as ssh
  refuses such keys): another user could plant answers in it.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from fto_async import ClientConfig, ConfigurationError, FtoClient, RateConfig
from fto_async.cli import main

from ._cli import point_at, write_catalog

SECRET = "hunter2pw"


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out + out.err


def _catalog(tmp_path: Path) -> Path:
    return write_catalog(tmp_path / "c.csv", ["A,https://img.example/a.png,US"])


def _files(root: Path) -> list[str]:
    return [str(p) for p in root.rglob("*")]


@pytest.mark.parametrize("where", ["option", "environment"])
def test_base_url_with_user_info_is_refused_and_never_printed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
    where: str,
) -> None:
    """A base URL with ``user:password@`` exits 2, prints no password, creates no file."""
    url = f"http://user:{SECRET}@127.0.0.1:9"
    point_at(monkeypatch, url if where == "environment" else "http://127.0.0.1:9")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    extra = ["--base-url", url] if where == "option" else []
    code, text = _run(capsys, "screen", str(_catalog(tmp_path)), "--out",
                      str(tmp_path / "out.jsonl"), *extra)  # fmt: skip
    assert code == 2
    assert SECRET not in text
    assert "Traceback" not in text
    assert "user info" in text
    assert not any(SECRET in name for name in _files(tmp_path))
    assert not (tmp_path / "out.jsonl").exists()


def test_library_refuses_base_url_with_user_info() -> None:
    """ClientConfig and FtoClient raise ConfigurationError without the password in it."""
    url = f"https://user:{SECRET}@connect.example"
    with pytest.raises(ConfigurationError) as caught:
        ClientConfig(base_url=url)
    assert SECRET not in str(caught.value)
    with pytest.raises(ConfigurationError) as caught:
        FtoClient(api_key="sk-test", base_url=url)
    assert SECRET not in str(caught.value)


@pytest.mark.parametrize("url", [f"redis://:{SECRET}@localhost:notaport/0",
                                 f"redis://:{SECRET}@localhost:99999999/0"])
def test_malformed_redis_url_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
    url: str,
) -> None:
    """A Redis URL with a bad port: ConfigurationError, and exit 2 without a traceback."""
    with pytest.raises(ConfigurationError) as caught:
        RateConfig(redis_url=url)
    assert SECRET not in str(caught.value)
    point_at(monkeypatch, "http://127.0.0.1:9")
    code, text = _run(capsys, "screen", str(_catalog(tmp_path)), "--out",
                      str(tmp_path / "out.jsonl"), "--no-cache", "--no-report",
                      "--redis-url", url)  # fmt: skip
    assert code == 2
    assert "Traceback" not in text
    assert "port" in text.lower()
    assert SECRET not in text


def test_resume_hint_names_the_redis_variable(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A stopped run's resume command says ``"$PATSNAP_REDIS_URL"``, not a redacted URL."""
    from fto_async.cli import _job

    point_at(monkeypatch, "http://127.0.0.1:9")
    args = main.__globals__["build_parser"]().parse_args([
        "screen", str(_catalog(tmp_path)), "--out", str(tmp_path / "out.jsonl"),
        "--redis-url", f"redis://:{SECRET}@127.0.0.1:1/0", "--no-cache"])  # fmt: skip
    args.argv = ["screen", str(tmp_path / "c.csv"), "--out", str(tmp_path / "out.jsonl"),
                 "--redis-url", f"redis://:{SECRET}@127.0.0.1:1/0", "--no-cache"]
    job = _job.prepare(args)
    assert job is not None
    assert '--redis-url "$PATSNAP_REDIS_URL"' in job.resume
    assert SECRET not in job.resume
    assert "***" not in job.resume
    # A URL without a secret is pasteable as it is.
    args.argv = ["screen", str(tmp_path / "c.csv"), "--out", str(tmp_path / "out.jsonl"),
                 "--redis-url=redis://127.0.0.1:1/0"]
    job = _job.prepare(args)
    assert job is not None
    assert "--redis-url=redis://127.0.0.1:1/0" in job.resume


@pytest.mark.parametrize("what", ["folder", "file"])
def test_cache_writable_by_others_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
    what: str,
) -> None:
    """A cache folder or file writable by group or others: exit 2, a clear message."""
    point_at(monkeypatch, "http://127.0.0.1:9")
    folder = tmp_path / "shared"
    folder.mkdir(mode=0o700)
    cache = folder / "reports.db"
    if what == "folder":
        folder.chmod(0o777)
    else:
        cache.write_bytes(b"")
        cache.chmod(0o666)
    code, text = _run(capsys, "screen", str(_catalog(tmp_path)), "--out",
                      str(tmp_path / "out.jsonl"), "--cache", str(cache), "--dry-run")  # fmt: skip
    assert code == 2
    assert "writable by group or others" in text
    assert "Traceback" not in text


def test_private_cache_is_accepted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The same run with a folder and file of mode 0700/0600 is not refused."""
    point_at(monkeypatch, "http://127.0.0.1:9")
    folder = tmp_path / "own"
    folder.mkdir(mode=0o700)
    cache = folder / "reports.db"
    code, text = _run(capsys, "screen", str(_catalog(tmp_path)), "--out",
                      str(tmp_path / "out.jsonl"), "--cache", str(cache), "--dry-run")  # fmt: skip
    assert code == 0, text
    assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700
