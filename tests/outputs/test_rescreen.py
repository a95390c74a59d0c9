"""Results counsel can act on (issue 21): links, one column set, legal status, and what is
new since the previous screening, in JSONL, CSV, XLSX and the summary."""

from __future__ import annotations

import csv
import io
import json

import pytest

from fto_async.cli import main
from fto_async.outputs._links import check_template, patent_url, template_from_env
from fto_async.outputs._record import FLAT_COLUMNS, live_only
from fto_async.outputs._xlsx import ROW_COLUMNS
from tests.outputs._xlsx import load_workbook

GOOGLE = "https://patents.google.com/patent/"


# -- links ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pn", "authority", "url"),
    [
        ("USD1055174S1", "US", GOOGLE + "USD1055174S1"),
        ("CN305123456S", "CN", GOOGLE + "CN305123456S"),
        ("KR3012345670000S", None, GOOGLE + "KR3012345670000S"),
        ("EU0012345670001S", "EU", "https://euipo.europa.eu/eSearch/#details/designs/"
                                   "001234567-0001"),
        ("EU-odd", "EU", GOOGLE + "EU-odd"),
        ("a/b?c#d", "US", GOOGLE + "a%2Fb%3Fc%23d"),
    ],
)
def test_patent_url_defaults_per_authority(pn, authority, url):
    """Google Patents by default, EUIPO eSearch for EU designs; the number is encoded."""
    assert patent_url(pn, authority) == url


def test_patent_url_template_and_refusals():
    """A template fills {pn} and {authority} (encoded); bad numbers and templates are refused."""
    template = check_template("https://register.example/{authority}/{pn}?x=1")
    assert patent_url("CN305 S", "CN", template) is None  # whitespace: no link
    assert patent_url("CN<1>", "cn", template) == "https://register.example/CN/CN%3C1%3E?x=1"
    for pn in (None, "", "  ", "a\x00b", 42):
        assert patent_url(pn, "US") is None
    for bad in ("javascript:alert(1)//{pn}", "https://x.example/", "ftp://x/{pn}",
                "https://x.example/{pn}/{evil}", "/relative/{pn}", "https:///{pn}",
                "https://x.example/{pn} y"):
        with pytest.raises(ValueError, match="template"):
            check_template(bad)
    assert template_from_env({}) is None
    assert template_from_env({"FTO_PATENT_LINK": "http://a.example/{pn}"}) == \
        "http://a.example/{pn}"
    with pytest.raises(ValueError, match="http"):
        template_from_env({"FTO_PATENT_LINK": "file:///{pn}"})


def test_bad_patent_link_is_a_usage_error(rescreened, capsys, monkeypatch):
    """--patent-link and FTO_PATENT_LINK are checked before anything is written."""
    journal = str(rescreened["journal"])
    assert main(["export", journal, "--patent-link", "javascript:{pn}"]) == 2
    monkeypatch.setenv("FTO_PATENT_LINK", "https://no-field.example/")
    assert main(["export", journal]) == 2
    assert "FTO_PATENT_LINK" in capsys.readouterr().err


# -- one column set ------------------------------------------------------------------------


def _export(journal, *extra: str) -> str:
    out = io.StringIO()
    import contextlib

    with contextlib.redirect_stdout(out):
        assert main(["export", str(journal), *extra]) == 0
    return out.getvalue()


