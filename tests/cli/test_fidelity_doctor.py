"""``fto-async doctor``: one line per check with ✔/✘ and what to do, ``--json``, exit codes
0 / 3 / 1, and never a billable task."""

from __future__ import annotations

import json
import socket

import pytest

from fto_async.emulator import Emulator, EmulatorConfig
from tests._cli import cli


def _doctor_json(capsys: pytest.CaptureFixture[str]) -> dict[str, dict[str, object]]:
    payload = json.loads(capsys.readouterr().out)
    return {c["name"]: c for c in payload["checks"]}


async def test_a_healthy_platform_passes_every_check_and_creates_no_task(emu, env, capsys,
                                                                         tmp_path):
    """Against the emulator: every line ✔, exit 0, and the emulator created no task."""
    code = await cli("doctor", "--journal", str(tmp_path / "j.db"))
    out = capsys.readouterr().out
    assert code == 0, out
    lines = out.splitlines()
    assert lines
    assert all(line.startswith(("✔", "    ->")) for line in lines), out
    for name in ("platform", "credentials", "clock", "path image_search submit",
                 "path workflow result", "path one_vs_one result", "cache folder",
                 "journal folder"):
        assert f"✔ {name}:" in out, name
    assert emu.stats.submits == []
    assert emu.stats.count() > 0  # it did call the platform


async def test_json_output(emu, env, capsys):
    """--json: one object with ok and the checks (name, ok, detail, fix, fatal)."""
    assert await cli("doctor", "--json") == 0
    checks = _doctor_json(capsys)
    assert checks["credentials"]["ok"] is True
    assert set(checks["platform"]) == {"name", "ok", "detail", "fix", "fatal"}


async def test_oauth_credentials_get_a_token(emu, monkeypatch, capsys):
    """With client credentials the line says a token was issued."""
    for name in ("PATSNAP_API_KEY",):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PATSNAP_CLIENT_ID", "demo-client")
    monkeypatch.setenv("PATSNAP_CLIENT_SECRET", "demo-secret")
    monkeypatch.setenv("PATSNAP_BASE_URL", emu.base_url)
    assert await cli("doctor") == 0
    assert "token issued" in capsys.readouterr().out


async def test_a_wrong_secret_exits_3_without_showing_it(emu, monkeypatch, capsys):
    """A wrong client secret: ✘ credentials with what to do, exit 3, the secret never shown."""
    monkeypatch.delenv("PATSNAP_API_KEY", raising=False)
    monkeypatch.setenv("PATSNAP_CLIENT_ID", "demo-client")
    monkeypatch.setenv("PATSNAP_CLIENT_SECRET", "not-the-secret-xyz")
    monkeypatch.setenv("PATSNAP_BASE_URL", emu.base_url)
    assert await cli("doctor") == 3
    out = capsys.readouterr().out
    assert "✘ credentials:" in out
    assert "-> check the key or the client id and secret" in out
    assert "not-the-secret-xyz" not in out


async def test_a_missing_workflow_result_path_says_how_to_set_it(emu, env, capsys):
    """A result path the platform lacks answers 67200101: ✘ with workflow_result_path, exit 3;
    the other paths still pass."""
    assert await cli("doctor", "--workflow-result-path", "/api/mcp/no-such-result",
                     "--json") == 3  # fmt: skip
    checks = _doctor_json(capsys)
    wf = checks["path workflow result"]
    assert wf["ok"] is False
    assert "67200101" in str(wf["detail"])
    assert "workflow_result_path" in str(wf["fix"])
    assert checks["path image_search result"]["ok"] is True
    assert checks["path workflow submit"]["ok"] is True


async def test_an_unreachable_host_exits_3(monkeypatch, capsys):
    """Nothing listens on the port: ✘ platform with what to check, exit 3, in seconds."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("PATSNAP_API_KEY", "sk-demo")
    monkeypatch.setenv("PATSNAP_BASE_URL", f"http://127.0.0.1:{port}")
    assert await cli("doctor", "--timeout", "2") == 3
    out = capsys.readouterr().out
    assert "✘ platform: no answer from" in out
    assert "PATSNAP_BASE_URL" in out


async def test_no_credentials_exits_3(monkeypatch, capsys):
    """No PATSNAP_* credentials: ✘ credentials naming the variables."""
    for name in ("PATSNAP_API_KEY", "PATSNAP_CLIENT_ID", "PATSNAP_CLIENT_SECRET"):
        monkeypatch.delenv(name, raising=False)
    assert await cli("doctor") == 3
    assert "PATSNAP_API_KEY" in capsys.readouterr().out


async def test_a_world_writable_journal_folder_exits_1(emu, env, capsys, tmp_path):
    """A world-writable journal folder (no sticky bit) is a setup problem: ✘, exit 1."""
    folder = tmp_path / "shared"
    folder.mkdir()
    folder.chmod(0o777)
    assert await cli("doctor", "--journal", str(folder / "j.db")) == 1
    out = capsys.readouterr().out
    assert "✘ journal folder:" in out
    assert "chmod o-w" in out


async def test_an_unusable_redis_exits_1_without_its_password(emu, env, capsys):
    """A Redis URL nothing answers: ✘ redis, exit 1, the password never shown."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"redis://user:hunter2-secret@127.0.0.1:{port}/0"
    assert await cli("doctor", "--redis-url", url) == 1
    out = capsys.readouterr().out
    assert "✘ redis:" in out
    assert "hunter2-secret" not in out


async def test_a_key_the_platform_refuses_exits_3(monkeypatch, capsys):
    """An sk- key the platform does not know: ✘ credentials, exit 3."""
    async with Emulator(EmulatorConfig(time_scale=0.001, qps=None)) as emulator:
        monkeypatch.setenv("PATSNAP_API_KEY", "sk-unknown")
        monkeypatch.setenv("PATSNAP_BASE_URL", emulator.base_url)
        assert await cli("doctor") == 3
    assert "✘ credentials:" in capsys.readouterr().out
