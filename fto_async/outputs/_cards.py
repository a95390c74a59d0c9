"""What one card of the HTML risk report shows, and the header's tallies. Strictly private.

:func:`card` turns one result row (a :class:`~fto_async.journal.JournalRow`, or a record
as ``fto-async`` writes it to JSONL) into plain values for the template; platform JSON
is read defensively (a missing or odd field is left out, never an exception).
:class:`Tally` accumulates the header. :func:`thumbnail` is the only way an image
becomes a ``data:`` URI: Pillow must decode it first, and it is always re-encoded by us.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import io
import ipaddress
import re
import warnings
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

import attrs
import PIL
from PIL import Image, ImageOps, features

from ..journal import JournalRow
from ..models import normalize_score
from ._links import patent_url
from ._record import STATUSES, base_record

__all__ = [
    "DEFAULT_PX", "ENCODER", "MAX_IMAGE_BYTES", "RISKS", "Product", "Tally", "blocked_host", "card",
    "has_local_image",
    "is_thumbnail_uri", "local_image", "most", "thumbnail", "web_url",
]  # fmt: skip

#: ``data-risk`` values, in the report's order, with their labels.
RISKS: Final = {
    "high": "High", "medium": "Medium", "low": "Low", "none": "No risk found",
    "pending": "Not finished", "unknown": "Unknown (may hold a task)", "failed": "Failed",
    "invalid": "Invalid",
}  # fmt: skip
_RANK: Final = {name: n for n, name in enumerate(RISKS)}
_LEVELS: Final = {"high": 3, "medium": 2, "low": 1}
_LEGAL: Final = {1: ("Valid", "valid"), 2: ("Invalid", "lapsed"), 3: ("Pending", "pending")}
_TEXTS: Final = (
    ("similar", "Similar"), ("difference", "Different"), ("confusion", "Confusion"),
    ("risk_desc", "Risk"), ("suggestion", "Suggestion"),
)  # fmt: skip
_PLACEHOLDER_HOST: Final = "upload.invalid"  # the CLI's stand-in for a not-yet-uploaded image
_BAD_URL: Final = re.compile(r"[\s\"'<>\\`]")
_IPV4_PART: Final = re.compile(r"0[xX][0-9a-fA-F]*|[0-9]+")
_CJK: Final = re.compile("[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af]")
#: Never read more than this for a thumbnail.
MAX_IMAGE_BYTES: Final = 32 * 1024 * 1024
_MAX_PIXELS: Final = 64_000_000  # nor decode a larger image (a decompression bomb)
_MAX_LINE_ART_PIXELS: Final = 4_000_000  # a platform line drawing: a tiny PNG may claim more
_WEBP: Final = bool(features.check("webp"))
_WEBP_QUALITY: Final = 50
_JPEG_QUALITY: Final = 72
#: Changes whenever :func:`thumbnail` would encode the same image differently (a cache key).
ENCODER: Final = (f"thumb-2 pillow-{PIL.__version__} "
                  f"{'webp' if _WEBP else 'jpeg'}-{_WEBP_QUALITY if _WEBP else _JPEG_QUALITY}")
DEFAULT_PX: Final = 200  # the product frame's CSS size
_DATA_URI: Final = re.compile(r"data:image/(?:webp|jpeg|png);base64,[A-Za-z0-9+/]+={0,2}")


@attrs.frozen
class Product:
    """What the report shows of a catalog row besides its results.

    Attributes:
        title: the product's name.
        image_url: an ``http(s)`` URL of its image (shown lazily, never fetched by us).
        image_path: a local image (embedded as a small thumbnail once Pillow decodes it).
        note: a line the card shows under the title (say, that the catalog row changed
            since it was screened).
    """

    title: str | None = None
    image_url: str | None = None
    image_path: Path | None = None
    note: str | None = None


def web_url(value: object) -> str | None:
    """``value`` if it is an absolute ``http(s)`` URL on a public host (the only kind of
    ``src`` we write: see :func:`blocked_host`)."""
    if not isinstance(value, str):
        return None
    text = value.strip()
    lowered = text[:8].lower()
    if not lowered.startswith(("https://", "http://")):
        return None
    if _BAD_URL.search(text) or _PLACEHOLDER_HOST in text or blocked_host(text):
        return None
    return text


def blocked_host(url: object) -> str | None:
    """Why the report does not load ``url`` (``None``: it may): a loopback, private,
    link-local or otherwise non-public address, which a browser opening the report would
    call (a beacon on counsel's network each time the file is opened).

    IPv4 literals are read as browsers read them (``127.1``, ``0x7f.0.0.1`` and
    ``2130706433`` are all 127.0.0.1); ``localhost`` names are loopback. Host names are not
    resolved (the report is written offline).
    """
    if not isinstance(url, str):
        return None
    try:
        host = urlsplit(url.strip()).hostname
    except ValueError:
        return "its address cannot be parsed"
    if not host:
        return None
    host = host.rstrip(".")
    if host == "localhost" or host.endswith(".localhost"):
        return "it points at this computer (localhost)"
    try:
        address = _ip_literal(host)
    except ValueError:  # a number a browser refuses as an address: never loaded
        return "its host is not a valid address"
    if address is None:
        return None
    if address.is_loopback:
        return f"it points at this computer ({address})"
    if address.is_link_local:
        return f"it points at a link-local address ({address})"
    if address.is_private or address.is_reserved or address.is_multicast \
            or address.is_unspecified or not address.is_global:
        return f"it points at a private address ({address})"
    return None


def _ip_literal(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address a browser makes of ``host`` if it is an IP literal (WHATWG rules).

    Raises:
        ValueError: ``host`` ends in a number but is no valid IPv4 address.
    """
    if ":" in host:
        with contextlib.suppress(ValueError):
            address = ipaddress.IPv6Address(host.strip("[]").split("%")[0])
            return address.ipv4_mapped or address
        return None
    parts = host.split(".")
    if parts and parts[-1] == "":
        parts.pop()
    if not parts or not _IPV4_PART.fullmatch(parts[-1]):
        return None  # a name, not a number: browsers resolve it
    numbers = []
    for part in parts:
        if not _IPV4_PART.fullmatch(part):
            raise ValueError(host)  # not a valid address
        low = part.lower()
        base = 16 if low.startswith("0x") else 8 if len(part) > 1 and part[0] == "0" else 10
        digits = low[2:] if base == 16 else part
        numbers.append(int(digits or "0", base))
    if len(numbers) > 4 or any(n > 255 for n in numbers[:-1]):
        raise ValueError(host)
    value = numbers[-1]
    if value >= 256 ** (5 - len(numbers)):
        raise ValueError(host)
    for n, number in enumerate(numbers[:-1]):
        value += number << (8 * (3 - n))
    return ipaddress.IPv4Address(value)


def thumbnail(
    source: bytes | Path, size: int, *, line_art: bool = False, data: bytes | None = None
) -> str | None:
    """A ``data:`` URI of ``source`` scaled to fit ``size`` px, or ``None`` if not an image.

    The image must decode with Pillow (JPEG, PNG, GIF or WebP); it is always re-encoded
    (WebP, else JPEG; PNG for ``line_art``), so the URI holds only bytes we wrote. A JPEG
    is decoded at a reduced scale (``draft``) and any image is shrunk by an integer factor
    (``reduce``) before the LANCZOS pass; Pillow decodes and scales without the GIL.
    ``data``: the bytes of the file ``source``, already read (and hashed) by the caller.
    """
    try:
        if data is not None:
            pass
        elif isinstance(source, Path):
            if source.stat().st_size > MAX_IMAGE_BYTES:
                return None
            data = source.read_bytes()
        else:
            data = source
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=("JPEG", "PNG", "GIF", "WEBP")) as im:
                if im.width * im.height > (_MAX_LINE_ART_PIXELS if line_art else _MAX_PIXELS):
                    return None  # a bomb; a line drawing is small (the platform's are)
                if im.format == "JPEG":
                    im.draft("RGB", (size, size))
                im.load()
                image = ImageOps.exif_transpose(im)
                image.thumbnail((size, size), Image.Resampling.LANCZOS, reducing_gap=2.0)
                return _encode(image, line_art)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError,
            Image.DecompressionBombWarning, MemoryError):  # fmt: skip
        return None


