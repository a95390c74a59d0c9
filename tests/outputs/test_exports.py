"""The Excel export, formula-safe CSV/XLSX cells, and the CLI's report wiring."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import re
import tempfile
from pathlib import Path
from typing import Any

import pytest

from fto_async.cli import main
from fto_async.emulator import Emulator, EmulatorConfig
from fto_async.outputs import CSV_COLUMNS, write_csv
from fto_async.outputs._cells import cell_text
from fto_async.outputs._xlsx import DESIGN_COLUMNS, ROW_COLUMNS, write_xlsx
from tests.outputs._xlsx import load_workbook

DANGEROUS = ["=HYPERLINK(\"http://evil\",\"x\")", "+1+2", "-3+4", "@SUM(A1)", "\t=1", "\r=1"]


def _sheet(path: Path, name: str) -> list[dict[str, Any]]:
    book = load_workbook(path, read_only=True)
    rows = list(book[name].iter_rows(values_only=True))
    book.close()
    header = rows[0]
    return [dict(zip(header, row, strict=True)) for row in rows[1:]]


def test_cell_text_neutralizes_formulas_and_control_characters():
    """Formula starts get a quote (CSV) or none (XLSX); controls become visible escapes."""
    for text in DANGEROUS:
        assert cell_text(text) == "'" + text
        assert cell_text(text, quote=False) == text
    assert cell_text("a\x00b\x1bc\x7f") == "a\\x00b\\x1bc\\x7f"
    assert cell_text("line\nbreak\tand tab") == "line\nbreak\tand tab"
    assert cell_text(None) == ""
    assert cell_text("LAMP-001") == "LAMP-001"


def test_csv_export_writes_formulas_as_text():
    """The CSV export quotes every formula-like key or error and escapes NULs."""
    records = [{"key": text, "task_id": None, "status": "failed", "highest_risk": None,
                "high_risk_countries": [], "error": f"{text}\x00"} for text in DANGEROUS]
    handle = io.StringIO()
    write_csv(records, handle)
    rows = list(csv.reader(io.StringIO(handle.getvalue())))[1:]
    assert [row[0] for row in rows] == ["'" + t for t in DANGEROUS]
    error = CSV_COLUMNS.index("error")
    assert all(row[error].startswith("'") and row[error].endswith("\\x00") for row in rows)


def test_xlsx_writes_formulas_as_strings(tmp_path):
    """No catalog or platform string becomes a formula in the workbook."""
    comparison = {"score": 0.9, "title": "=cmd|' /C calc'!A0", "img_id": "i", "status": 1,
                  "country": "US", "similar": "+1", "confusion": "@x", "patent_id": "p",
                  "patent_pn": "-2", "risk_desc": "\x00nul", "difference": "d",
                  "risk_level": "High", "suggestion": "s"}
    records = [{"key": text, "line": n, "task_id": "t", "status": "done", "highest_risk": "High",
                "high_risk_countries": ["US"], "middle_risk_countries": [], "error": None,
                "report": {"report": {"comparisons": [comparison]}}}
               for n, text in enumerate(DANGEROUS, start=2)]
    path = tmp_path / "x.xlsx"
    assert write_xlsx(records, path) == len(DANGEROUS)
    book = load_workbook(path)
    sheet = book["Rows"]
    keys = [sheet.cell(row=n, column=1) for n in range(2, len(DANGEROUS) + 2)]
    # XlsxWriter stores a CR as the XML escape _x000D_, which openpyxl does not decode.
    assert [c.value.replace("_x000D_", "\r") for c in keys] == DANGEROUS
    assert {c.data_type for c in keys} == {"s"}
    design = book["Matched designs"]
    header = [c.value for c in design[1]]
    first = dict(zip(header, design[2], strict=True))
    assert first["title"].value == "=cmd|' /C calc'!A0"
    assert first["title"].data_type == "s"
    assert first["patent_pn"].value == "-2"
    assert first["patent_pn"].data_type == "s"
    assert first["risk_desc"].value == "\\x00nul"
    assert sheet.freeze_panes == "A2"
    last = chr(ord("A") + len(ROW_COLUMNS) - 1)
    assert sheet.auto_filter.ref == f"A1:{last}{len(DANGEROUS) + 1}"
    risk = ROW_COLUMNS.index("highest_risk") + 1
    assert sheet.cell(row=2, column=risk).fill.fgColor.rgb.endswith("FDECEA")  # High is red
    book.close()


def test_export_xlsx_holds_what_the_jsonl_holds(screened, tmp_path, capsys):
    """export --format xlsx: one row per catalog row, one per matched design, as the JSONL."""
    path = tmp_path / "r.xlsx"
    assert main(["export", str(screened["journal"]), "--format", "xlsx", "--out", str(path)]) == 0
    jsonl = tmp_path / "r.jsonl"
    assert main(["export", str(screened["journal"]), "--out", str(jsonl)]) == 0
    records = [json.loads(line) for line in jsonl.read_text("utf-8").splitlines()]
    rows = _sheet(path, "Rows")
    assert list(rows[0]) == list(ROW_COLUMNS) == list(CSV_COLUMNS)
    assert len(rows) == len(records)
    by_key = {rec["key"]: rec for rec in records}
    for row in rows:
        rec = by_key[row["key"]]
        assert row["line"] == rec["line"]
        assert row["status"] == rec["status"]
        assert row["task_id"] == rec["task_id"]
        assert row["highest_risk"] == rec["highest_risk"]
        assert (row["high_risk_countries"] or "") == ";".join(rec["high_risk_countries"])
        assert (row["middle_risk_countries"] or "") == ";".join(rec["middle_risk_countries"])
        assert row["error"] == rec["error"]
    designs = _sheet(path, "Matched designs")
    assert list(designs[0]) == list(DESIGN_COLUMNS)
    expected = [(rec["key"], c) for rec in records if rec["status"] == "done"
                for c in rec["report"]["report"]["comparisons"]]
    assert len(designs) == len(expected)
    for row, (key, c) in zip(designs, expected, strict=True):
        assert row["key"] == key
        for name in ("patent_pn", "country", "risk_level", "score", "status", "title",
                     "img_id", "patent_id", "similar", "difference", "confusion",
                     "risk_desc", "suggestion"):
            want = pytest.approx(c[name], rel=1e-14) if name == "score" else c[name]
            assert row[name] == want, name
        assert row["image_url"].startswith("https://")


def test_export_xlsx_needs_out(screened, capsys):
    """xlsx is binary: without --out, or with --out naming the journal, it is a usage error."""
    assert main(["export", str(screened["journal"]), "--format", "xlsx"]) == 2
    assert "--out" in capsys.readouterr().err
    journal = str(screened["journal"])
    assert main(["export", journal, "--format", "xlsx", "--out", journal]) == 2
    assert "is the journal" in capsys.readouterr().err


def test_screen_writes_the_report_beside_out(screened):
    """screen wrote OUT.html with a card per row and the catalog's titles and local image."""
    html = screened["html"].read_text("utf-8")
    assert html.count('<article class="card') == len(screened["records"])
    assert "Table lamp model 7" in html
    assert re.search(r'<div class="frame"><img src="data:image/(webp|jpeg);base64,', html)


