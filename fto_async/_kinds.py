"""THE table of task kinds: one row per kind of task the platform runs. Private.

Each row says which request class asks for the task, which result class answers it,
where it is submitted and read, which wire fields (with their platform defaults) make
its fingerprint, and where the journal keeps it. Adding an endpoint kind is a row here,
its models (:mod:`fto_async.models`) and its emulator routes. The names of the kinds
themselves (:data:`~fto_async.models.TaskKind`) are wire vocabulary and stay in models.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import attrs

from .config import DEFAULT_WORKFLOW_RESULT_PATH
from .models import (
    TASK_KINDS,
    ImageSearchReport,
    ImageSearchRequest,
    OneVsOneReport,
    OneVsOneRequest,
    TaskKind,
    WorkflowReport,
    WorkflowRequest,
)

__all__ = ["KINDS", "UPLOAD_PATH", "Kind", "report_class", "request_kind"]


@attrs.frozen
class Kind:
    """One kind of task.

    Attributes:
        name: the kind's name (:data:`~fto_async.models.TaskKind`).
        request: the request class that creates it.
        result: the report class it answers with.
        submit_path: where it is submitted.
        result_path: where its report is read by default (the workflow's path is
            UNVERIFIED and configurable: ``ClientConfig.workflow_result_path``).
        fingerprint_fields: every wire field, with its platform default (``None``: no
            default), that the fingerprint canonicalises.
        journal_table: where the journal keeps its rows (``items`` for screenings,
            ``follow_ups`` for the 1-vs-1 follow-up stage).
    """

    name: TaskKind
    request: type[Any]
    result: type[ImageSearchReport]
    submit_path: str
    result_path: str
    fingerprint_fields: Mapping[str, Any]
    journal_table: str


KINDS: Final[Mapping[TaskKind, Kind]] = {
    "image_search": Kind(
        "image_search", ImageSearchRequest, ImageSearchReport,
        submit_path="/ai/image-search/submit", result_path="/ai/image-search/report",
        fingerprint_fields={
            "url": None, "country": None, "lang": None, "loc_items": None,
            "apply_start_time": None, "main_field": None,
        },
        journal_table="items",
    ),
    "workflow": Kind(
        "workflow", WorkflowRequest, WorkflowReport,
        submit_path="/api/mcp/submit-workflow", result_path=DEFAULT_WORKFLOW_RESULT_PATH,
        fingerprint_fields={
            "url": None, "target_image_base64": None, "country": None, "loc_items": None,
            "apply_start_time": None, "apply_end_time": None, "simple_legal_status": "1,2",
            "title": None, "user_id": None,
        },
        journal_table="items",
    ),
    "one_vs_one": Kind(
        "one_vs_one", OneVsOneRequest, OneVsOneReport,
        submit_path="/ai/infringement-detection-1v1-creation",
        result_path="/ai/infringement-detection-1v1-query",
        fingerprint_fields={"patent_number": None, "url": None, "report_lang": None},
        journal_table="follow_ups",
    ),
}  # fmt: skip
assert tuple(KINDS) == TASK_KINDS  # every kind has its row

#: P010: a local image becomes a temporary public URL (not a task).
UPLOAD_PATH: Final = "/image-search/image-upload"


def request_kind(request: object) -> TaskKind:
    """The kind of task a request creates (``image_search`` for anything unknown)."""
    for kind in KINDS.values():
        if kind.name != "image_search" and isinstance(request, kind.request):
            return kind.name
    return "image_search"


def report_class(kind: TaskKind) -> type[ImageSearchReport]:
    """The report class a task of ``kind`` answers with."""
    return KINDS[kind].result
