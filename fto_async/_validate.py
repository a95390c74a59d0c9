"""Validation rules for request fields. Strictly private: use the classes in :mod:`models`.

Each rule is a small function ``rule(field, value) -> normalised value`` that raises
:class:`~fto_async.errors.InvalidRequestError` naming ``field`` and the broken rule.
Rules check types themselves, so a wrong type (an ``int`` for a URL, a ``dict`` for
``lang``) is reported the same way as a wrong value, never as ``TypeError``.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import io
import os
import re
import stat
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple
from urllib.parse import urlsplit

from PIL import Image

from .errors import InvalidRequestError

__all__ = [
    "LANGS",
    "MAX_IMAGE_BYTES",
    "MAX_IMAGE_PIXELS",
    "MAX_MAIN_FIELD",
    "MAX_URL_LENGTH",
    "ImageType",
    "check_image_size",
    "country_codes",
    "date_order",
    "file_kind",
    "image_base64",
    "image_bytes",
    "lang",
    "loc_code",
    "loc_codes",
    "non_empty_sequence",
    "patent_number",
    "read_image_file",
    "simple_legal_status",
    "text",
    "url",
    "yyyymmdd",
]

#: Report languages the platform accepts.
LANGS = ("cn", "en")
#: The largest image accepted, in bytes, inclusive: P010's "maximum 4096KB" (reference §6).
#: 4,194,304 bytes are sent; 4,194,305 are refused before any call. :func:`check_image_size`
#: is the one place that compares a size with it.
MAX_IMAGE_BYTES = 4 * 1024 * 1024
#: Longest ``main_field`` we send.
MAX_MAIN_FIELD = 200
#: Longest URL accepted (8 KiB: far above any real image URL, far below a runaway cell).
MAX_URL_LENGTH = 8 * 1024
#: Most pixels an image may declare (a 4 MiB file of 40 megapixels is a decompression bomb
#: or a mistake; Pillow's own guard, ``Image.MAX_IMAGE_PIXELS``, is left as the user set it).
MAX_IMAGE_PIXELS = 40_000_000

_COUNTRY = re.compile(r"[A-Z]{2}")
_LOC = re.compile(r"([0-9]{2})-[0-9]{2}")
_DATE = re.compile(r"[0-9]{8}")
_DATA_URI = re.compile(r"data:image/(png|jpeg|jpg);base64,", re.IGNORECASE)
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_JPEG_MAGIC = b"\xff\xd8\xff"
#: ``simple_legal_status`` codes: 0 Inactive, 1 Active, 2 Pending, 220 PCT designated stage
#: expired, 221 PCT designated stage, 999 Undetermined (reference §9; the workflow page
#: itself lists 0/1/2, sibling image-search pages the rest).
_LEGAL_STATUS_VALUES = frozenset({0, 1, 2, 220, 221, 999})
_LEGAL_STATUS_TEXT = "0, 1, 2, 220, 221 or 999"


def _show(value: object) -> str:
    """Return a short repr of ``value`` for an error message (long values are cut)."""
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:57]}..."


def _type_name(value: object) -> str:
    return "None" if value is None else type(value).__name__


def non_empty_sequence(field: str, value: object, what: str) -> Sequence[object]:
    """Return ``value`` if it is a non-empty list or tuple; ``what`` names the items."""
    if isinstance(value, str | bytes | bytearray):
        raise InvalidRequestError(
            field, f"must be a list of {what}, not a bare string: pass [{value!r}]"
        )
    if not isinstance(value, Sequence):
        raise InvalidRequestError(field, f"must be a list of {what}, got {_type_name(value)}")
    if not value:
        raise InvalidRequestError(field, f"must be a non-empty list of {what}")
    return value


def url(field: str, value: object) -> str:
    """An http or https URL with a host and no whitespace or control characters."""
    if not isinstance(value, str):
        raise InvalidRequestError(
            field, f"must be an http or https URL (a str), got {_type_name(value)}"
        )
    if len(value) > MAX_URL_LENGTH:
        raise InvalidRequestError(
            field, f"must be at most {MAX_URL_LENGTH} characters, got {len(value)}"
        )
    if any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        raise InvalidRequestError(field, f"must not contain whitespace, got {_show(value)}")
    try:
        parts = urlsplit(value)
        host = parts.hostname
    except ValueError as exc:  # e.g. an unclosed IPv6 bracket
        raise InvalidRequestError(
            field, f"is not a valid URL ({exc}), got {_show(value)}"
        ) from None
    if parts.scheme.lower() not in ("http", "https"):
        raise InvalidRequestError(field, f"must be an http or https URL, got {_show(value)}")
    if not host:
        raise InvalidRequestError(field, f"must have a host, got {_show(value)}")
    return value


def country_codes(field: str, value: object) -> tuple[str, ...]:
    """A non-empty list of distinct two-letter upper-case codes (``"US"``, ``"EU"``)."""
    seq = non_empty_sequence(field, value, "country codes")
    codes: list[str] = []
    for code in seq:
        if not isinstance(code, str) or not _COUNTRY.fullmatch(code):
            raise InvalidRequestError(
                field, f"each code must be two upper-case letters, got {_show(code)}"
            )
        if code in codes:
            raise InvalidRequestError(field, f"codes must be distinct, {code!r} appears twice")
        codes.append(code)
    return tuple(codes)


def lang(field: str, value: object) -> str:
    """The report language: ``"cn"`` or ``"en"``."""
    if not isinstance(value, str) or value not in LANGS:
        raise InvalidRequestError(field, f"must be 'cn' or 'en', got {_show(value)}")
    return value


def loc_code(field: str, value: object) -> str:
    """A Locarno class code ``"NN-NN"`` whose class is 01 to 32 (``"14-02"``)."""
    match = _LOC.fullmatch(value) if isinstance(value, str) else None
    if match is None or not 1 <= int(match.group(1)) <= 32:
        raise InvalidRequestError(
            field, f"each Locarno code must look like '14-02' (class 01-32), got {_show(value)}"
        )
    return match.group(0)


def loc_codes(field: str, value: object) -> tuple[str, ...]:
    """A non-empty list of Locarno codes (see :func:`loc_code`)."""
    return tuple(
        loc_code(field, item) for item in non_empty_sequence(field, value, "Locarno codes")
    )


def yyyymmdd(field: str, value: object) -> str:
    """A calendar date as :class:`datetime.date` or ``"yyyyMMdd"``; returns ``"yyyyMMdd"``."""
    if isinstance(value, dt.date):
        return f"{value.year:04d}{value.month:02d}{value.day:02d}"
    if not isinstance(value, str) or not _DATE.fullmatch(value):
        raise InvalidRequestError(
            field, f"must be a datetime.date or a 'yyyyMMdd' string, got {_show(value)}"
        )
    try:
        dt.date(int(value[:4]), int(value[4:6]), int(value[6:]))
    except ValueError:
        raise InvalidRequestError(field, f"must be a real calendar date, got {value!r}") from None
    return value


def date_order(start_field: str, start: str | None, end_field: str, end: str | None) -> None:
    """Refuse an end date before the start date (both ``"yyyyMMdd"``); names ``end_field``."""
    if start is not None and end is not None and end < start:
        raise InvalidRequestError(
            end_field, f"must not be before {start_field} ({start!r}), got {end!r}"
        )


def text(field: str, value: object, *, max_len: int | None = None) -> str:
    """A non-blank str, at most ``max_len`` characters when given."""
    if not isinstance(value, str):
        raise InvalidRequestError(field, f"must be a str, got {_type_name(value)}")
    if not value.strip():
        raise InvalidRequestError(field, "must be a non-empty string (use None to leave it out)")
    if max_len is not None and len(value) > max_len:
        raise InvalidRequestError(field, f"must be at most {max_len} characters, got {len(value)}")
    return value


def image_base64(field: str, value: object) -> str:
    """Strict base64 of a PNG or JPEG of at most 4,194,304 bytes decoded, without a data prefix.

    A ``data:image/png;base64,`` or ``data:image/jpeg;base64,`` prefix is accepted and stripped.
    """
    if not isinstance(value, str):
        hint = (
            " (use WorkflowRequest.from_image_bytes for raw bytes)"
            if isinstance(value, bytes | bytearray)
            else ""
        )
        raise InvalidRequestError(field, f"must be a base64 str, got {_type_name(value)}{hint}")
    declared = None
    prefix = _DATA_URI.match(value)
    if prefix is not None:
        declared = "png" if prefix.group(1).lower() == "png" else "jpeg"
        value = value[prefix.end() :]
    elif value.startswith("data:"):
        raise InvalidRequestError(
            field, "a data URI must start with data:image/png;base64, or data:image/jpeg;base64,"
        )
    if not value:
        raise InvalidRequestError(field, "must not be empty")
    # 4 base64 characters carry 3 bytes: refuse an oversized image before decoding it.
    if len(value) > 4 * ((MAX_IMAGE_BYTES + 2) // 3):
        raise InvalidRequestError(
            field, f"must be at most {MAX_IMAGE_BYTES} bytes (4096 KB) decoded, got more"
        )
    try:
        data = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidRequestError(
            field, "must be strict base64 (A-Z a-z 0-9 + / with = padding, no line breaks)"
        ) from None
    kind = "jpeg" if image_bytes(field, data).ext == "jpg" else "png"
    if declared is not None and declared != kind:
        raise InvalidRequestError(
            field, f"the data URI says image/{declared} but the bytes are a {kind.upper()} image"
        )
    return value


class ImageType(NamedTuple):
    """What :func:`image_bytes` found: a file extension and a MIME type."""

    ext: str
    mime: str


_PNG = ImageType("png", "image/png")
_JPEG = ImageType("jpg", "image/jpeg")


def check_image_size(field: str, size: int, name: str | None = None) -> None:
    """The one size rule for images: at most :data:`MAX_IMAGE_BYTES` (4,194,304) bytes,
    inclusive, as P010 documents "maximum 4096KB" (reference §6).

    Raises:
        InvalidRequestError: ``size`` is over the limit.
    """
    if size > MAX_IMAGE_BYTES:
        what = f"{name} " if name else ""
        raise InvalidRequestError(
            field, f"{what}must be at most {MAX_IMAGE_BYTES} bytes (4096 KB), got {size} bytes"
        )


def image_bytes(
    field: str, data: bytes, name: str | None = None, *, size: int | None = None
) -> ImageType:
    """The one image rule (uploads, base64 bodies, catalog files): a PNG or JPEG of at most
    4,194,304 bytes (:func:`check_image_size`) that decodes, at most
    :data:`MAX_IMAGE_PIXELS` pixels.

    Three magic bytes prove nothing (a text file may start ``FF D8 FF``, a key may follow a
    PNG signature): the bytes are decoded with Pillow. ``data`` is the whole image;
    ``size``, when given, is the file's size and only refuses early (without decoding) a
    file that is too large. ``name`` (a file name) is only used in messages. Returns the
    image's type.
    """
    what = f"{name} " if name else ""
    check_image_size(field, max(len(data), size or 0), name)
    if data.startswith(_PNG_MAGIC):
        kind = _PNG
    elif data.startswith(_JPEG_MAGIC):
        kind = _JPEG
    else:
        raise InvalidRequestError(field, f"{what}must be a PNG or JPEG image".strip())
    _decode(field, data, what, kind)
    return kind


def _decode(field: str, data: bytes, what: str, kind: ImageType) -> None:
    """Decode ``data`` fully with Pillow; refuse anything that is not a sane PNG or JPEG."""
    fmt = "PNG" if kind is _PNG else "JPEG"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=(fmt,)) as img:
                width, height = img.size
                if width < 1 or height < 1 or width * height > MAX_IMAGE_PIXELS:
                    raise InvalidRequestError(
                        field, f"{what}has an implausible size ({width}x{height} pixels; "
                        f"at most {MAX_IMAGE_PIXELS} pixels)",
                    )
                img.verify()  # PNG: every chunk's checksum
            with Image.open(io.BytesIO(data), formats=(fmt,)) as img:
                if fmt == "JPEG":  # decode at 1/8 scale: every block is still read
                    img.draft(img.mode, (max(1, width // 8), max(1, height // 8)))
                img.load()
    except InvalidRequestError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise InvalidRequestError(
            field, f"{what}declares too many pixels (a decompression bomb)"
        ) from None
    except Exception as exc:  # Pillow raises many kinds on hostile bytes: all mean "not an image"
        raise InvalidRequestError(
            field, f"{what}is not a decodable {kind.ext.upper()} image ({type(exc).__name__})"
        ) from None
    if fmt == "PNG":
        trailing = len(data) - _png_end(data)
        if trailing > 0:
            raise InvalidRequestError(
                field, f"{what}has {trailing} bytes after the end of the PNG image"
            )


def _png_end(data: bytes) -> int:
    """The offset just past a PNG's ``IEND`` chunk (the PNG was verified already)."""
    offset = len(_PNG_MAGIC)
    while offset + 8 <= len(data):
        length = int.from_bytes(data[offset : offset + 4], "big")
        chunk = data[offset + 4 : offset + 8]
        offset += 12 + length
        if chunk == b"IEND":
            return offset
    return len(data)


