"""A report's matched designs as plain values, and what changed since the previous one.
Strictly private: the record rule (:mod:`._record`) and the writers read these.

Platform JSON is read defensively: an odd item is skipped, an odd field left out.

* :func:`matches`: each ``report.comparisons[]`` item as ``{"pn", "title", "country",
  "risk", "score", "legal", "live", "url"}``, best first (risk, then score). ``risk`` is
  the platform's ``risk_level`` as it sent it (``High``/``Medium``/``Low``), never
  rewritten; ``score`` is 0..1 (:func:`~fto_async.models.normalize_score`); ``legal`` is
  ``valid``, ``invalid`` or ``pending`` (``None`` if the platform sent none); ``live``
  is False only for an ``invalid`` (lapsed) right: a pending application or an unknown
  status still counts as live.
* :func:`compare`: by patent number, what a result has that the previous one had not
  (``new_matches``), what it lost (``dropped_matches``) and whether its highest risk went
  ``up``, ``down`` or stayed the ``same``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Final

from ..models import normalize_score
from ._links import patent_url

__all__ = ["LEGAL", "LEVELS", "compare", "comparisons", "highest", "matches"]

#: ``comparisons[].status`` -> legal status word.
LEGAL: Final = {1: "valid", 2: "invalid", 3: "pending"}
#: Risk words by rank; ``none`` is a done row without a match.
LEVELS: Final = {"none": 0, "Low": 1, "Medium": 2, "High": 3}


def comparisons(result: object) -> list[Mapping[str, Any]]:
    """The ``report.comparisons`` items of a task result (a record's ``report``)."""
    inner = result.get("report") if isinstance(result, Mapping) else None
    items = inner.get("comparisons") if isinstance(inner, Mapping) else None
    return [c for c in items if isinstance(c, Mapping)] if isinstance(items, list) else []


def _level(value: object) -> str | None:
    if not isinstance(value, str):
        return None
    word = value.strip().capitalize()
    return word if word in ("High", "Medium", "Low") else None


def _text(value: object) -> str | None:
    if value is None or isinstance(value, Mapping | list | bool):
        return None
    return str(value).strip() or None


def matches(result: object, template: str | None = None) -> list[dict[str, Any]]:
    """The matched designs of a task result, best first (see the module docstring)."""
    found: list[dict[str, Any]] = []
    for item in comparisons(result):
        raw = item.get("score")
        score = None if isinstance(raw, bool) or not isinstance(raw, int | float) \
            else normalize_score(float(raw))  # fmt: skip
        status = item.get("status")
        legal = LEGAL.get(status) if isinstance(status, int) and not isinstance(status, bool) \
            else None  # fmt: skip
        pn, country = _text(item.get("patent_pn")), _text(item.get("country"))
        found.append({
            "pn": pn, "title": _text(item.get("title")), "country": country,
            "risk": _level(item.get("risk_level")), "score": score, "legal": legal,
            "live": legal != "invalid", "url": patent_url(pn, country, template),
        })  # fmt: skip
    found.sort(key=lambda m: (-LEVELS.get(m["risk"] or "", 0), -(m["score"] or 0.0)))
    return found


def highest(items: Iterable[Mapping[str, Any]]) -> str:
    """The highest ``risk`` of ``items``, ``"none"`` when none has one."""
    best = max((LEVELS.get(m.get("risk") or "", 0) for m in items), default=0)
    return next(word for word, rank in LEVELS.items() if rank == best)


def compare(previous: object, result: object) -> dict[str, Any]:
    """What ``result`` changed against ``previous`` (task results), by patent number.

    Returns:
        ``new_matches`` and ``dropped_matches`` (patent numbers, in report order) and
        ``risk_change``: ``up``, ``down`` or ``same`` (platform levels, ``none`` lowest).
    """
    before, after = matches(previous), matches(result)
    old = {m["pn"] for m in before if m["pn"]}
    new = {m["pn"] for m in after if m["pn"]}
    rank_before, rank_after = LEVELS[highest(before)], LEVELS[highest(after)]
    change = "up" if rank_after > rank_before else "down" if rank_after < rank_before else "same"
    return {
        "new_matches": list(dict.fromkeys(
            m["pn"] for m in after if m["pn"] and m["pn"] not in old)),
        "dropped_matches": list(dict.fromkeys(
            m["pn"] for m in before if m["pn"] and m["pn"] not in new)),
        "risk_change": change,
    }  # fmt: skip
