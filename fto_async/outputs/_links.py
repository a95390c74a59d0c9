"""Where a matched design's page is: the one link rule of every output. Strictly private.

:func:`patent_url` is the only place a patent number becomes a link. HTML, XLSX
(hyperlinks) and CSV/JSONL (a URL column) all call it::

    patent_url("USD1055174S1", "US")            # https://patents.google.com/patent/USD1055174S1
    patent_url("EU0012345670001S", "EU")        # https://euipo.europa.eu/eSearch/#details/designs/001234567-0001
    patent_url("CN305123456S", "CN", "https://register.example/{authority}/{pn}")

Defaults per authority: EU registered Community designs open in EUIPO's eSearch; every
other authority (US, CN, KR, JP, AU, ...) in Google Patents, which indexes their design
patents by the number the platform reports. A template (``--patent-link``, or the
environment variable ``FTO_PATENT_LINK``) replaces the default for every authority;
``{pn}`` and ``{authority}`` are filled in, percent-encoded. Only ``http``/``https``
templates are accepted (:func:`check_template`), and a link is never built from a number
that is empty or holds whitespace or control characters.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Final
from urllib.parse import quote, urlsplit

__all__ = ["ENV_VAR", "check_template", "patent_url", "template_from_env"]

#: The environment variable that sets the link template when ``--patent-link`` is not given.
ENV_VAR: Final = "FTO_PATENT_LINK"
_GOOGLE: Final = "https://patents.google.com/patent/{pn}"
_EUIPO: Final = "https://euipo.europa.eu/eSearch/#details/designs/{pn}"
_EU_DESIGN: Final = re.compile(r"EU(\d{9})(\d{4})S?")
_BAD_PN: Final = re.compile(r"[\s\x00-\x1f\x7f-\x9f]")
_FIELDS: Final = re.compile(r"\{(\w*)\}")


def check_template(template: str) -> str:
    """Return ``template`` if it is a usable link template, else raise ``ValueError``.

    A template is an ``http(s)`` URL with a host that names ``{pn}`` (and optionally
    ``{authority}``), and no other ``{...}`` field.
    """
    fields = set(_FIELDS.findall(template))
    if "pn" not in fields:
        raise ValueError(f"a patent link template must contain {{pn}}, got {template[:80]!r}")
    if fields - {"pn", "authority"}:
        raise ValueError(f"a patent link template may use only {{pn}} and {{authority}}, got "
                         f"{template[:80]!r}")  # fmt: skip
    try:
        parts = urlsplit(template.replace("{pn}", "x").replace("{authority}", "x"))
    except ValueError:
        parts = None
    if parts is None or parts.scheme.lower() not in ("http", "https") or not parts.hostname \
            or _BAD_PN.search(template):  # fmt: skip
        raise ValueError(f"a patent link template must be an http(s) URL, got {template[:80]!r}")
    return template


def template_from_env(environ: Mapping[str, str] | None = None) -> str | None:
    """The template ``FTO_PATENT_LINK`` sets (checked), or ``None`` when unset or empty."""
    value = (os.environ if environ is None else environ).get(ENV_VAR, "").strip()
    return check_template(value) if value else None


def patent_url(pn: object, authority: object = None, template: str | None = None) -> str | None:
    """The page of patent ``pn`` of ``authority`` (``None``: no usable number).

    Args:
        pn: the patent number as the platform reports it (``patent_pn``).
        authority: its country or office (``country``/``authority``); by default the
            number's first two letters.
        template: a checked template (:func:`check_template`) for every authority, or
            ``None`` for the defaults.
    """
    if not isinstance(pn, str) or not pn.strip() or _BAD_PN.search(pn.strip()):
        return None
    pn = pn.strip()
    office = authority.strip().upper() if isinstance(authority, str) and authority.strip() \
        else pn[:2].upper()  # fmt: skip
    if template is not None:
        return template.replace("{authority}", quote(office, safe="")).replace(
            "{pn}", quote(pn, safe=""))
    if office == "EU" and (match := _EU_DESIGN.fullmatch(pn.upper())):
        return _EUIPO.format(pn=f"{match.group(1)}-{match.group(2)}")
    return _GOOGLE.format(pn=quote(pn, safe=""))
