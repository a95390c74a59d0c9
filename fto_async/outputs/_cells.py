"""Spreadsheet cell text that cannot run: the one rule for the CSV and XLSX exports.

Catalog and platform strings are data. A spreadsheet reads a cell that starts with
``=``, ``+``, ``-`` or ``@`` (or a tab or carriage return before one) as a formula, so
:func:`cell_text` writes such a cell as text, and spells control characters as visible
escapes (``\\x00``) so that no NUL or terminal sequence reaches the file::

    cell_text("=HYPERLINK(...)")             # "'=HYPERLINK(...)"  (CSV: a leading quote)
    cell_text("=HYPERLINK(...)", quote=False) # "=HYPERLINK(...)"   (XLSX: write_string)
    cell_text("a\\x00b")                      # "a\\\\x00b"
"""

from __future__ import annotations

import re
from typing import Final

__all__ = ["FORMULA_PREFIXES", "cell_text"]

#: First characters that make a spreadsheet read a cell as a formula.
FORMULA_PREFIXES: Final = ("=", "+", "-", "@", "\t", "\r")
# C0 controls but tab, newline and carriage return, plus DEL and the C1 block.
_CONTROL: Final = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def _escape(match: re.Match[str]) -> str:
    return f"\\x{ord(match.group()):02x}"


def cell_text(value: object, *, quote: bool = True) -> str:
    """``value`` as cell text that a spreadsheet shows and never evaluates.

    Args:
        value: any value; ``None`` is the empty string.
        quote: prefix ``'`` to a cell that would start a formula (CSV). Pass ``False``
            where the writer marks the cell as text itself (XlsxWriter's ``write_string``).
    """
    text = "" if value is None else str(value)
    text = _CONTROL.sub(_escape, text)
    if quote and text.startswith(FORMULA_PREFIXES):
        text = "'" + text
    return text
