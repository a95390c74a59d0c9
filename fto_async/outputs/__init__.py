"""What a screening run gives a user: one record per row, and its writers.

Usage::

    from fto_async.outputs import write_html, write_xlsx, records_from_journal

    write_html("results.jsonl.journal.db", "report.html")      # the last run's rows
    write_xlsx(records_from_journal(journal), "results.xlsx")

One record rule (:mod:`._record`): a journal row becomes one flat record, with one
status vocabulary (``done``, ``failed``, ``invalid``, ``pending``, ``unknown``) and one
row set (the last run's catalog rows, :func:`run_filter`). Every writer reads that
record, nothing else: a new format is a writer over it. The core (client, batch,
journal, polling, transport) never imports this package; ``fto_async.cli`` does.

Modules::

    _record    the record rule: journal row -> flat record, status word, row set
    _matches   a report's matched designs as plain values; what changed since the last one
    _links     the one patent link rule (patent_url; --patent-link, FTO_PATENT_LINK)
    _cells     spreadsheet cell text that cannot run (CSV and XLSX)
    _flat      JSONL and CSV writers, and the atomic file they write to
    _xlsx      the Excel workbook (XlsxWriter, streaming)
    _html      the HTML risk report (one self-contained file)
    _cards     what one card of the HTML report shows; image thumbnails
    _thumbs    the HTML report's thumbnail cache (SQLite)
    templates/ the report's Jinja2 templates, style and script (package data)
"""

from ._flat import CSV_COLUMNS, atomic_write, write_csv, write_jsonl
from ._html import HtmlReport, Product, write_html
from ._record import (
    STATUSES,
    last_run,
    record_from_journal,
    records_from_journal,
    run_filter,
    status_of,
)
from ._xlsx import write_xlsx

__all__ = [
    "CSV_COLUMNS",
    "STATUSES",
    "HtmlReport",
    "Product",
    "atomic_write",
    "last_run",
    "record_from_journal",
    "records_from_journal",
    "run_filter",
    "status_of",
    "write_csv",
    "write_html",
    "write_jsonl",
    "write_xlsx",
]
