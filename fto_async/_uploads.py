"""Private: the P010 URLs a client uploaded, so that none is sent after it expired.

A P010 URL is public for ``expire`` seconds (32,400 s, 9 h; reference §6). A request built
with one may wait long before it goes out (a deep queue, a storm of retries, a follow-up
hours later). The client remembers, for each URL it uploaded from a file, when it expires
and which file it came from; just before a submit it swaps a URL with less than
:data:`UPLOAD_MARGIN` left for a new upload of the same file. URLs of uploaded bytes are
remembered too (their expiry), but cannot be renewed: the bytes are not kept.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Final

__all__ = ["UPLOAD_LIFETIME", "UPLOAD_MARGIN", "UploadLedger"]

#: Seconds a P010 URL lives when the answer gives no ``expire`` (9 h, reference §6).
UPLOAD_LIFETIME: Final = 32_400.0
#: A URL is renewed when it has less than this many seconds left (10 minutes).
UPLOAD_MARGIN: Final = 600.0
#: URLs remembered at most (the oldest are forgotten first).
_MAX_ENTRIES: Final = 100_000


class UploadLedger:
    """URL -> (expiry on the monotonic clock, source file or ``None``). Private."""

    __slots__ = ("_clock", "_entries")

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._entries: OrderedDict[str, tuple[float, Path | None]] = OrderedDict()

    def remember(self, url: str, expire: float | None, source: Path | None) -> None:
        """Record an upload's URL, its lifetime in seconds (``None``: 9 h) and its file."""
        life = float(expire) if expire else UPLOAD_LIFETIME
        self._entries[url] = (self._clock() + life, source)
        self._entries.move_to_end(url)
        while len(self._entries) > _MAX_ENTRIES:
            self._entries.popitem(last=False)

    def stale(self, url: str, margin: float = UPLOAD_MARGIN) -> Path | None:
        """The file to upload again when ``url`` is ours and expires within ``margin``."""
        entry = self._entries.get(url)
        if entry is None:
            return None
        expires, source = entry
        return source if self._clock() >= expires - margin else None

    def expiring(self, url: str, margin: float = UPLOAD_MARGIN) -> bool:
        """True when ``url`` is not ours or expires within ``margin`` (not to be reused)."""
        entry = self._entries.get(url)
        return entry is None or self._clock() >= entry[0] - margin

    def __len__(self) -> int:
        return len(self._entries)