def test_csv_xlsx_and_jsonl_share_one_column_set(rescreened, tmp_path):
    """CSV header == XLSX Rows header == the JSONL record's flat fields, in order; the
    top match links out; scores are percentages; 'none' is written out."""
    records = rescreened["records"]
    assert list(records[0])[: len(FLAT_COLUMNS)] == list(FLAT_COLUMNS)
    assert list(records[0])[len(FLAT_COLUMNS):] == ["report"]
    rows = list(csv.DictReader(io.StringIO(_export(rescreened["journal"], "--format", "csv"))))
    assert list(rows[0]) == list(FLAT_COLUMNS) == list(ROW_COLUMNS)
    by_key = {r["key"]: r for r in rows}
    for rec in records:
        row = by_key[rec["key"]]
        assert row["title"] == rec["title"]
        assert row["title"].startswith("Product ")
        assert row["image"] == rec["image"]
        assert row["image"].startswith("https://")
        assert row["highest_risk"] in ("High", "Medium", "Low", "none")
        if rec["matched_designs"]:
            assert row["top_url"].startswith(GOOGLE) or "euipo" in row["top_url"]
            assert 0 < float(row["top_score_pct"]) <= 100
            assert row["top_legal_status"] in ("valid", "invalid", "pending")
        else:
            assert row["highest_risk"] == "none"
    path = tmp_path / "r.xlsx"
    assert main(["export", str(rescreened["journal"]), "--format", "xlsx", "--out", str(path)]) == 0
    book = load_workbook(path)
    sheet = book["Rows"]
    header = [c.value for c in sheet[1]]
    assert header == list(FLAT_COLUMNS)
    risks = [sheet.cell(row=n, column=header.index("highest_risk") + 1).value
             for n in range(2, sheet.max_row + 1)]
    order = {"High": 0, "Medium": 1, "Low": 2, "none": 3}
    assert [order[r] for r in risks] == sorted(order[r] for r in risks)  # riskiest first
    url_col = header.index("top_url") + 1
    linked = [sheet.cell(row=n, column=url_col) for n in range(2, sheet.max_row + 1)
              if sheet.cell(row=n, column=url_col).value]
    assert linked
    assert all(c.hyperlink is not None and _target(c.hyperlink) == c.value
                          for c in linked)
    score = sheet.cell(row=2, column=header.index("top_score_pct") + 1)
    assert score.number_format == "0.0%"
    assert 0 < score.value <= 1
    designs = book["Matched designs"]
    dheader = [c.value for c in designs[1]]
    cell = designs.cell(row=2, column=dheader.index("url") + 1)
    assert cell.hyperlink is not None
    assert cell.value.startswith("https://")


def _target(link) -> str:
    """A hyperlink's URL (XlsxWriter keeps a #fragment as the link's location)."""
    return link.target + (f"#{link.location}" if link.location else "")


# -- legal status --------------------------------------------------------------------------


def test_highest_live_risk_beside_the_platforms(rescreened):
    """highest_risk is the platform's; highest_live_risk ignores invalid rights."""
    seen_differ = False
    for rec in rescreened["records"]:
        comparisons = rec["report"]["report"]["comparisons"]
        levels = [c["risk_level"] for c in comparisons]
        live = [c["risk_level"] for c in comparisons if c["status"] != 2]
        rank = ["none", "Low", "Medium", "High"]
        assert rec["highest_risk"] == max(levels, key=rank.index, default="none")
        assert rec["highest_live_risk"] == max(live, key=rank.index, default="none")
        seen_differ |= rec["highest_risk"] != rec["highest_live_risk"]
    assert seen_differ  # the emulator's mix of legal statuses shows the difference


def test_export_live_only_drops_invalid_rights(rescreened):
    """--live-only: no invalid comparison, top match live, platform level unchanged."""
    full = [json.loads(x) for x in _export(rescreened["journal"]).splitlines()]
    live = [json.loads(x) for x in _export(rescreened["journal"], "--live-only").splitlines()]
    assert [r["key"] for r in full] == [r["key"] for r in live]
    for before, after in zip(full, live, strict=True):
        kept = after["report"]["report"]["comparisons"]
        assert all(c["status"] != 2 for c in kept)
        assert after["matched_designs"] == len(kept)
        assert after["top_legal_status"] in ("valid", "pending", None)
        assert after["highest_risk"] == before["highest_risk"]
    assert live_only({"status": "failed", "report": None}) == {"status": "failed", "report": None}


# -- what is new ---------------------------------------------------------------------------


def test_first_screening_says_so(rescreened):
    """The first run has no previous result: risk_change 'first', never '0 new'."""
    for rec in rescreened["first"]:
        assert rec["risk_change"] == "first"
        assert rec["new_matches"] is None
        assert rec["previous_screening"] is None


