"""The Excel export of screening results (XlsxWriter, streaming). Private to the exports.

Two sheets, from the same records as the JSONL output (``fto-async export --format xlsx``):

* **Rows**: one row per catalog row, the record's flat fields (the CSV's columns,
  :data:`~fto_async.outputs._record.FLAT_COLUMNS`, in the same order), riskiest first
  (``highest_risk``, then the catalog line): risks and statuses coloured, the top score
  as a percentage, the top match's page a hyperlink, long texts wrapped.
* **Matched designs**: one row per ``report.comparisons[]`` item of every row, in the
  platform's order: the row's key, patent number, its page (a hyperlink), country, risk
  (coloured), score (a percentage), legal status, title, image ids and URL, and the
  platform's texts.

Both have a frozen header and an autofilter. Links come from
:func:`~fto_async.outputs._links.patent_url` (``http(s)`` only). Every text cell is written with
``write_string`` after :func:`~fto_async.outputs._cells.cell_text`, so no catalog or platform
string becomes a formula, a URL or a number, and control characters are escaped. The
workbook is written in ``constant_memory`` mode (rows go to disk as they come) and
replaces the target file only once complete.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:  # XlsxWriter is imported when a workbook is written (a faster CLI start)
    import xlsxwriter
    from xlsxwriter.format import Format
    from xlsxwriter.worksheet import Worksheet

from ..models import normalize_score
from ._cells import cell_text
from ._links import patent_url
from ._record import FLAT_COLUMNS, flat_cells

__all__ = ["DESIGN_COLUMNS", "ROW_COLUMNS", "write_xlsx"]

#: Columns of the "Rows" sheet: the record's flat fields, as in the CSV.
ROW_COLUMNS: Final = FLAT_COLUMNS
#: Columns of the "Matched designs" sheet.
DESIGN_COLUMNS: Final = (
    "key", "patent_pn", "url", "country", "risk_level", "score", "status", "legal_status",
    "title",
    "img_id", "patent_id", "image_url", "similar", "difference", "confusion", "risk_desc",
    "suggestion",
)  # fmt: skip
_WIDTHS: Final = {
    "key": 18, "line": 6, "title": 32, "image": 32, "status": 9, "highest_risk": 12,
    "highest_live_risk": 12, "high_risk_countries": 14, "middle_risk_countries": 14,
    "top_patent": 20, "top_title": 28, "top_score_pct": 9, "top_legal_status": 10,
    "top_url": 36, "matched_designs": 9, "new_matches": 22, "dropped_matches": 22,
    "risk_change": 10, "previous_screening": 12, "follow_ups": 24, "url": 36,
    "task_id": 38, "error": 50, "patent_pn": 20, "country": 8, "risk_level": 10,
    "score": 8, "legal_status": 11, "img_id": 24, "patent_id": 38,
    "image_url": 40, "similar": 50, "difference": 50, "confusion": 50, "risk_desc": 50,
    "suggestion": 50,
}  # fmt: skip
_LEGAL: Final = {1: "Valid", 2: "Invalid", 3: "Pending"}
_COLOURS: Final = {  # fill, font
    "High": ("#FDECEA", "#B42318"), "Medium": ("#FFF4E5", "#B54708"),
    "Low": ("#E8F5EE", "#1F6F43"), "failed": ("#F1ECF8", "#5B3F8F"),
    "invalid": ("#F0F1F3", "#6B7280"),
}  # fmt: skip
_MAX_CELL: Final = 32_767  # Excel's limit on the characters of one cell
_MAX_URL: Final = 2_079  # Excel's limit on a hyperlink
_PERCENT: Final = frozenset({"top_score_pct", "score"})  # written as a fraction, shown as %
_LINKS: Final = frozenset({"top_url", "url"})
_WRAP: Final = frozenset({"title", "top_title", "image", "error", "new_matches",
                          "dropped_matches", "follow_ups", "similar", "difference", "confusion",
                          "risk_desc", "suggestion"})  # fmt: skip
_ORDER: Final = {"High": 0, "Medium": 1, "Low": 2, "none": 3}


class _Sheet:
    """Private: one worksheet being written row by row (constant_memory needs the order)."""

    def __init__(self, book: xlsxwriter.Workbook, name: str, columns: Sequence[str],
                 header: Format, formats: Mapping[str, Format]) -> None:  # fmt: skip
        self.sheet: Worksheet = book.add_worksheet(name)
        self.columns = columns
        self.formats = formats
        self.row = 0
        for col, column in enumerate(columns):
            self.sheet.set_column(col, col, _WIDTHS.get(column, 14))
            self.sheet.write_string(0, col, column, header)
        self.sheet.freeze_panes(1, 0)

    def add(self, values: Mapping[str, Any], coloured: tuple[str, ...]) -> None:
        self.row += 1
        for col, column in enumerate(self.columns):
            value = values.get(column)
            if value is None or value == "":
                continue
            if isinstance(value, bool):
                value = str(value)
            if isinstance(value, int | float):
                if column in _PERCENT:
                    self.sheet.write_number(self.row, col, value, self.formats["%"])
                else:
                    self.sheet.write_number(self.row, col, value)
                continue
            text = cell_text(value, quote=False)[:_MAX_CELL]
            if column in _LINKS and text.startswith(("https://", "http://")) \
                    and len(text) <= _MAX_URL:  # fmt: skip
                self.sheet.write_url(self.row, col, text, self.formats["link"], text)
                continue
            fmt = self.formats.get(text) if column in coloured else None
            if fmt is None and column in _WRAP:
                fmt = self.formats["wrap"]
            self.sheet.write_string(self.row, col, text, fmt)

    def close(self) -> None:
        self.sheet.autofilter(0, 0, max(self.row, 1), len(self.columns) - 1)


def _number(value: object) -> float | int | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return value


def _comparisons(record: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    report = record.get("report")
    inner = report.get("report") if isinstance(report, dict) else None
    items = inner.get("comparisons") if isinstance(inner, dict) else None
    return [c for c in items if isinstance(c, dict)] if isinstance(items, list) else []


def _images(record: Mapping[str, Any]) -> dict[str, str]:
    report = record.get("report")
    found: dict[str, str] = {}
    if not isinstance(report, dict):
        return found
    for block in ("patent_messages", "rrffusion_response"):
        holder = report.get(block)
        items = holder.get("patent_messages") if isinstance(holder, dict) else None
        for item in items if isinstance(items, list) else ():
            if isinstance(item, dict) and isinstance(url := item.get("url_120") or
                                                     item.get("url"), str):  # fmt: skip
                for name in ("img_id", "patent_pn"):
                    if isinstance(ident := item.get(name), str):
                        found.setdefault(f"{name}:{ident}", url)
    return found


def _row_order(record: Mapping[str, Any]) -> tuple[int, int]:
    """Riskiest first, then catalog order; rows without a result after every done row."""
    risk = record.get("highest_risk")
    rank = _ORDER.get(risk, 4) if isinstance(risk, str) else 4
    line = record.get("line")
    return rank, line if isinstance(line, int) and not isinstance(line, bool) else 0


def write_xlsx(
    records: Iterable[Mapping[str, Any]], out: str | os.PathLike[str], *,
    template: str | None = None,
) -> int:  # fmt: skip
    """Write ``records`` (as the JSONL output holds them) to the workbook ``out``.

    ``template`` is the patent link template (:mod:`~fto_async.outputs._links`) of the
    *Matched designs* sheet; the *Rows* sheet links what the records hold (``top_url``).

    Returns:
        The number of catalog rows written.
    """
    target = Path(out)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp.xlsx")
    options = {"constant_memory": True, "strings_to_formulas": False,
               "strings_to_urls": False, "strings_to_numbers": False, "tmpdir": str(tmp.parent)}
    try:
        import xlsxwriter

        book = xlsxwriter.Workbook(str(tmp), options)
        header = book.add_format({"bold": True, "bg_color": "#1D2330", "font_color": "#FFFFFF",
                                  "border": 0, "text_wrap": True})  # fmt: skip
        formats = {name: book.add_format({"bg_color": fill, "font_color": font, "bold": True})
                   for name, (fill, font) in _COLOURS.items()}  # fmt: skip
        formats["%"] = book.add_format({"num_format": "0.0%"})
        formats["wrap"] = book.add_format({"text_wrap": True, "valign": "top"})
        formats["link"] = book.add_format({"font_color": "#1D4ED8", "underline": 1})
        rows = _Sheet(book, "Rows", ROW_COLUMNS, header, formats)
        designs = _Sheet(book, "Matched designs", DESIGN_COLUMNS, header, formats)
        kept: list[tuple[tuple[int, int], int, dict[str, Any]]] = []
        for record in records:
            flat = dict(zip(FLAT_COLUMNS, flat_cells(record), strict=True))
            pct = _number(flat.get("top_score_pct"))
            flat["top_score_pct"] = None if pct is None else pct / 100
            kept.append((_row_order(record), len(kept), flat))
            items = _comparisons(record)
            images = _images(record) if items else {}
            for item in items:
                legal = item.get("status")
                score = _number(item.get("score"))
                designs.add({
                    **item, "key": record.get("key"),
                    "score": None if score is None else normalize_score(float(score)),
                    "status": legal if isinstance(legal, int) else None,
                    "legal_status": _LEGAL.get(legal) if isinstance(legal, int) else None,
                    "url": patent_url(item.get("patent_pn"), item.get("country"), template),
                    "image_url": images.get(f"img_id:{item.get('img_id')}")
                    or images.get(f"patent_pn:{item.get('patent_pn')}")
                    or item.get("patent_image_url"),
                }, ("risk_level",))  # fmt: skip
        designs.close()
        kept.sort(key=lambda entry: (entry[0], entry[1]))
        for _order, _n, flat in kept:
            rows.add(flat, ("highest_risk", "highest_live_risk", "status"))
        rows.close()
        book.close()
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return rows.row
