"""Catalog parsing: CSV and JSONL, bad rows with their line numbers, file-level errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fto_async import ImageSearchRequest, InvalidRequestError, WorkflowRequest
from fto_async.cli._catalog import (
    Catalog,
    CatalogError,
    Defaults,
    check_defaults,
    parse_list,
    stand_in_key,
)
from tests._shared import PNG

US = Defaults(country=("US",))


def write(tmp_path: Path, name: str, text: str | bytes) -> Path:
    """Write a catalog file and return its path."""
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def bad_rows(catalog: Catalog) -> list[tuple[int, str | None, str]]:
    """The (line, key, reason) of every bad row."""
    return [(r.line, r.key, r.error or "") for r in catalog.rows() if not r.ok]


CSV_WITH_BAD_ROWS = """\
sku,image_url,country,loc,since
A1,https://example.com/a1.png,"US,EU",06-01,
A2,https://example.com/a2.png,us,,

A3,https://example.com/a3.png,,99-01,
A4,,,,
A1,https://example.com/again.png,,,
A5,https://example.com/a5.png,,,20230230
,https://example.com/nokey.png,,,
A6,https://example.com/a6.png,"CN,JP",,20200101
"""


def test_csv_good_and_bad_rows_with_line_numbers(tmp_path):
    """Every bad CSV row is reported with its first line and why; good rows build requests."""
    catalog = Catalog(write(tmp_path, "c.csv", CSV_WITH_BAD_ROWS), US)
    rows = list(catalog.rows())
    assert [r.line for r in rows] == [2, 3, 5, 6, 7, 8, 9, 10]
    bad = bad_rows(catalog)
    assert [(line, key) for line, key, _ in bad] == [
        (3, "A2"), (5, "A3"), (6, "A4"), (7, "A1"), (8, "A5"), (9, None)
    ]
    reasons = [reason for _, _, reason in bad]
    assert reasons[0].startswith("country:")
    assert "'us'" in reasons[0]
    assert reasons[1].startswith("loc_items:")
    assert reasons[2].startswith("image:")
    assert "duplicate" in reasons[3]
    assert "line 2" in reasons[3]
    assert reasons[4].startswith("apply_start_time:")
    assert "no key" in reasons[5]
    good = [r for r in rows if r.ok]
    assert [r.key for r in good] == ["A1", "A6"]
    assert good[0].request == ImageSearchRequest(
        "https://example.com/a1.png", ["US", "EU"], "en", loc_items=["06-01"]
    )
    assert good[1].request is not None
    assert good[1].request.country == ("CN", "JP")
    assert good[1].request.apply_start_time == "20200101"


def test_duplicate_and_keyless_rows_get_unique_journal_keys(tmp_path):
    """A repeated or missing key gets a journal key unique to its line."""
    catalog = Catalog(write(tmp_path, "c.csv", CSV_WITH_BAD_ROWS), US)
    jkeys = [r.jkey for r in catalog.rows()]
    assert len(set(jkeys)) == len(jkeys)
    assert stand_in_key(7) in jkeys
    assert stand_in_key(9) in jkeys


def test_defaults_fill_in_and_rows_override(tmp_path):
    """Command-line defaults apply unless the row sets country, loc, since, lang or main_field."""
    text = (
        "id,url,country,loc,lang,main_field\n"
        "1,https://example.com/1.png,,,,\n"
        "2,https://example.com/2.png,JP,14-02,cn,lamp\n"
    )
    defaults = Defaults(country=("US", "EU"), lang="en", loc=("06-01",), since="20200101")
    r1, r2 = Catalog(write(tmp_path, "c.csv", text), defaults).rows()
    assert r1.request == ImageSearchRequest(
        "https://example.com/1.png", ["US", "EU"], "en", loc_items=["06-01"],
        apply_start_time="20200101",
    )
    assert r2.request == ImageSearchRequest(
        "https://example.com/2.png", ["JP"], "cn", loc_items=["14-02"],
        apply_start_time="20200101", main_field="lamp",
    )


def test_workflow_rows_build_workflow_requests(tmp_path):
    """With the workflow defaults, rows become WorkflowRequests carrying the title."""
    text = "sku,image_url,title\nW1,https://example.com/w.png,Blue chair\n"
    (row,) = Catalog(write(tmp_path, "c.csv", text), Defaults(workflow=True)).rows()
    assert isinstance(row.request, WorkflowRequest)
    assert row.request.title == "Blue chair"
    assert row.request.country is None


def test_utf8_bom_is_ignored(tmp_path):
    """A UTF-8 byte-order mark does not spoil the first column's name."""
    text = "\ufeffsku,image_url\nB1,https://example.com/b.png\n"
    (row,) = Catalog(write(tmp_path, "c.csv", text.encode("utf-8")), US).rows()
    assert row.ok
    assert row.key == "B1"


