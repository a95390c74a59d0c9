"""Product catalogs (CSV or JSONL) read lazily into screening requests. Strictly private.

A catalog is a CSV file with a header, or a JSONL file (``.jsonl`` / ``.ndjson``) of
objects with the same fields. Field names are matched case-insensitively:

========================  ===================================================================
``sku`` or ``id``         the row's key (required, unique)
``image_url`` or ``url``  an http(s) URL of the product image
``image_path``            a local JPG/PNG (relative to the catalog's folder), instead of a URL
``country``               authority codes, comma-separated (overrides ``--country``)
``loc``                   Locarno codes like ``14-02``, comma-separated (overrides ``--loc``)
``since``                 first filing date ``yyyyMMdd`` (overrides ``--since``)
``lang``                  report language ``en`` / ``cn`` (overrides ``--lang``)
``main_field``            a keyword for the image search
``title``                 the product's name (the workflow's task title)
========================  ===================================================================

Reading is streaming: :meth:`Catalog.rows` yields one :class:`Row` at a time, with
its line number, and never holds the file. A row that cannot be screened (a
validation error from the request models, a duplicate or empty key, no image, an
unreadable ``image_path``, a bad JSON line) is a :class:`Row` with ``error`` set; only
problems with the whole file raise :class:`CatalogError`.

Local files never leave the machine unasked: an ``image_path`` must resolve (symlinks
followed) inside the image root, the catalog's folder unless ``image_root`` widens it;
absolute paths, ``..``, ``~`` and symlinks that lead outside are refused per row. It must
be a regular file (a named pipe would block the reader for ever) holding a decodable PNG
or JPEG (:func:`fto_async._validate.read_image_file`).

Keys are at most :data:`MAX_KEY_LENGTH` characters, without control characters.

A row without a usable key (none, or a repeat) is journaled under a stand-in key made
by :func:`stand_in_key`: it starts with :data:`STAND_IN`, a control character that no
key can hold (keys holding one are refused), so it never meets a user's key.
"""

from __future__ import annotations

import csv
import json
import os
import stat
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Final, TextIO, TypeAlias

import attrs

from .. import _validate as v
from ..errors import InvalidRequestError
from ..models import ImageSearchRequest, WorkflowRequest

__all__ = ["MAX_KEY_LENGTH", "STAND_IN", "Catalog", "CatalogError", "Defaults", "Row",
           "check_defaults", "parse_list", "stand_in_key"]  # fmt: skip

Request: TypeAlias = ImageSearchRequest | WorkflowRequest

KEY_COLUMNS: Final = ("sku", "id")
URL_COLUMNS: Final = ("image_url", "url")
PATH_COLUMN: Final = "image_path"
#: Stands in for the image of an ``image_path`` row until it is uploaded.
PLACEHOLDER_URL: Final = "https://upload.invalid/pending.png"
_JSONL_SUFFIXES: Final = (".jsonl", ".ndjson")
#: Longest row key accepted.
MAX_KEY_LENGTH: Final = 1000

#: The first character of every stand-in journal key (never in a user's key).
STAND_IN: Final = "\x1f"


def stand_in_key(line: int) -> str:
    """The journal key of the row on ``line`` when it has no usable key of its own."""
    return f"{STAND_IN}line{line}"


class _ImageGone(InvalidRequestError):
    """Private: an ``image_path`` that cannot be opened (moved, deleted, unreadable)."""

    path: Path | None = None  #: the file it named (the outputs still show it)


class CatalogError(Exception):
    """The catalog as a whole cannot be used (unreadable, not UTF-8, empty, no key column)."""


@attrs.frozen
class Defaults:
    """Request options that apply to every row unless the row overrides them.

    Attributes:
        country: authority codes (``None``: rows must name theirs; required for
            image search, optional for the workflow).
        lang: report language of image searches.
        loc: Locarno codes, or ``None`` for all.
        since: first filing date ``yyyyMMdd``, or ``None``.
        workflow: build :class:`WorkflowRequest` instead of :class:`ImageSearchRequest`.
    """

    country: tuple[str, ...] | None = None
    lang: str = "en"
    loc: tuple[str, ...] | None = None
    since: str | None = None
    workflow: bool = False