def file_kind(mode: int) -> str:
    """What a file of ``st_mode`` ``mode`` is, for messages ("a named pipe", "a folder")."""
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a named pipe"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a regular file"


def read_image_file(
    field: str, path: str | os.PathLike[str], name: str | None = None
) -> tuple[bytes, ImageType]:
    """Read a local image safely and check it with :func:`image_bytes`. Blocking: async
    code calls it through :func:`asyncio.to_thread`.

    The path is resolved and must be a regular file (``os.stat``) before it is opened (a
    named pipe would block ``open()`` for ever, a device would never end). It is opened
    with ``O_NONBLOCK`` and checked again with ``fstat`` (in case it was swapped), and at
    most 4 MiB + 1 byte is read, whatever the file turns out to hold.

    Returns:
        The bytes and the image's type.

    Raises:
        InvalidRequestError: not a readable regular file, or not a valid image.
    """
    shown = name or Path(path).name

    def cannot(reason: str) -> InvalidRequestError:
        return InvalidRequestError(field, f"cannot read {shown} ({reason})")

    try:
        resolved = Path(path).resolve()
        info = os.stat(resolved)
    except (OSError, RuntimeError) as exc:  # RuntimeError: a symlink loop (Python < 3.13)
        raise cannot(getattr(exc, "strerror", None) or str(exc)) from None
    if not stat.S_ISREG(info.st_mode):
        kind = file_kind(info.st_mode)
        raise InvalidRequestError(field, f"cannot read {shown}: it is {kind}, not an image file")
    check_image_size(field, info.st_size, shown)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
    flags |= getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(resolved, flags)
    except OSError as exc:
        raise cannot(exc.strerror or str(exc)) from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise InvalidRequestError(
                field, f"cannot read {shown}: it is {file_kind(mode)}, not an image file"
            )
        chunks: list[bytes] = []
        left = MAX_IMAGE_BYTES + 1
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
    except OSError as exc:
        raise cannot(exc.strerror or str(exc)) from None
    finally:
        os.close(fd)
    data = b"".join(chunks)
    return data, image_bytes(field, data, shown)