def test_header_names_are_case_and_space_insensitive(tmp_path):
    """Column names match whatever their case and surrounding spaces."""
    text = " SKU , Image_URL \nB1,https://example.com/b.png\n"
    (row,) = Catalog(write(tmp_path, "c.csv", text), US).rows()
    assert row.ok
    assert row.key == "B1"


def test_non_utf8_file_is_a_catalog_error(tmp_path):
    """A Latin-1 file raises CatalogError naming the encoding problem and the line."""
    text = "sku,image_url,title\nB1,https://example.com/b.png,Caf\xe9\n".encode("latin-1")
    catalog = Catalog(write(tmp_path, "c.csv", text), US)
    with pytest.raises(CatalogError, match=r"not UTF-8.*line 2"):
        catalog.scan()


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("name,image_url\nx,https://example.com/x.png\n", r"no key column.*'name', 'image_url'"),
        ("sku,picture\nx,https://example.com/x.png\n", r"no image column.*'sku', 'picture'"),
        ("", "empty"),
        ("\n\n", "empty"),
        ("sku,image_url\n", "no rows"),
    ],
)
def test_file_level_errors(tmp_path, text, match):
    """Missing key or image columns, an empty file or a header alone raise CatalogError."""
    with pytest.raises(CatalogError, match=match):
        Catalog(write(tmp_path, "c.csv", text), US).scan()


def test_missing_country_column_without_flag_is_an_error(tmp_path):
    """An image-search catalog with no country column needs --country."""
    catalog = Catalog(write(tmp_path, "c.csv", "sku,url\nx,https://example.com/x.png\n"))
    with pytest.raises(CatalogError, match="--country"):
        catalog.scan()


def test_missing_file_is_a_catalog_error(tmp_path):
    """A catalog that does not exist raises CatalogError."""
    with pytest.raises(CatalogError, match="cannot open"):
        Catalog(tmp_path / "nope.csv", US).scan()


def test_scan_counts_rows_bad_ones_included(tmp_path):
    """scan() counts every data record, skipping blank lines."""
    assert Catalog(write(tmp_path, "c.csv", CSV_WITH_BAD_ROWS), US).scan() == 8


def test_too_many_values_is_a_bad_row(tmp_path):
    """A row with more values than header columns is reported, not shifted silently."""
    text = "sku,image_url\nx,https://example.com/x.png,extra\n"
    ((line, key, reason),) = bad_rows(Catalog(write(tmp_path, "c.csv", text), US))
    assert line == 2
    assert key is None
    assert "3 values" in reason


def test_quoted_newline_keeps_line_numbers_right(tmp_path):
    """A quoted value spanning two lines shifts the next row's line number."""
    text = 'sku,image_url,title\nx,https://example.com/x.png,"two\nlines"\ny,,\n'
    rows = list(Catalog(write(tmp_path, "c.csv", text), US).rows())
    assert [r.line for r in rows] == [2, 4]
    assert rows[0].title == "two\nlines"


JSONL = """\
{"sku": "J1", "image_url": "https://example.com/j1.png", "country": ["US", "EU"]}
{"sku": "J2", "url": "https://example.com/j2.png", "country": "CN,JP", "loc": ["06-01"]}
not json

[1, 2]
{"sku": 7, "url": "https://example.com/j7.png", "since": 20200101}
{"sku": "J3", "url": "https://example.com/j3.png", "country": ["XX1"]}
"""


