"""The platform's usage statement (``POST /open-user/statement/v2``, reference §9).

The body carries the account's ``client_secret`` (the OAuth client's; an ``sk-`` key
sends only itself as ``apikey``): it goes nowhere else. It is never in a log line (the
transport logs paths and redacted URLs, never bodies), an error, a repr or a hook event.
The platform collects its detailed records daily at 08:00, so a statement lags up to a
day behind the calls.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Mapping
from typing import Any

import attrs

from .errors import InvalidRequestError, ResponseDecodeError

__all__ = ["COLLECTED_AT", "STATEMENT_PATH", "UsageLine", "UsageStatement", "check_days"]

STATEMENT_PATH = "/open-user/statement/v2"
#: When the platform collects the day's detailed records (its own words).
COLLECTED_AT = "08:00"
_DAY = re.compile(r"\d{8}")


@attrs.frozen
class UsageLine:
    """One billed path of a statement.

    Attributes:
        request_path: the endpoint path.
        request_path_name: the platform's name for it.
        usage_times: calls made.
        fee_times: calls billed.
        used_money: money spent on them (the platform's unit).
    """

    request_path: str
    request_path_name: str
    usage_times: int
    fee_times: int
    used_money: float


@attrs.frozen
class UsageStatement:
    """A usage statement: ``usage`` by path, ``usage_money`` in total, ``raw`` as sent."""

    usage: tuple[UsageLine, ...]
    usage_money: float
    raw: Mapping[str, Any] = attrs.field(repr=False)

    @classmethod
    def from_data(cls, data: object) -> UsageStatement:
        """Read the answer's ``data``; a shape it cannot read raises ResponseDecodeError."""
        if not isinstance(data, Mapping) or not isinstance(data.get("usage", []), list):
            raise ResponseDecodeError(f"{STATEMENT_PATH}: no usage list", raw=data)
        lines = []
        for item in data.get("usage") or []:
            try:
                lines.append(UsageLine(
                    str(item["request_path"]), str(item.get("request_path_name") or ""),
                    int(item.get("usage_times") or 0), int(item.get("fee_times") or 0),
                    float(item.get("used_money") or 0),
                ))  # fmt: skip
            except (KeyError, TypeError, ValueError) as exc:
                raise ResponseDecodeError(f"{STATEMENT_PATH}: unreadable usage line",
                                          raw=data) from exc  # fmt: skip
        return cls(tuple(lines), float(data.get("usage_money") or 0), data)


def check_days(time_start: str, time_end: str) -> None:
    """Both ``yyyyMMdd`` real dates, start not after end; else InvalidRequestError."""
    for name, value in (("time_start", time_start), ("time_end", time_end)):
        if not isinstance(value, str) or not _DAY.fullmatch(value):
            raise InvalidRequestError(name, f"must be a date as yyyyMMdd, got {value!r}")
        try:
            datetime.datetime.strptime(value, "%Y%m%d")  # a date only: no time zone
        except ValueError:
            raise InvalidRequestError(name, f"is not a real date: {value!r}") from None
    if time_start > time_end:
        raise InvalidRequestError("time_start", f"{time_start} is after time_end {time_end}")