def test_rescreen_marks_exactly_the_rows_that_changed(rescreened):
    """After one publication round, new_matches is non-empty on exactly the hit rows, and
    those designs are the only difference from the first result."""
    changed = rescreened["changed"]
    assert 3 <= len(changed) < len(rescreened["records"])
    first = {r["key"]: r for r in rescreened["first"]}
    for rec in rescreened["records"]:
        assert rec["previous_screening"] is not None
        old = {c["patent_pn"] for c in first[rec["key"]]["report"]["report"]["comparisons"]}
        now = {c["patent_pn"] for c in rec["report"]["report"]["comparisons"]}
        assert set(rec["new_matches"]) == now - old
        assert bool(rec["new_matches"]) == (rec["key"] in changed), rec["key"]
        assert rec["dropped_matches"] == []
        assert rec["risk_change"] in ("up", "same")
    # the cache was not read: every distinct request went to the platform again
    assert rescreened["rescreen_tasks"] == 38


def test_export_changed_and_csv_carry_the_changes(rescreened):
    """export --changed writes only the changed rows; the CSV carries new_matches."""
    changed = [json.loads(x) for x in _export(rescreened["journal"], "--changed").splitlines()]
    assert {r["key"] for r in changed} == rescreened["changed"]
    rows = list(csv.DictReader(io.StringIO(
        _export(rescreened["journal"], "--format", "csv", "--changed"))))
    assert {r["key"] for r in rows} == rescreened["changed"]
    assert all(r["new_matches"] and r["previous_screening"] for r in rows)


def test_summary_counts_new_matches(rescreened, capsys):
    """The rescreen's summary says how many rows have new matches, and how many went High."""
    from fto_async.cli._results import Tally

    tally = Tally()
    for rec in rescreened["records"]:
        tally.add(rec)
    text = tally.changes()
    assert text is not None
    assert text.startswith(f"{len(rescreened['changed'])} rows with new")
    first = Tally()
    for rec in rescreened["first"]:
        first.add(rec)
    assert first.changes() == "first screening: no earlier result to compare with"


def test_html_links_use_the_template_and_escape_the_number(tmp_path):
    """The report's patent links follow --patent-link; a hostile number stays inert."""
    from fto_async.outputs import write_html

    evil = '"><script>alert(1)</script>'
    comparison = {"score": 0.9, "title": "t", "img_id": "i", "status": 1, "country": "US",
                  "patent_pn": evil, "risk_level": "High"}
    ok = {**comparison, "patent_pn": "USD1S1"}
    rec = {"key": "K", "line": 2, "status": "done", "error": None,
           "report": {"report": {"comparisons": [comparison, ok]}}}
    html = write_html([rec], tmp_path / "r.html",
                      patent_link="https://reg.example/{authority}/{pn}").path.read_text()
    assert 'href="https://reg.example/US/USD1S1"' in html
    assert "<script>alert" not in html
    assert "%22%3E%3Cscript%3E" in html  # the number is percent-encoded in its link


def test_invalid_rows_show_their_title_and_line(tmp_path):
    """An invalid row's card names the product and its catalog line."""
    from fto_async.outputs import write_html
    from fto_async.outputs._record import invalid_record

    rec = invalid_record("BAD-1", 7, "country: bad code", title="Glass lamp", image=None)
    html = write_html([rec], tmp_path / "r.html").path.read_text()
    assert "Glass lamp" in html
    assert "catalog line 7" in html


def test_report_header_counts_every_run_and_per_row_filters(rescreened):
    """The header counts the calls of both runs (and the last one's), and a filter only
    some rows used says how many."""
    import re

    html = rescreened["html"].read_text("utf-8")
    found = re.search(r"(\d+) platform calls in all runs \((\d+) in the last\)", html)
    assert found is not None
    total, last = int(found.group(1)), int(found.group(2))
    assert total > last > 0
    assert re.search(r"09-01 \(\d+ of 40 rows\)", html)


def test_report_header_calls_are_the_ledgers(rescreened, tmp_path):
    """One home for the screening's calls: the header of the report written by `screen`
    and by `report` both read the journal's call ledger, as `usage` does."""
    import re

    from fto_async.cli import main

    html = rescreened["html"].read_text("utf-8")
    found = re.search(r"(\d+) platform calls in all runs \((\d+) in the last\)", html)
    assert found is not None
    assert main(["usage", str(rescreened["journal"]), "--json"]) == 0
    out = tmp_path / "again.html"
    assert main(["report", str(rescreened["journal"]), "--out", str(out)]) == 0
    again = re.search(r"(\d+) platform calls in all runs \((\d+) in the last\)",
                      out.read_text("utf-8"))
    assert again is not None
    assert again.groups() == found.groups()