@attrs.frozen
class Row:
    """One catalog row.

    Attributes:
        line: the 1-based line where the row starts in the file.
        key: the row's key as written (``None`` when it has none).
        jkey: the key the journal knows the row by: ``key``, or for a row whose key is
            missing or repeated, a stand-in unique to its line.
        error: why the row cannot be screened (``None`` for a good row).
        request: the request of a good URL row (``None`` for ``image_path`` rows, whose
            request is made once the image is uploaded or read: :meth:`make_request`).
        image_path: the local image of an ``image_path`` row.
        image_gone: the row's ``image_path`` cannot be opened (its ``error`` says so): a
            result the journal already holds for it is kept.
        title: the product's name, for displays.
        fields: the request's keyword arguments besides the image.
        workflow: whether :meth:`make_request` builds a :class:`WorkflowRequest`.
    """

    line: int
    key: str | None
    jkey: str
    error: str | None = None
    request: Request | None = None
    image_path: Path | None = None
    title: str | None = None
    fields: Mapping[str, Any] = attrs.field(factory=dict)
    workflow: bool = False
    image_gone: bool = False

    @property
    def ok(self) -> bool:
        """True for a row that can be screened."""
        return self.error is None

    def make_request(self, *, url: str | None = None, image: bytes | None = None) -> Request:
        """The row's request with the image given as ``url`` or as bytes (workflow only).

        Raises:
            InvalidRequestError: the image or a field breaks a rule.
        """
        if self.workflow:
            if image is not None:
                return WorkflowRequest.from_image_bytes(image, **self.fields)
            return WorkflowRequest(url=url, **self.fields)
        return ImageSearchRequest(url=url, **self.fields)  # type: ignore[arg-type]

    @property
    def kind(self) -> str:
        """The journal's ``kind`` of the row's request: ``workflow`` or ``image_search``."""
        return "workflow" if self.workflow else "image_search"


def parse_list(value: object) -> list[str] | None:
    """A comma-separated string (or a JSON list) as a list of stripped items; ``None`` if empty."""
    if value is None:
        return None
    if isinstance(value, list | tuple):
        items = [str(item).strip() for item in value]
    else:
        items = [part.strip() for part in str(value).split(",")]
    items = [item for item in items if item]
    return items or None


def _text(value: object) -> str | None:
    """A cell as stripped text; ``None`` when empty or absent."""
    if value is None:
        return None
    if isinstance(value, bool | dict | list):
        raise InvalidRequestError("value", f"must be text, got {type(value).__name__}")
    text = str(value).strip()
    return text or None