def is_thumbnail_uri(value: object) -> bool:
    """Whether ``value`` is a ``data:`` URI of the kind :func:`thumbnail` writes."""
    return isinstance(value, str) and _DATA_URI.fullmatch(value) is not None


def _encode(image: Image.Image, line_art: bool) -> str:
    if image.mode in ("RGBA", "LA", "P", "PA") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        flat = Image.new("RGB", rgba.size, (255, 255, 255))
        flat.paste(rgba, mask=rgba.getchannel("A"))
        image = flat
    out = io.BytesIO()
    if line_art:
        image.convert("L").save(out, "PNG", optimize=True)
        mime = "image/png"
    elif _WEBP:  # a third of the bytes of a JPEG of the same quality
        # method 2: half the time of 4 for 5% more bytes (0 and 1 are 70% larger).
        image.convert("RGB").save(out, "WEBP", quality=_WEBP_QUALITY, method=2)
        mime = "image/webp"
    else:
        image.convert("RGB").save(out, "JPEG", quality=_JPEG_QUALITY, optimize=True)
        mime = "image/jpeg"
    return f"data:{mime};base64,{base64.b64encode(out.getvalue()).decode('ascii')}"


def _data_uri_bytes(value: object) -> bytes | None:
    """The bytes of a base64 ``data:image/...`` URI, or of plain base64 text."""
    if not isinstance(value, str) or not value:
        return None
    text = value
    if text.startswith("data:"):
        head, sep, text = text.partition(",")
        if not sep or not head.endswith(";base64"):
            return None
    try:
        return base64.b64decode(text, validate=False)
    except (binascii.Error, ValueError):
        return None