def _legal_status_value(item: object) -> int | None:
    if isinstance(item, str):
        return int(item) if item.isdigit() and int(item) in _LEGAL_STATUS_VALUES else None
    if isinstance(item, int) and not isinstance(item, bool) and item in _LEGAL_STATUS_VALUES:
        return int(item)
    return None


def simple_legal_status(field: str, value: object) -> str:
    """Distinct statuses (0, 1, 2, 220, 221, 999) as ``"1,2"``, a list of ints or one int;
    returns them sorted, as ``"1,2"``."""
    items: Sequence[object]
    if isinstance(value, str):
        items = [part.strip() for part in value.split(",")]
    elif isinstance(value, int) and not isinstance(value, bool):
        items = [value]
    elif isinstance(value, Sequence) and not isinstance(value, bytes | bytearray):
        items = value
    else:
        raise InvalidRequestError(
            field, f"must be a str like '1,2' or a list of {_LEGAL_STATUS_TEXT}, "
            f"got {_type_name(value)}"
        )
    if not items:
        raise InvalidRequestError(field, f"must name at least one status ({_LEGAL_STATUS_TEXT})")
    statuses: list[int] = []
    for item in items:
        status = _legal_status_value(item)
        if status is None:
            raise InvalidRequestError(
                field, f"each status must be {_LEGAL_STATUS_TEXT} (comma-separated), "
                f"got {_show(item)}"
            )
        if status in statuses:
            raise InvalidRequestError(field, f"statuses must be distinct, {status} appears twice")
        statuses.append(status)
    return ",".join(str(s) for s in sorted(statuses))


#: A design-patent publication number: a two-letter authority, then 4 to 30 letters and
#: digits (``EU0065350760001S``, ``USD1055174S1``, ``CN305123456S``). No spaces or dashes.
_PATENT_NUMBER = re.compile(r"[A-Z]{2}[A-Z0-9]{4,30}")


def patent_number(field: str, value: object) -> str:
    """A publication number such as ``"EU0065350760001S"`` (see ``_PATENT_NUMBER``)."""
    if not isinstance(value, str):
        raise InvalidRequestError(field, f"must be a publication number (a str), got "
                                         f"{_type_name(value)}")  # fmt: skip
    if not _PATENT_NUMBER.fullmatch(value):
        raise InvalidRequestError(
            field,
            "must be a publication number: two upper-case letters, then 4-30 upper-case "
            f"letters or digits (e.g. 'EU0065350760001S', 'USD1055174S1'), got {_show(value)}",
        )
    return value
