"""The platform's enumerations: task status, legal status, the workflow's legal-status
filter and the risk level (ordered). Re-exported by :mod:`fto_async.models`."""

from __future__ import annotations

from collections.abc import Iterable
from enum import IntEnum, StrEnum

__all__ = ["LegalStatus", "RiskLevel", "SimpleLegalStatus", "TaskStatus"]


class TaskStatus(IntEnum):
    """``task_status`` of a submitted task: running, finished or failed.

    One enum for both wire encodings: ``1``/``2``/``3`` and the agent-style workflows'
    ``"running"``/``"success"``/``"failed"`` (reference §3.2; decoded in ``_serde``).
    """

    RUNNING = 1
    SUCCESS = 2
    FAILED = 3


class LegalStatus(IntEnum):
    """Legal status of a compared patent (``report.comparisons[].status``)."""

    VALID = 1
    INVALID = 2
    PENDING = 3


class SimpleLegalStatus(IntEnum):
    """The workflow's legal-status filter (``simple_legal_status``); the platform default is 1,2.

    The extended codes come from sibling image-search pages (reference §9).
    """

    INACTIVE = 0
    ACTIVE = 1
    PENDING = 2
    PCT_DESIGNATED_EXPIRED = 220
    PCT_DESIGNATED = 221
    UNDETERMINED = 999


class RiskLevel(StrEnum):
    """Infringement risk of a patent, ordered ``LOW < MEDIUM < HIGH``.

    Parsed case-insensitively (``RiskLevel("high") is RiskLevel.HIGH``). Comparison
    operators follow the risk order, not the alphabet, so ``max()`` and ``sorted()`` work::

        RiskLevel.max([RiskLevel.LOW, None, RiskLevel.HIGH])   # RiskLevel.HIGH
        RiskLevel.MEDIUM.rank                                  # 2
    """

    HIGH = "High"
    MEDIUM = "Medium"
    LOW = "Low"

    @classmethod
    def _missing_(cls, value: object) -> RiskLevel | None:
        if isinstance(value, str):
            folded = value.strip().casefold()
            for member in cls:
                if member.value.casefold() == folded:
                    return member
        return None

    @property
    def rank(self) -> int:
        """1 for ``LOW``, 2 for ``MEDIUM``, 3 for ``HIGH``."""
        return _RISK_RANK[self]

    @classmethod
    def max(cls, levels: Iterable[RiskLevel | None]) -> RiskLevel | None:
        """Return the highest level in ``levels`` (``None`` items skipped), or ``None`` if none."""
        present = [level for level in levels if level is not None]
        return max(present, key=_RISK_RANK.__getitem__) if present else None

    def __lt__(self, other: object) -> bool:
        return self.rank < other.rank if isinstance(other, RiskLevel) else NotImplemented

    def __le__(self, other: object) -> bool:
        return self.rank <= other.rank if isinstance(other, RiskLevel) else NotImplemented

    def __gt__(self, other: object) -> bool:
        return self.rank > other.rank if isinstance(other, RiskLevel) else NotImplemented

    def __ge__(self, other: object) -> bool:
        return self.rank >= other.rank if isinstance(other, RiskLevel) else NotImplemented


_RISK_RANK = {RiskLevel.LOW: 1, RiskLevel.MEDIUM: 2, RiskLevel.HIGH: 3}