def _obj(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, dict) else {}


def _str(value: object) -> str | None:
    if value is None or isinstance(value, dict | list):
        return None
    text = str(value).strip()
    return text or None


def _strs(value: object) -> list[str]:
    if not isinstance(value, list | tuple):
        return []
    return [s for s in (_str(v) for v in value) if s is not None]


def _level(value: object) -> str | None:
    text = _str(value)
    folded = None if text is None else text.casefold()
    return folded if folded in _LEVELS else None


def _score(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return normalize_score(float(value))  # the model's one rule (0-1 or 0-100, clamped)


def _images(report: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """The patents of a report's searches, by ``img_id:...`` and by ``patent_pn:...``."""
    found: dict[str, Mapping[str, Any]] = {}
    for block in ("patent_messages", "rrffusion_response"):
        holder = report.get(block)
        items = holder.get("patent_messages") if isinstance(holder, dict) else None
        for item in items if isinstance(items, list) else ():
            if isinstance(item, dict):
                for name in ("img_id", "patent_pn"):
                    ident = item.get(name)
                    if isinstance(ident, str):
                        found.setdefault(f"{name}:{ident}", item)
    return found


def _match(
    item: Mapping[str, Any], images: Mapping[str, Mapping[str, Any]], template: str | None,
    new: frozenset[str],
) -> dict[str, Any]:  # fmt: skip
    level = _level(item.get("risk_level"))
    score = _score(item.get("score"))
    status = item.get("status")
    legal = _LEGAL.get(status) if isinstance(status, int) else None
    img_id, pn = _str(item.get("img_id")), _str(item.get("patent_pn"))
    found = [images.get(f"img_id:{img_id}"), images.get(f"patent_pn:{pn}")]
    candidates = [v for i in found if i is not None for v in (i.get("url_120"), i.get("url"))]
    candidates.append(item.get("patent_image_url"))
    thumb = next((u for u in map(web_url, candidates) if u is not None), None)
    blocked = None if thumb is not None else next(
        (why for why in map(blocked_host, candidates) if why), None)
    texts = [(label, text) for name, label in _TEXTS if (text := _str(item.get(name)))]
    return {
        "pn": pn or "(no number)", "title": _str(item.get("title")),
        "country": _str(item.get("country")), "risk": level or "none",
        "risk_label": RISKS[level] if level else "Unrated",
        "score": score, "score_pct": None if score is None else f"{score * 100:.0f}%",
        "legal": legal[0] if legal else None, "legal_class": legal[1] if legal else "unknown",
        "thumb": thumb, "texts": texts, "url": patent_url(pn, item.get("country"), template),
        "thumb_note": f"Image not loaded: {blocked}" if blocked else None,
        "live": status != 2, "new": pn in new,
        "cjk": any(_CJK.search(text) for _label, text in texts),
        "_order": (-_LEVELS.get(level or "", 0), -(score or 0.0)),
    }  # fmt: skip


def card(
    source: JournalRow | Mapping[str, Any], product: Product | None, *,
    thumb_px: int = DEFAULT_PX, thumbs: Callable[[Path, int], str | None] = thumbnail,
    template: str | None = None, changes: Mapping[str, Any] | None = None,
) -> dict[str, Any]:  # fmt: skip
    """The template's values for one result row (see the module docstring).

    ``thumbs(path, px)`` makes a local product image's thumbnail (a cache may answer);
    ``template`` is the patent link template; ``changes`` what changed since the row's
    previous result (``new_matches``, ``previous_screening``; a record carries them).
    """
    request: Mapping[str, Any] = {}
    if isinstance(source, JournalRow):
        request = source.request
        rec: Mapping[str, Any] = {**base_record(source), "title": request.get("title")}
        status = str(rec["status"])
    else:
        rec = source
        status = str(rec.get("status") or "pending")
        if status not in STATUSES:
            status = "pending"
    data = _obj(rec.get("report") if status == "done" else None)
    inner = _obj(data.get("report"))
    comparisons = inner.get("comparisons")
    comparisons = comparisons if isinstance(comparisons, list) else []
    images = _images(data) if comparisons else {}
    changes = changes if changes is not None else rec
    new = frozenset(_strs(changes.get("new_matches"))) if status == "done" else frozenset()
    matches = [_match(c, images, template, new) for c in comparisons if isinstance(c, dict)]
    matches.sort(key=lambda m: m["_order"])
    if status == "done":
        levels = [_LEVELS[m["risk"]] for m in matches if m["risk"] in _LEVELS]
        top = _level(rec.get("highest_risk")) if not matches else None
        risk = next((k for k, v in _LEVELS.items() if levels and v == max(levels)), top or "none")
        live = [_LEVELS[m["risk"]] for m in matches if m["risk"] in _LEVELS and m["live"]]
        live_risk = next((k for k, v in _LEVELS.items() if live and v == max(live)), "none")
    else:
        live_risk = status
        risk = status
    high = _strs(inner.get("high_risk_country")) or _strs(rec.get("high_risk_countries"))
    middle = _strs(inner.get("middle_risk_country")) or _strs(rec.get("middle_risk_countries"))
    countries = _strs(request.get("country")) or _strs(inner.get("country"))
    countries += [c for c in (*high, *middle, *(m["country"] for m in matches if m["country"]))
                  if c not in countries]  # fmt: skip
    per_country = {}
    for country in countries:
        here = [_LEVELS[m["risk"]] for m in matches if m["country"] == country
                and m["risk"] in _LEVELS]  # fmt: skip
        if status != "done":
            per_country[country] = status
        elif here:
            per_country[country] = next(k for k, v in _LEVELS.items() if v == max(here))
        else:
            per_country[country] = "high" if country in high else (
                "medium" if country in middle else "none")
    product = product or Product()
    title = _str(rec.get("title")) or product.title
    key = _str(rec.get("key")) or "(no key)"
    image, embedded = _product_image(rec, request, product, thumb_px, thumbs)
    messages = data.get("patent_messages")
    total = messages.get("total_search_result_count") if isinstance(messages, dict) else None
    return {
        "key": key, "seq": rec.get("line") if isinstance(rec.get("line"), int) else 0,
        "title": title, "status": status, "risk": risk, "risk_label": RISKS[risk],
        "rank": _RANK[risk], "high": high, "middle": middle, "countries": countries,
        "cr": " ".join(f"{c}:{r}" for c, r in per_country.items() if " " not in c),
        "q": f"{key} {title or ''}".casefold(), "image": image, "embedded": embedded,
        "image_note": None if image else _image_note(rec, request, product),
        "note": product.note,
        "drawing": thumbnail(raw, thumb_px // 2, line_art=True)
        if (raw := _data_uri_bytes(data.get("line_drawing_base64"))) else None,
        "error": _str(rec.get("error")) if status in ("failed", "invalid") else None,
        "matches": matches, "task_id": _str(rec.get("task_id")),
        "searched": total if isinstance(total, int) and not isinstance(total, bool) else None,
        "filters": {
            "country": _strs(request.get("country")) or _strs(inner.get("country")),
            "loc": _strs(request.get("loc_items")) or _strs(inner.get("loc")),
            "since": _str(request.get("apply_start_time")) or _str(inner.get("apply_start_time")),
            "until": _str(request.get("apply_end_time")),
            "lang": _str(request.get("lang")),
        },
        "operate_date": inner.get("operate_date") if isinstance(
            inner.get("operate_date"), int) else None,
        "live_risk": live_risk, "live_label": RISKS[live_risk], "new": len(new),
        "since_date": _str(changes.get("previous_screening")) if status == "done" else None,
        "first": changes.get("risk_change") == "first", "same_as": None,
        "risk_up": changes.get("risk_change") == "up",
    }  # fmt: skip


def local_image(source: JournalRow | Mapping[str, Any], product: Product | None) -> Path | None:
    """The local image file the row's card embeds, if it names one."""
    if product is not None and product.image_path is not None:
        return product.image_path
    if isinstance(source, JournalRow):
        return None
    path = source.get("image_path")
    return Path(path) if isinstance(path, str) and path else None


def has_local_image(source: JournalRow | Mapping[str, Any], product: Product | None) -> bool:
    """Whether the row's card embeds an image we must decode (a file or base64 bytes)."""
    if product is not None and product.image_path is not None:
        return True
    if isinstance(source, JournalRow):
        return '"target_image_base64"' in source.request_json
    return bool(source.get("image_path"))


def _product_image(
    rec: Mapping[str, Any], request: Mapping[str, Any], product: Product, px: int,
    thumbs: Callable[[Path, int], str | None],
) -> tuple[str | None, bool]:
    """The product's image ``src`` and whether it is embedded (a thumbnail we made)."""
    path = product.image_path or (Path(p) if isinstance(p := rec.get("image_path"), str)
                                  and p else None)  # fmt: skip
    if path is not None:
        uri = thumbs(path, px)
        if uri is not None:
            return uri, True
    raw = _data_uri_bytes(request.get("target_image_base64"))
    if raw is not None:
        uri = thumbnail(raw, px)
        if uri is not None:
            return uri, True
    for candidate in (rec.get("image_url"), product.image_url, request.get("url")):
        url = web_url(candidate)
        if url is not None:
            return url, False
    return None, False


def _image_note(
    rec: Mapping[str, Any], request: Mapping[str, Any], product: Product
) -> str | None:
    """Why the product's image URL is not shown (a private address), if that is why."""
    for candidate in (rec.get("image_url"), product.image_url, request.get("url")):
        why = blocked_host(candidate) if isinstance(candidate, str) and candidate else None
        if why:
            return f"Image not loaded: {why}"
    return None


@attrs.define
class Tally:
    """The header's numbers, accumulated card by card (memory stays bounded).

    Attributes:
        rows: cards. risk: cards per ``data-risk``. high, medium: cards with high or
            medium risk per country. countries, locs, since, until, langs: the filters
            the rows were screened with (how many rows used each). first, last: the
            earliest and latest report date (epoch ms).
    """

    rows: int = 0
    risk: Counter[str] = attrs.field(factory=Counter)
    high: Counter[str] = attrs.field(factory=Counter)
    medium: Counter[str] = attrs.field(factory=Counter)
    countries: Counter[str] = attrs.field(factory=Counter)
    locs: Counter[str] = attrs.field(factory=Counter)
    since: Counter[str] = attrs.field(factory=Counter)
    until: Counter[str] = attrs.field(factory=Counter)
    langs: Counter[str] = attrs.field(factory=Counter)
    first: int | None = None
    last: int | None = None
    compared: int = 0  #: done cards with a previous result
    new_rows: int = 0  #: of those, cards with new matches
    newly_high: int = 0  #: of those, cards whose risk went up to high
    previous: str | None = None  #: the earliest previous screening date

    def add(self, values: Mapping[str, Any]) -> None:
        """Count one card (the result of :func:`card`)."""
        self.rows += 1
        if values["since_date"]:
            self.compared += 1
            self.previous = min(self.previous or values["since_date"], values["since_date"])
        if values["new"]:
            self.new_rows += 1
            self.newly_high += values["risk"] == "high" and values["risk_up"]
        self.risk[values["risk"]] += 1
        self.high.update(set(values["high"]))
        self.medium.update(set(values["middle"]) - set(values["high"]))
        filters = values["filters"]
        self.countries.update(filters["country"])
        self.locs.update(filters["loc"])
        for name in ("since", "until", "lang"):
            if filters[name]:
                getattr(self, "langs" if name == "lang" else name)[filters[name]] += 1
        when = values["operate_date"]
        if when:
            self.first = when if self.first is None else min(self.first, when)
            self.last = when if self.last is None else max(self.last, when)

    def chart(self, limit: int = 12) -> list[tuple[str, int, int]]:
        """``(country, high, medium)`` for the countries with the most risky rows."""
        names = sorted(set(self.high) | set(self.medium),
                       key=lambda c: (-self.high[c], -self.medium[c], c))  # fmt: skip
        return [(c, self.high[c], self.medium[c]) for c in names[:limit]]

    def filter_countries(self) -> list[str]:
        """Every country any row was screened in or found at risk in, most used first."""
        names = Counter(self.countries)
        names.update(self.high)
        names.update(self.medium)
        return sorted(names, key=lambda c: (-names[c], c))


def most(counter: Counter[str], limit: int = 8) -> Iterable[str]:
    """The most common keys of ``counter`` (ties in name order)."""
    return sorted(counter, key=lambda k: (-counter[k], k))[:limit]