def test_jsonl_rows_and_bad_lines(tmp_path):
    """JSONL rows take lists or comma strings; bad JSON and non-objects are bad rows."""
    rows = list(Catalog(write(tmp_path, "c.jsonl", JSONL), US).rows())
    assert [(r.line, r.ok) for r in rows] == [
        (1, True), (2, True), (3, False), (5, False), (6, True), (7, False)
    ]
    assert rows[0].request is not None
    assert rows[0].request.country == ("US", "EU")
    assert rows[1].request is not None
    assert rows[1].request.loc_items == ("06-01",)
    assert "bad JSON" in (rows[2].error or "")
    assert "not a JSON object" in (rows[3].error or "")
    assert rows[4].key == "7"
    assert rows[4].request is not None
    assert rows[4].request.apply_start_time == "20200101"
    assert (rows[5].error or "").startswith("country:")


def test_ndjson_with_bom_and_missing_key_field(tmp_path):
    """An .ndjson file is JSONL; a first object without a key field is a file-level error."""
    path = write(tmp_path, "c.ndjson", '\ufeff{"name": "x", "url": "https://e.com/x.png"}\n')
    with pytest.raises(CatalogError, match=r"no key column.*'name', 'url'"):
        Catalog(path, US).scan()


def test_image_path_rows(tmp_path):
    """image_path rows resolve against the catalog's folder and are checked to be JPG/PNG."""
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "ok.png").write_bytes(PNG)
    (tmp_path / "img" / "text.png").write_text("not an image")
    text = (
        "sku,image_path\n"
        "P1,img/ok.png\n"
        "P2,img/missing.png\n"
        "P3,img/text.png\n"
        f"P4,{tmp_path / 'img' / 'ok.png'}\n"
    )
    rows = list(Catalog(write(tmp_path, "c.csv", text), US).rows())
    assert [r.ok for r in rows] == [True, False, False, True]
    assert rows[0].image_path == tmp_path / "img" / "ok.png"
    assert rows[0].request is None
    assert "cannot read" in (rows[1].error or "")
    assert "must be a PNG or JPEG" in (rows[2].error or "")
    request = rows[0].make_request(url="https://cdn.example.com/u.png")
    assert request == ImageSearchRequest("https://cdn.example.com/u.png", ["US"], "en")
    wf = Catalog(write(tmp_path, "w.csv", text), Defaults(workflow=True))
    first = next(iter(wf.rows()))
    assert isinstance(first.make_request(image=PNG), WorkflowRequest)


def test_image_path_row_fields_are_checked_before_upload(tmp_path):
    """A bad country on an image_path row is reported at parse time, before any upload."""
    (tmp_path / "ok.png").write_bytes(PNG)
    text = "sku,image_path,country\nP1,ok.png,usa\n"
    ((line, _key, reason),) = bad_rows(Catalog(write(tmp_path, "c.csv", text), US))
    assert line == 2
    assert reason.startswith("country:")


def test_rows_stream_lazily(tmp_path):
    """rows() is a generator: reading the first row does not parse the rest."""
    lines = ["sku,image_url"] + [f"k{i},https://example.com/{i}.png" for i in range(5000)]
    catalog = Catalog(write(tmp_path, "c.csv", "\n".join(lines) + "\n"), US)
    rows = catalog.rows()
    assert next(rows).key == "k0"
    rows.close()


def test_check_defaults_validates_flags():
    """Command-line defaults are validated with the models' rules."""
    assert check_defaults("US, EU", "cn", "06-01", "20200101", False) == Defaults(
        country=("US", "EU"), lang="cn", loc=("06-01",), since="20200101"
    )
    with pytest.raises(InvalidRequestError, match="--country"):
        check_defaults("us", "en", None, None, False)
    with pytest.raises(InvalidRequestError, match="--since"):
        check_defaults(None, "en", None, "2020-01-01", False)
    with pytest.raises(InvalidRequestError, match="--lang"):
        check_defaults(None, "fr", None, None, False)


def test_parse_list():
    """Comma strings and JSON lists become stripped lists; empty becomes None."""
    assert parse_list(" US , EU ,") == ["US", "EU"]
    assert parse_list(["CN", " JP "]) == ["CN", "JP"]
    assert parse_list("") is None
    assert parse_list(None) is None


def test_sample_catalog_has_three_bad_rows():
    """The bundled sample catalog is valid except for its three deliberate bad rows."""
    path = Path(__file__).parents[2] / "fto_async" / "data" / "sample_catalog.csv"
    catalog = Catalog(path, US)
    assert catalog.scan() >= 35
    reasons = [reason.split(":")[0] for _, _, reason in bad_rows(catalog)]
    assert reasons == ["country", "apply_start_time", "image"]
    assert json.dumps(reasons)