def test_report_command_with_and_without_catalog(screened, tmp_path, capsys):
    """fto-async report JOURNAL --out F writes the report; --catalog adds names and images."""
    plain, named = tmp_path / "plain.html", tmp_path / "named.html"
    assert main(["report", str(screened["journal"]), "--out", str(plain)]) == 0
    assert str(plain) in capsys.readouterr().out
    assert main(["report", str(screened["journal"]), "--out", str(named), "--catalog",
                 str(screened["catalog"]), "--title", "Spring <catalog>"]) == 0
    text, richer = plain.read_text("utf-8"), named.read_text("utf-8")
    assert text.count('<article class="card') == len(screened["records"])
    assert "Table lamp model 7" not in text
    assert "Table lamp model 7" in richer
    assert "Spring &lt;catalog&gt;" in richer


def test_report_command_usage_errors(screened, tmp_path, capsys):
    """A missing journal, or --out naming the journal, is a usage error."""
    assert main(["report", str(tmp_path / "nope.db"), "--out", str(tmp_path / "r.html")]) == 2
    assert main(["report", str(screened["journal"]), "--out", str(screened["journal"])]) == 2
    assert "no journal" in capsys.readouterr().err


async def test_no_report_and_demo_prints_its_report(tmp_path, monkeypatch, capsys):
    """screen --no-report writes no HTML; demo writes one and prints its path."""
    catalog = tmp_path / "c.csv"
    catalog.write_text("sku,image_url,country\nA,https://example.com/a.png,US\n", "utf-8")
    async with Emulator(EmulatorConfig(time_scale=0.001, qps=None)) as emu:
        for name in ("PATSNAP_CLIENT_ID", "PATSNAP_CLIENT_SECRET"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("PATSNAP_API_KEY", "sk-demo")
        monkeypatch.setenv("PATSNAP_BASE_URL", emu.base_url)
        out = tmp_path / "r.jsonl"
        code = await asyncio.to_thread(main, ["screen", str(catalog), "--out", str(out),
                                              "--no-report", "--time-scale", "0.001"])
    assert code == 0
    assert out.is_file()
    assert not (tmp_path / "r.jsonl.html").exists()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    assert await asyncio.to_thread(main, ["demo", "--rows", "4", "--time-scale", "0.002"]) == 0
    printed = capsys.readouterr().out
    (folder,) = tmp_path.glob("fto-async-demo-*")
    report = folder / "results.jsonl.html"
    assert report.is_file()
    assert f"report   {report}" in printed


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_other_exports_unchanged(screened, tmp_path, fmt):
    """csv and jsonl exports still work next to xlsx."""
    out = tmp_path / f"r.{fmt}"
    assert main(["export", str(screened["journal"]), "--format", fmt, "--out", str(out)]) == 0
    assert out.stat().st_size > 0