class Catalog:
    """A catalog file, read lazily.

    Example::

        catalog = Catalog("products.csv", Defaults(country=("US", "EU")))
        total = catalog.scan()              # checks the file, counts the rows
        for row in catalog.rows():
            if row.ok: ...

    Args:
        path: the CSV or JSONL file (JSONL when it ends with ``.jsonl`` or ``.ndjson``).
        defaults: options for rows that do not set their own.
        image_root: the folder every ``image_path`` must resolve inside (default: the
            catalog's folder).
        read_images: read and decode each ``image_path`` (True), or only check that it
            is a regular file inside the root of a possible size (False: for a run that
            reads the image when it uploads it, and for rebuilding outputs).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        defaults: Defaults | None = None,
        *,
        image_root: str | os.PathLike[str] | None = None,
        read_images: bool = True,
    ) -> None:
        self.path = Path(path)
        self.defaults = defaults or Defaults()
        self.jsonl = self.path.suffix.lower() in _JSONL_SUFFIXES
        self.image_root = Path(image_root if image_root is not None else self.path.parent)
        self.read_images = read_images

    def __repr__(self) -> str:
        return f"<Catalog {str(self.path)!r} {'jsonl' if self.jsonl else 'csv'}>"

    # -- reading --------------------------------------------------------------------

    def _open(self) -> TextIO:
        try:
            return open(self.path, encoding="utf-8-sig", newline="")
        except OSError as exc:
            raise CatalogError(f"{self.path}: cannot open ({exc.strerror or exc})") from None

    def _not_utf8(self) -> CatalogError:
        """The error for a file that is not UTF-8, naming the first bad line and byte."""
        where = ""
        with self.path.open("rb") as handle:
            for line, data in enumerate(handle, start=1):
                try:
                    data.decode("utf-8")
                except UnicodeDecodeError as exc:
                    where = f" (byte 0x{data[exc.start]:02x} on line {line})"
                    break
        return CatalogError(
            f"{self.path}: not UTF-8 text{where}; save the catalog as UTF-8 and try again"
        )

    def _records(self) -> Iterator[tuple[int, dict[str, Any] | str]]:
        """Yield ``(line, fields)`` per record, or ``(line, reason)`` for a broken one."""
        with self._open() as handle:
            records = self._jsonl_records(handle) if self.jsonl else self._csv_records(handle)
            yield from records

    def _csv_records(self, handle: TextIO) -> Iterator[tuple[int, dict[str, Any] | str]]:
        # strict: a quote left open would otherwise swallow every later row, silently.
        reader = csv.reader(handle, strict=True)
        line = 0
        header: list[str] | None = None
        try:
            while True:
                start = line + 1
                try:
                    cells = next(reader)
                except StopIteration:
                    break
                except csv.Error as exc:
                    if "end of data" in str(exc):
                        raise CatalogError(
                            f"{self.path}: line {start}: a quote opened here is never closed, "
                            "so every later line would be read as part of one value"
                        ) from None
                    line = reader.line_num
                    if header is None:
                        raise CatalogError(f"{self.path}: line {start}: broken CSV header "
                                           f"({exc})") from None
                    yield start, f"broken CSV ({exc})"
                    continue
                line = reader.line_num
                if not any(cell.strip() for cell in cells):
                    continue
                if header is None:
                    header = [cell.strip().lower() for cell in cells]
                    self._check_columns(header)
                    continue
                if len(cells) > len(header):
                    yield start, f"has {len(cells)} values but the header has {len(header)} columns"
                    continue
                yield start, dict(zip(header, cells, strict=False))
        except UnicodeDecodeError:
            raise self._not_utf8() from None
        if header is None:
            raise CatalogError(f"{self.path}: the catalog is empty (no header, no rows)")

    def _jsonl_records(self, handle: TextIO) -> Iterator[tuple[int, dict[str, Any] | str]]:
        checked = False
        line = 0
        try:
            for line, text in enumerate(handle, start=1):  # line is read after
                if not text.strip():
                    continue
                try:
                    obj = json.loads(text)
                except json.JSONDecodeError as exc:
                    yield line, f"bad JSON ({exc.msg} at column {exc.colno})"
                    continue
                if not isinstance(obj, dict):
                    yield line, f"not a JSON object (got {type(obj).__name__})"
                    continue
                fields = {str(k).strip().lower(): value for k, value in obj.items()}
                if not checked:
                    self._check_columns(list(fields))
                    checked = True
                yield line, fields
        except UnicodeDecodeError:
            raise self._not_utf8() from None

    def _check_columns(self, columns: Sequence[str]) -> None:
        found = ", ".join(repr(c) for c in columns if c) or "none"
        what = "fields" if self.jsonl else "columns"
        if not any(c in columns for c in KEY_COLUMNS):
            raise CatalogError(
                f"{self.path}: no key column: expected 'sku' or 'id'; {what} found: {found}"
            )
        if not any(c in columns for c in (*URL_COLUMNS, PATH_COLUMN)):
            raise CatalogError(
                f"{self.path}: no image column: expected 'image_url', 'url' or 'image_path'; "
                f"{what} found: {found}"
            )
        if (
            not self.jsonl
            and self.defaults.country is None
            and not self.defaults.workflow
            and "country" not in columns
        ):
            raise CatalogError(
                f"{self.path}: no 'country' column: give --country (e.g. --country US,EU)"
            )

    def scan(self) -> int:
        """Check the whole file (encoding, header) and count its records, fast.

        Returns:
            The number of data rows (bad ones included).

        Raises:
            CatalogError: the file cannot be used at all.
        """
        count = sum(1 for _ in self._records())
        if count == 0:
            raise CatalogError(f"{self.path}: the catalog has no rows")
        return count

    def rows(self, *, read_images: bool | None = None) -> Iterator[Row]:
        """Yield every row in file order (good and bad), streaming.

        ``read_images`` overrides the catalog's own setting (see :class:`Catalog`).

        Raises:
            CatalogError: the file cannot be used at all (raised when met).
        """
        read_images = self.read_images if read_images is None else read_images
        seen: dict[str, int] = {}
        for line, record in self._records():
            if isinstance(record, str):
                yield Row(line, None, stand_in_key(line), error=record)
                continue
            yield self._row(line, record, seen, read_images)

    # -- one row --------------------------------------------------------------------

    def _row(
        self, line: int, fields: Mapping[str, Any], seen: dict[str, int], read_images: bool
    ) -> Row:
        try:
            key = _text(_first(fields, KEY_COLUMNS))
        except InvalidRequestError:
            key = None
        if key is None:
            return Row(line, None, stand_in_key(line), error="no key (sku or id is empty)")
        bad_key = _key_problem(key)
        if bad_key is not None:
            return Row(line, None, stand_in_key(line), error=bad_key)
        first = seen.get(key)
        if first is not None:
            return Row(line, key, stand_in_key(line),
                       error=f"duplicate key {key!r} (first on line {first})")
        seen[key] = line
        try:
            return self._good_row(line, key, fields, read_images)
        except _ImageGone as exc:  # the outputs still show the product and its file
            return Row(line, key, key, error=str(exc), image_gone=True, image_path=exc.path,
                       title=_text(fields.get("title")))  # fmt: skip
        except InvalidRequestError as exc:
            return Row(line, key, key, error=str(exc))

    def _good_row(
        self, line: int, key: str, fields: Mapping[str, Any], read_images: bool
    ) -> Row:
        d = self.defaults
        title = _text(fields.get("title"))
        country = parse_list(fields.get("country"))
        loc = parse_list(fields.get("loc"))
        since = _text(fields.get("since"))
        kwargs: dict[str, Any] = {
            "country": country if country is not None else d.country,
            "loc_items": loc if loc is not None else d.loc,
            "apply_start_time": since if since is not None else d.since,
        }
        if d.workflow:
            kwargs["title"] = title
        else:
            if kwargs["country"] is None:
                raise InvalidRequestError("country", "no country (set the column or --country)")
            kwargs["lang"] = _text(fields.get("lang")) or d.lang
            kwargs["main_field"] = _text(fields.get("main_field"))
        url = _text(_first(fields, URL_COLUMNS))
        path_text = _text(fields.get(PATH_COLUMN))
        row = Row(line, key, key, title=title, fields=kwargs, workflow=d.workflow)
        if url is not None:
            return attrs.evolve(row, request=row.make_request(url=url))
        if path_text is None:
            raise InvalidRequestError("image", "no image (image_url, url and image_path are empty)")
        row.make_request(url=PLACEHOLDER_URL)  # check every other field now
        return attrs.evolve(row, image_path=self._check_image(path_text, read_images))

    def image_paths(self) -> Iterator[Path]:
        """The ``image_path`` of every record, as :meth:`rows` would resolve it (unchecked)."""
        for _line, record in self._records():
            value = record.get(PATH_COLUMN) if isinstance(record, dict) else None
            if isinstance(value, str) and value.strip():
                yield self._resolve(value.strip())

    def _resolve(self, text: str) -> Path:
        path = Path(text).expanduser()
        return path if path.is_absolute() else self.path.parent / path

    def _check_image(self, text: str, read_images: bool) -> Path:
        path = self._resolve(text)
        try:
            root = self.image_root.resolve()
            resolved = path.resolve()
        except (OSError, RuntimeError) as exc:  # RuntimeError: a symlink loop
            raise InvalidRequestError("image_path", f"cannot resolve {text} ({exc})") from None
        if not resolved.is_relative_to(root):
            raise InvalidRequestError(
                "image_path", f"{text} is outside the image folder {root} (local files are "
                "only uploaded from there; --image-root DIR allows another folder)",
            )
        try:
            info = os.stat(resolved)
        except OSError as exc:  # moved or deleted: a done row keeps its result
            gone = _ImageGone("image_path", f"cannot read {text} ({exc.strerror or exc})")
            gone.path = resolved
            raise gone from None
        if read_images:
            v.read_image_file("image_path", resolved, text)
            return resolved
        if not stat.S_ISREG(info.st_mode):
            raise InvalidRequestError(
                "image_path", f"cannot read {text}: it is {v.file_kind(info.st_mode)}, "
                "not an image file",
            )
        v.check_image_size("image_path", info.st_size, text)
        return resolved


def _key_problem(key: str) -> str | None:
    """Why ``key`` cannot be a row's key (too long, control characters), or ``None``."""
    if len(key) > MAX_KEY_LENGTH:
        return f"key: must be at most {MAX_KEY_LENGTH} characters, got {len(key)}"
    if any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 or c in "\u2028\u2029" for c in key):
        return "key: must not contain control characters (tabs, line breaks, escapes)"
    return None


def _first(fields: Mapping[str, Any], names: Sequence[str]) -> Any:
    """The first of ``names`` with a non-empty value in ``fields``."""
    for name in names:
        value = fields.get(name)
        if value is not None and value != "":
            return value
    return None


def check_defaults(
    country: str | None, lang: str, loc: str | None, since: str | None, workflow: bool
) -> Defaults:
    """Validate the command line's request options.

    Raises:
        InvalidRequestError: an option breaks its rule (``exc.field`` names it).
    """
    countries = parse_list(country)
    locs = parse_list(loc)
    return Defaults(
        country=None if countries is None else v.country_codes("--country", countries),
        lang=v.lang("--lang", lang),
        loc=None if locs is None else v.loc_codes("--loc", locs),
        since=None if since is None else v.yyyymmdd("--since", since),
        workflow=workflow,
    )
