"""Reading exported workbooks back."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def load_workbook(path: Path, *, read_only: bool = False) -> Any:
    """openpyxl's ``load_workbook``, with openpyxl imported on first use: every xdist
    worker collects the output tests and only one reads each workbook (openpyxl, with
    numpy, takes 0.17 s to import)."""
    import openpyxl

    return openpyxl.load_workbook(path, read_only=read_only)
