"""The per-endpoint methods of :class:`~fto_async.client.FtoClient`. Private.

:class:`_Endpoints` is the part of ``FtoClient`` that calls one endpoint each (image
search, workflow, 1-vs-1, upload, usage statement), with the wire helpers they share
(``_submit``, ``_report``, ``_wait``) and the checks on a body before it leaves and on
a report before it is read.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from os import PathLike
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import attrs

from . import _serde, _validate
from ._kinds import KINDS, UPLOAD_PATH
from ._observe import Observer
from ._statement import STATEMENT_PATH, UsageStatement, check_days
from ._uploads import UploadLedger
from .auth import ApiKey, ClientCredentials
from .config import ClientConfig
from .errors import (
    FtoError,
    InvalidParameterError,
    InvalidRequestError,
    ResponseDecodeError,
    TaskExpiredError,
)
from .fingerprint import image_digest
from .models import (
    ImageSearchReport,
    ImageSearchRequest,
    OneVsOneReport,
    OneVsOneRequest,
    Request,
    UploadedImage,
    WorkflowReport,
    WorkflowRequest,
)
from .polling import poll_priority, wait_for_task
from .retry import retries_limited
from .transport import BeforeSend, FileField, Transport

__all__: list[str] = []


_SUBMIT_PATH = KINDS["image_search"].submit_path
_REPORT_PATH = KINDS["image_search"].result_path
_WORKFLOW_SUBMIT_PATH = KINDS["workflow"].submit_path
_ONE_VS_ONE_SUBMIT_PATH = KINDS["one_vs_one"].submit_path
_ONE_VS_ONE_REPORT_PATH = KINDS["one_vs_one"].result_path

_R = TypeVar("_R", bound=ImageSearchReport)


class _Endpoints:
    """Private: one method per endpoint of :class:`~fto_async.client.FtoClient` (which
    sets these)."""

    config: ClientConfig
    _credentials: ClientCredentials | ApiKey
    _converter: Any
    _transport: Transport
    _observer: Observer
    _uploads: UploadLedger
    _by_digest: dict[str, asyncio.Future[str]]
    _max_retries: int | None

    # -- image search (AI39 current) ------------------------------------------------

    async def submit_image_search(self, request: ImageSearchRequest) -> str:
        """Submit an image-search FTO task (``POST /ai/image-search/submit``).

        Returns:
            The task id.

        Raises:
            InvalidRequestError: ``request`` is not an :class:`ImageSearchRequest`.
            FtoError: the platform refused the call (see :mod:`fto_async.errors`).
        """
        _require(request, ImageSearchRequest, "request")
        return await self._submit(_SUBMIT_PATH, request)

    async def get_image_search_report(self, task_id: str) -> ImageSearchReport:
        """Poll an image-search task once (``POST /ai/image-search/report``)."""
        return await self._report(_REPORT_PATH, task_id, ImageSearchReport)

    async def wait_image_search(
        self, task_id: str, timeout: float | None = None
    ) -> ImageSearchReport:
        """Poll until the task succeeds; see :meth:`wait_workflow` for the rules."""
        return await self._wait(_REPORT_PATH, task_id, ImageSearchReport, timeout)

    # -- full FTO workflow (AI39 enhanced) ------------------------------------------

    async def submit_workflow(self, request: WorkflowRequest) -> str:
        """Submit a full FTO workflow task (``POST /api/mcp/submit-workflow``)."""
        _require(request, WorkflowRequest, "request")
        return await self._submit(_WORKFLOW_SUBMIT_PATH, request)

    async def get_workflow_report(self, task_id: str) -> WorkflowReport:
        """Poll a workflow task once, at ``workflow_result_path`` (UNVERIFIED path)."""
        return await self._report(self.config.workflow_result_path, task_id, WorkflowReport)

    async def wait_workflow(self, task_id: str, timeout: float | None = None) -> WorkflowReport:
        """Poll until the task is done, every ``poll.interval`` seconds (2-5 s recommended).

        Args:
            task_id: the id returned by the submit call.
            timeout: seconds to wait in all (default ``poll.timeout``; ``None`` there
                means forever).

        Returns:
            The report of a task with ``task_status`` 2.

        Raises:
            TaskFailedError: the task ended with ``task_status`` 3.
            TaskTimeoutError: still running when the timeout passed.
        """
        path = self.config.workflow_result_path
        return await self._wait(path, task_id, WorkflowReport, timeout)

    # -- upload (P010) --------------------------------------------------------------

    async def upload_image(
        self, image: str | PathLike[str] | bytes, *, filename: str | None = None
    ) -> UploadedImage:
        """Upload a local JPG/PNG of at most 4,194,304 bytes (reference §6); returns its public
        ``url`` and ``expire``.

        The URL is public for 9 hours: anyone holding it can open the image (reference §6;
        :class:`~fto_async.WorkflowRequest` with ``target_image_base64`` creates none).
        A URL uploaded from a file is uploaded again when a submit would send it with
        less than 10 minutes left.

        Raises:
            InvalidRequestError: not a decodable JPG/PNG, too large, or the file cannot be
                read (a path must name a regular file: see
                :func:`fto_async._validate.read_image_file`).
        """
        if isinstance(image, bytes):
            data, name = image, filename
            kind = await asyncio.to_thread(_validate.image_bytes, "image", data)
        elif isinstance(image, str | PathLike):
            path = Path(image)
            # Off the event loop: the file is checked (a regular file, at most 4 MiB read)
            # and decoded in a worker thread.
            data, kind = await asyncio.to_thread(_validate.read_image_file, "image", path)
            name = filename or path.name
        else:
            got = type(image).__name__
            raise InvalidRequestError("image", f"must be a path or bytes, got {got}")
        field = FileField("image", name or f"image.{kind.ext}", data, kind.mime)
        answer = await self._call(UPLOAD_PATH, files=(field,))
        uploaded = _serde.structure(self._converter, answer, UploadedImage)
        source = None if isinstance(image, bytes) else Path(image)
        self._uploads.remember(uploaded.url, uploaded.expire, source)
        return uploaded

    async def upload_once(self, path: str | PathLike[str] | bytes, digest: str) -> str:
        """The P010 URL of a local image (a path or its bytes) whose content hash is
        ``digest``: uploaded on the first call, reused by later ones while the URL is
        valid, 10 minutes' margin (concurrent callers share one upload).
        :meth:`fto_async.batch.Item.from_path` items and :meth:`screen_image` use it."""
        pending = self._by_digest.get(digest)
        if pending is not None and pending.done() and (
            pending.cancelled() or pending.exception() is not None
            or self._uploads.expiring(pending.result())
        ):  # fmt: skip
            pending = None  # failed, or about to expire: upload again
        if pending is None:
            pending = self._by_digest[digest] = asyncio.ensure_future(
                self._upload_url(path, digest))
        return await asyncio.shield(pending)

    async def _upload_url(self, path: str | PathLike[str] | bytes, digest: str) -> str:
        url = await self._upload_checked(path, digest)
        for other, known in self._by_digest.items():  # a replayed answer: another image's
            if other != digest and known.done() and not known.cancelled() and \
                    known.exception() is None and known.result() == url:
                raise ResponseDecodeError("the upload was answered with the URL of another "
                                          "image: not used", raw=None)  # fmt: skip
        return url

    async def _upload_checked(self, path: str | PathLike[str] | bytes, digest: str) -> str:
        if isinstance(path, bytes):
            return (await self.upload_image(path)).url
        # The bytes read now are the ones uploaded, and they must be those ``digest``
        # hashes: a file rewritten since would have its answer filed under the old image.
        data, _ = await asyncio.to_thread(_validate.read_image_file, "image", Path(path))
        if image_digest(data) != digest:
            raise InvalidRequestError("image", f"{Path(path).name} changed since it was read "
                                               "(its content hash differs): not uploaded")
        return (await self.upload_image(data, filename=Path(path).name)).url

    async def usage_statement(self, time_start: str, time_end: str) -> UsageStatement:
        """The platform's usage statement from ``time_start`` to ``time_end``
        (``yyyyMMdd``); see :mod:`fto_async._statement` (records lag up to a day)."""
        check_days(time_start, time_end)
        creds = self._credentials
        body = {"apikey": creds.key if isinstance(creds, ApiKey) else creds.client_id,
                "time_start": time_start, "time_end": time_end}  # fmt: skip
        if isinstance(creds, ClientCredentials):
            body["client_secret"] = creds.client_secret  # in the body only; never logged
        return UsageStatement.from_data(await self._call(STATEMENT_PATH, body))

    # -- 1-vs-1 infringement detection (AI67) ---------------------------------------

    async def submit_1v1(self, request: OneVsOneRequest) -> str:
        """Compare a product image with one design patent
        (``POST /ai/infringement-detection-1v1-creation``).

        Returns:
            The task id, valid for 8 hours.

        Raises:
            InvalidRequestError: ``request`` is not a :class:`~fto_async.OneVsOneRequest`.
            FtoError: the platform refused the call (see :mod:`fto_async.errors`).
        """
        _require(request, OneVsOneRequest, "request")
        return await self._submit(_ONE_VS_ONE_SUBMIT_PATH, request)

    async def get_1v1_report(
        self, task_id: str, *, before_send: BeforeSend | None = None
    ) -> OneVsOneReport:
        """Poll a 1-vs-1 task once (``POST /ai/infringement-detection-1v1-query``).

        Raises:
            TaskExpiredError: the platform does not know the task id (68300004 to a query
                that holds nothing but the id): it expired (8 h) or never existed.
        """
        try:
            return await self._report(
                _ONE_VS_ONE_REPORT_PATH, task_id, OneVsOneReport, before_send
            )
        except InvalidParameterError as exc:
            raise TaskExpiredError(task_id, exc.message) from exc

    async def wait_1v1(self, task_id: str, timeout: float | None = None) -> OneVsOneReport:
        """Poll a 1-vs-1 task until it succeeds; see :meth:`wait_workflow` for the rules.

        Raises:
            TaskFailedError: task_status 3. TaskExpiredError: see :meth:`get_1v1_report`.
            TaskTimeoutError: still running when ``timeout`` passed.
        """
        return await wait_for_task(lambda: self.get_1v1_report(task_id), task_id,
                                   self.config.poll, timeout)

    # -- shared plumbing ------------------------------------------------------------

    async def _call(
        self, path: str, payload: Mapping[str, Any] | None = None, **options: Any
    ) -> Any:
        """:meth:`Transport.call` with this view's ``max_retries`` (see ``with_options``)."""
        with retries_limited(self._max_retries):
            return await self._transport.call(path, payload, **options)

    async def _submit(
        self,
        path: str,
        request: Request | OneVsOneRequest,
        before_send: BeforeSend | None = None,
    ) -> str:
        url = getattr(request, "url", None)
        source = self._uploads.stale(url) if isinstance(url, str) else None
        if source is not None:  # our P010 URL would expire before use: upload it again
            request = attrs.evolve(request, url=(await self.upload_image(source)).url)
        body = _serde.unstructure(self._converter, request)
        _refuse_placeholder(body)
        answer = await self._call(path, body, before_send=before_send)
        task_id = answer.get("task_id") if isinstance(answer, Mapping) else None
        if not isinstance(task_id, str) or not task_id:
            raise ResponseDecodeError(f"{path}: the answer holds no task_id", raw=answer)
        return task_id

    async def _report(
        self, path: str, task_id: str, cls: type[_R], before_send: BeforeSend | None = None
    ) -> _R:
        if not isinstance(task_id, str) or not task_id.strip():
            raise InvalidRequestError("task_id", "must be a non-empty string")
        # Polls are for tasks already paid for: they go before queued submits (unless
        # the batch's PollConfig.order is "makespan").
        try:
            answer = await self._call(
                path, {"task_id": task_id}, before_send=before_send, priority=poll_priority()
            )
            report = await _structure_report(self._converter, answer, cls)
            answered = getattr(report, "task_id", "")
            if answered and answered != task_id:  # a gateway or proxy mixed answers up
                raise ResponseDecodeError(
                    f"{path}: the answer is for another task ({answered!r}, polled "
                    f"{task_id!r})", raw=answer,
                )  # fmt: skip
        except FtoError as exc:
            self._observer.polled(task_id, path, None, exc)
            raise
        self._observer.polled(task_id, path, report, None)
        return report

    async def _wait(self, path: str, task_id: str, cls: type[_R], timeout: float | None) -> _R:
        try:
            report = await wait_for_task(lambda: self._report(path, task_id, cls), task_id,
                                         self.config.poll, timeout)  # fmt: skip
        except FtoError as exc:
            self._observer.task_ended(None, None, task_id, None, exc, 0)
            raise
        self._observer.task_ended(None, None, task_id, report, None, 0)
        return report


