"""Bad values are refused before any call: flags exit 2 with a message naming the flag;
catalog rows with a runaway URL or key are invalid rows with a clear message."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fto_async import ImageSearchRequest, InvalidRequestError, _validate
from fto_async.cli import main
from fto_async.cli._catalog import Catalog, Defaults
from tests._cli import cli
from tests._shared import API_KEY
from tests.client._support import running

HUGE_URL = "https://example.com/" + "a" * (20 * 1024 * 1024)


@pytest.fixture
def catalog(tmp_path: Path) -> Path:
    path = tmp_path / "c.csv"
    path.write_text("sku,image_url,country\nA,https://example.com/a.png,US\n", encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("flag", "value", "says"),
    [
        ("--qps", "0", "at least 0.01"),
        ("--qps", "1e-9", "at least 0.01"),
        ("--qps", "-5", "at least 0.01"),
        ("--qps", "nan", "finite"),
        ("--qps", "inf", "finite"),
        ("--time-scale", "-1", "above 0"),
        ("--time-scale", "0", "above 0"),
        ("--base-url", HUGE_URL, "at most 8192 characters"),
        ("--base-url", "ftp://example.com", "http or https"),
    ],
    ids=["qps-0", "qps-1e-9", "qps-negative", "qps-nan", "qps-inf", "scale-negative",
         "scale-0", "base-url-20MB", "base-url-ftp"],
)
def test_bad_flag_values_exit_2_naming_the_flag(flag, value, says, catalog, tmp_path, capsys,
                                                monkeypatch):  # fmt: skip
    """Each bad value exits 2 before any call, with a short message naming the flag."""
    monkeypatch.setenv("PATSNAP_API_KEY", API_KEY)
    monkeypatch.setenv("PATSNAP_BASE_URL", "http://127.0.0.1:9")  # nothing may be called
    code = main(["screen", str(catalog), "--out", str(tmp_path / "o.jsonl"), flag, value])
    err = capsys.readouterr().err
    assert code == 2, err
    assert f"argument {flag}: " in err
    assert says in err
    assert len(err) < 2000  # the 20 MB value is not echoed back
    assert not (tmp_path / "o.jsonl").exists()


@pytest.mark.parametrize("value", ["0", "1e-9", "-3"])
def test_patsnap_qps_from_the_environment_is_checked_too(value, catalog, tmp_path, capsys,
                                                        monkeypatch):  # fmt: skip
    """``PATSNAP_QPS`` below 0.01 exits 2 naming the variable, before any call."""
    monkeypatch.setenv("PATSNAP_API_KEY", API_KEY)
    monkeypatch.setenv("PATSNAP_BASE_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("PATSNAP_QPS", value)
    code = main(["screen", str(catalog), "--out", str(tmp_path / "o.jsonl")])
    assert code == 2
    assert "PATSNAP_QPS" in capsys.readouterr().err


def test_demo_time_scale_is_checked_too(capsys):
    """``fto-async demo --time-scale 0`` is refused the same way."""
    assert main(["demo", "--time-scale", "0"]) == 2
    assert "argument --time-scale: " in capsys.readouterr().err


def test_url_rule_has_an_8_kib_limit():
    """URLs over 8 KiB are refused by the one URL rule (models, catalog, flags)."""
    _validate.url("url", "https://example.com/" + "a" * (8192 - 20))
    with pytest.raises(InvalidRequestError, match="at most 8192 characters"):
        _validate.url("url", "https://example.com/" + "a" * 8192)
    with pytest.raises(InvalidRequestError, match="at most 8192 characters") as info:
        ImageSearchRequest(url=HUGE_URL, country=["US"], lang="en")
    assert len(str(info.value)) < 200


def _jsonl(path: Path, rows: list[dict[str, str]]) -> Path:
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return path


BAD_ROWS = [
    ({"sku": "huge-url", "image_url": HUGE_URL, "country": "US"}, "at most 8192 characters"),
    ({"sku": "K" * 1001, "image_url": "https://example.com/1.png", "country": "US"},
     "key: must be at most 1000 characters"),
    ({"sku": "red\x1b[31mkey", "image_url": "https://example.com/2.png", "country": "US"},
     "control characters"),
    ({"sku": "two\nlines", "image_url": "https://example.com/3.png", "country": "US"},
     "control characters"),
]  # fmt: skip
GOOD_ROW = {"sku": "K" * 1000, "image_url": "https://example.com/ok.png", "country": "US"}


def test_catalog_rows_with_runaway_urls_or_keys_are_invalid(tmp_path):
    """A 20 MB URL, a 1001-character key and keys with control characters are invalid rows."""
    path = _jsonl(tmp_path / "c.jsonl", [row for row, _ in BAD_ROWS] + [GOOD_ROW])
    rows = list(Catalog(path, Defaults()).rows())
    for row, (_, says) in zip(rows, BAD_ROWS, strict=False):
        assert not row.ok
        assert says in (row.error or ""), row.error
        assert len(row.error or "") < 300
    assert rows[-1].ok


async def test_cli_sends_nothing_for_runaway_rows(tmp_path, monkeypatch):
    """``fto-async screen`` reports such rows invalid and makes no call for them."""
    path = _jsonl(tmp_path / "c.jsonl", [row for row, _ in BAD_ROWS])
    monkeypatch.setenv("PATSNAP_API_KEY", API_KEY)
    async with running() as (emu, _client):
        monkeypatch.setenv("PATSNAP_BASE_URL", emu.base_url)
        out = tmp_path / "o.jsonl"
        assert await cli("screen", str(path), "--out", str(out), "--country", "US") == 1
        assert emu.stats.count() == 0
    statuses = [json.loads(line)["status"] for line in out.read_text().splitlines()]
    assert statuses == ["invalid"] * len(BAD_ROWS)
    assert "\x1b" not in out.read_text()
