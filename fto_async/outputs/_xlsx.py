"""The Excel export of screening results (XlsxWriter, streaming). Private to the exports.

Two sheets, from the same records as the JSONL output (``fto-async export --format xlsx``):

* **Rows**: one row per catalog row: key, line, status, highest risk (coloured), the high
  and medium risk countries, how many designs matched, the top match, task id, error.
* **Matched designs**: one row per ``report.comparisons[]`` item of every row, in the
  platform's order: the row's key, patent number, country, risk (coloured), score, legal
  status, title, image ids and URL, and the platform's texts.

Both have a frozen header and an autofilter. Every text cell is written with
``write_string`` after :func:`~fto_async.outputs._cells.cell_text`, so no catalog or platform
string becomes a formula, a URL or a number, and control characters are escaped. The
workbook is written in ``constant_memory`` mode (rows go to disk as they come) and
replaces the target file only once complete.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import xlsxwriter
from xlsxwriter.format import Format
from xlsxwriter.worksheet import Worksheet

from ._cells import cell_text

__all__ = ["DESIGN_COLUMNS", "ROW_COLUMNS", "write_xlsx"]

#: Columns of the "Rows" sheet.
ROW_COLUMNS: Final = (
    "key", "line", "status", "highest_risk", "high_risk_countries", "middle_risk_countries",
    "matched_designs", "top_patent", "top_score", "task_id", "error",
)  # fmt: skip
#: Columns of the "Matched designs" sheet.
DESIGN_COLUMNS: Final = (
    "key", "patent_pn", "country", "risk_level", "score", "status", "legal_status", "title",
    "img_id", "patent_id", "image_url", "similar", "difference", "confusion", "risk_desc",
    "suggestion",
)  # fmt: skip
_WIDTHS: Final = {
    "key": 18, "line": 6, "status": 9, "highest_risk": 12, "high_risk_countries": 14,
    "middle_risk_countries": 14, "matched_designs": 9, "top_patent": 20, "top_score": 9,
    "task_id": 38, "error": 50, "patent_pn": 20, "country": 8, "risk_level": 10,
    "score": 8, "legal_status": 11, "title": 32, "img_id": 24, "patent_id": 38,
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
                self.sheet.write_number(self.row, col, value)
                continue
            text = cell_text(value, quote=False)[:_MAX_CELL]
            fmt = self.formats.get(text) if column in coloured else None
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


def write_xlsx(records: Iterable[Mapping[str, Any]], out: str | os.PathLike[str]) -> int:
    """Write ``records`` (as the JSONL output holds them) to the workbook ``out``.

    Returns:
        The number of catalog rows written.
    """
    target = Path(out)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp.xlsx")
    options = {"constant_memory": True, "strings_to_formulas": False,
               "strings_to_urls": False, "strings_to_numbers": False, "tmpdir": str(tmp.parent)}
    try:
        book = xlsxwriter.Workbook(str(tmp), options)
        header = book.add_format({"bold": True, "bg_color": "#1D2330", "font_color": "#FFFFFF",
                                  "border": 0})  # fmt: skip
        formats = {name: book.add_format({"bg_color": fill, "font_color": font, "bold": True})
                   for name, (fill, font) in _COLOURS.items()}  # fmt: skip
        rows = _Sheet(book, "Rows", ROW_COLUMNS, header, formats)
        designs = _Sheet(book, "Matched designs", DESIGN_COLUMNS, header, formats)
        for record in records:
            items = _comparisons(record)
            top = max(items, key=lambda c: _number(c.get("score")) or 0.0, default=None)
            status = record.get("status")
            rows.add({
                **record,
                "high_risk_countries": ", ".join(record.get("high_risk_countries") or ()),
                "middle_risk_countries": ", ".join(record.get("middle_risk_countries") or ()),
                "matched_designs": len(items) if status == "done" else None,
                "top_patent": None if top is None else top.get("patent_pn"),
                "top_score": None if top is None else _number(top.get("score")),
            }, ("highest_risk", "status"))  # fmt: skip
            images = _images(record) if items else {}
            for item in items:
                legal = item.get("status")
                designs.add({
                    **item, "key": record.get("key"), "score": _number(item.get("score")),
                    "status": legal if isinstance(legal, int) else None,
                    "legal_status": _LEGAL.get(legal) if isinstance(legal, int) else None,
                    "image_url": images.get(f"img_id:{item.get('img_id')}")
                    or images.get(f"patent_pn:{item.get('patent_pn')}")
                    or item.get("patent_image_url"),
                }, ("risk_level",))  # fmt: skip
        rows.close()
        designs.close()
        book.close()
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return rows.row