#: Longest list a report may hold (comparisons, patents): a longer one is refused unread.
MAX_REPORT_LIST = 1_000
_REPORT_LISTS = (  # the paths of a report's lists, in every report shape
    ("report", "comparisons"), ("comparisons",), ("patent_messages", "patent_messages"),
    ("rrffusion_response", "patent_messages"),
)  # fmt: skip


async def _structure_report(conv: Any, answer: object, cls: type[_R]) -> _R:
    """Structure a poll's answer: a finished report is checked for list lengths first,
    then structured in a worker thread (a large one takes long: never on the loop)."""
    if not isinstance(answer, Mapping) or len(answer) <= 3:
        return _serde.structure(conv, answer, cls)  # a running task: a few fields
    for path in _REPORT_LISTS:
        node: object = answer
        for name in path:
            node = node.get(name) if isinstance(node, Mapping) else None
        if isinstance(node, list) and len(node) > MAX_REPORT_LIST:
            raise ResponseDecodeError(
                f"the report's {'.'.join(path)} holds {len(node)} entries "
                f"(at most {MAX_REPORT_LIST} are read)", raw=None,
            )  # fmt: skip
    return await asyncio.to_thread(_serde.structure, conv, answer, cls)


def _refuse_placeholder(body: Mapping[str, Any]) -> None:
    """The last guard: a request naming a stand-in image (a URL on an ``.invalid`` host,
    RFC 2606, such as the CLI's ``upload.invalid``) never leaves. Its answer would be
    another image's, filed under the real one."""
    url = body.get("url")
    if isinstance(url, str):
        host = (urlsplit(url).hostname or "").rstrip(".")
        if host == "invalid" or host.endswith(".invalid"):
            raise InvalidRequestError("url", f"{url!r} is a placeholder, not an image")


def _require(value: object, cls: Any, field: str) -> None:
    if not isinstance(value, cls):
        name = " or ".join(c.__name__ for c in getattr(cls, "__args__", (cls,)))
        raise InvalidRequestError(field, f"must be a {name}, got {type(value).__name__}")


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None
