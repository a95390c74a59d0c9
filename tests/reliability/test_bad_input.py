"""Malformed input across the library: a clear typed error, and not one call sent.

Each row of :data:`CASES` feeds one bad value to a request constructor, ``upload_image``,
``screen_many``/``wait_many``, an endpoint method, ``TaskPoller.from_continuation_token``
or the ``FtoClient`` constructor, next to a live emulator on 127.0.0.1. It must raise the
listed :class:`~fto_async.FtoError` subclass (exactly that class) with the listed
fragment in its message, and the emulator must see no call at all (``emu.stats.calls``
empty, no token request). Items of a batch that are not requests fail as their
outcome's ``error``, which the case raises.

Figures: 143 inputs in :data:`CASES` (18 of them AI67 1-vs-1 and follow-up inputs), all
refused as they should be (the 11 gaps this suite first found, bad option types given to
``FtoClient`` and a continuation token with ``"version": true``, are fixed). Plus 15 catalog
files for :class:`fto_async.cli._catalog.Catalog`: 7 unusable files, 5 bad rows (one with
text after a closing quote), a BOM, bad JSONL lines, and an unclosed quote, which would
swallow every later row and so refuses the file (it was a silent gap until strict CSV
parsing).
Its whole-file error :class:`~fto_async.cli._catalog.CatalogError` is *not* an ``FtoError``:
the module is private and the CLI catches it. Runtime about 2 s.
"""

from __future__ import annotations

import base64
import inspect
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from fto_async import (
    ConfigurationError,
    FollowUp,
    FtoClient,
    FtoError,
    ImageSearchRequest,
    InvalidRequestError,
    LocItem,
    OneVsOneRequest,
    RetryConfig,
    TaskPoller,
    WorkflowRequest,
)
from fto_async.cli._catalog import Catalog, CatalogError, Defaults, stand_in_key
from tests._shared import API_KEY, JPEG, PNG

from ._support import emulator, make_client

URL = "https://img.example/lamp.png"
MAX = 4 * 1024 * 1024
IRE = InvalidRequestError
CFG = ConfigurationError


def isr(**changes: Any) -> ImageSearchRequest:
    """An ImageSearchRequest with ``changes`` over valid fields."""
    fields: dict[str, Any] = {"url": URL, "country": ["US"], "lang": "en", **changes}
    return ImageSearchRequest(**fields)


def wf(**changes: Any) -> WorkflowRequest:
    """A WorkflowRequest with ``changes`` over a valid URL."""
    return WorkflowRequest(**{"url": URL, **changes})


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


async def first_error(outcomes: AsyncIterator[Any]) -> None:
    """Raise the error of the only outcome of a batch."""
    got = [outcome async for outcome in outcomes]
    assert len(got) == 1, got
    raise got[0].error


def client_with(client: FtoClient, **options: Any) -> FtoClient:
    """Build another client for the same emulator with ``options`` (the case under test)."""
    creds = {"api_key": API_KEY} if not {"api_key", "client_id", "client_secret"} & set(
        options
    ) else {}
    return FtoClient(**{**creds, "base_url": client.config.base_url, **options})


async def sent(client: FtoClient, **options: Any) -> None:
    """Build a client with ``options`` and submit once (for options that fail late)."""
    async with client_with(client, **options) as other:
        await other.submit_image_search(isr())


def token(**fields: Any) -> str:
    data = {"version": 1, "kind": "image_search", "task_id": "t-1",
            "endpoint": "/ai/image-search/report", **fields}
    return json.dumps(data)


Action = Callable[[FtoClient, Path], Any]
GAP = "known gap: a bad option type escapes as a non-FtoError (or is accepted)"


def case(action: Action, error: type[FtoError], fragment: str, id: str, gap: str = "") -> Any:
    marks = [pytest.mark.xfail(strict=True, reason=gap)] if gap else []
    return pytest.param(action, error, fragment, id=id, marks=marks)


CASES = [
    # -- ImageSearchRequest ------------------------------------------------------------
    case(lambda c, p: isr(url=42), IRE, "url: must be an http or https URL (a str), got int",
         "isr-url-int"),
    case(lambda c, p: isr(url=None), IRE, "got None", "isr-url-none"),
    case(lambda c, p: isr(url="ftp://img.example/a.png"), IRE, "must be an http or https URL",
         "isr-url-ftp"),
    case(lambda c, p: isr(url="https://img.example/a lamp.png"), IRE, "must not contain whitespace",
         "isr-url-space"),
    case(lambda c, p: isr(url=" https://img.example/a.png"), IRE, "whitespace",
         "isr-url-leading-space"),
    case(lambda c, p: isr(url="https://img.example/\x00.png"), IRE, "whitespace",
         "isr-url-control-char"),
    case(lambda c, p: isr(url="https://"), IRE, "must have a host", "isr-url-no-host"),
    case(lambda c, p: isr(url="http://[::1/a.png"), IRE, "is not a valid URL",
         "isr-url-bad-ipv6"),
    case(lambda c, p: isr(url="javascript:alert(1)"), IRE, "http or https", "isr-url-javascript"),
    case(lambda c, p: isr(url="img.example/a.png"), IRE, "http or https", "isr-url-no-scheme"),
    case(lambda c, p: isr(url=""), IRE, "http or https", "isr-url-empty"),
    case(lambda c, p: isr(country="US"), IRE, "not a bare string", "isr-country-bare-string"),
    case(lambda c, p: isr(country=[]), IRE, "non-empty list", "isr-country-empty"),
    case(lambda c, p: isr(country=["us"]), IRE, "two upper-case letters, got 'us'",
         "isr-country-lowercase"),
    case(lambda c, p: isr(country=["USA"]), IRE, "two upper-case letters", "isr-country-3-letters"),
    case(lambda c, p: isr(country=["US", "US"]), IRE, "distinct", "isr-country-duplicate"),
    case(lambda c, p: isr(country=[1]), IRE, "two upper-case letters", "isr-country-int-item"),
    case(lambda c, p: isr(country=None), IRE, "got None", "isr-country-none"),
    case(lambda c, p: isr(country={"US": 1}), IRE, "got dict", "isr-country-dict"),
    case(lambda c, p: isr(lang="EN"), IRE, "must be 'cn' or 'en'", "isr-lang-uppercase"),
    case(lambda c, p: isr(lang="fr"), IRE, "must be 'cn' or 'en'", "isr-lang-fr"),
    case(lambda c, p: isr(lang=None), IRE, "must be 'cn' or 'en'", "isr-lang-none"),
    case(lambda c, p: isr(loc_items=[]), IRE, "non-empty list of Locarno", "isr-loc-empty"),
    case(lambda c, p: isr(loc_items=["14"]), IRE, "must look like '14-02'", "isr-loc-short"),
    case(lambda c, p: isr(loc_items=["33-01"]), IRE, "class 01-32", "isr-loc-class-33"),
    case(lambda c, p: isr(loc_items=["00-01"]), IRE, "class 01-32", "isr-loc-class-00"),
    case(lambda c, p: isr(loc_items="14-02"), IRE, "not a bare string", "isr-loc-bare-string"),
    case(lambda c, p: isr(loc_items=[None]), IRE, "got None", "isr-loc-none-item"),
    case(lambda c, p: isr(apply_start_time="20230230"), IRE, "real calendar date",
         "isr-date-feb-30"),
    case(lambda c, p: isr(apply_start_time="20231301"), IRE, "real calendar date",
         "isr-date-month-13"),
    case(lambda c, p: isr(apply_start_time="00000101"), IRE, "real calendar date",
         "isr-date-year-0"),
    case(lambda c, p: isr(apply_start_time="2023-01-01"), IRE, "'yyyyMMdd'", "isr-date-dashes"),
    case(lambda c, p: isr(apply_start_time=20230101), IRE, "'yyyyMMdd'", "isr-date-int"),
    case(lambda c, p: isr(main_field=""), IRE, "non-empty string", "isr-main-field-empty"),
    case(lambda c, p: isr(main_field="x" * 201), IRE, "at most 200 characters",
         "isr-main-field-long"),
    case(lambda c, p: isr(main_field=5), IRE, "must be a str, got int", "isr-main-field-int"),
    # -- WorkflowRequest ---------------------------------------------------------------
    case(lambda c, p: WorkflowRequest(), IRE, "give url or target_image_base64",
         "wf-no-image"),
    case(lambda c, p: wf(apply_start_time="20230101", apply_end_time="20221231"), IRE,
         "must not be before apply_start_time", "wf-end-before-start"),
    case(lambda c, p: wf(apply_end_time="20230431"), IRE, "real calendar date",
         "wf-end-april-31"),
    case(lambda c, p: wf(target_image_base64="!!!!"), IRE, "strict base64", "wf-b64-invalid"),
    case(lambda c, p: wf(target_image_base64=b64(PNG)[:-3]), IRE, "strict base64",
         "wf-b64-bad-padding"),
    case(lambda c, p: wf(target_image_base64=b64(PNG) + "\n"), IRE, "no line breaks",
         "wf-b64-line-break"),
    case(lambda c, p: wf(target_image_base64=b64(b"hello, not an image")), IRE,
         "must be a PNG or JPEG", "wf-b64-text"),
    case(lambda c, p: wf(target_image_base64=b64(b"GIF89a" + bytes(20))), IRE,
         "must be a PNG or JPEG", "wf-b64-gif"),
    case(lambda c, p: wf(target_image_base64="A" * (4 * (MAX // 3) + 8)), IRE,
         "at most 4194304 bytes", "wf-b64-huge"),
    case(lambda c, p: wf(target_image_base64=b64(PNG + bytes(MAX))), IRE,
         "at most 4194304 bytes", "wf-b64-decodes-over-4mib"),
    case(lambda c, p: wf(target_image_base64=""), IRE, "must not be empty", "wf-b64-empty"),
    case(lambda c, p: wf(target_image_base64=PNG), IRE, "from_image_bytes", "wf-b64-bytes"),
    case(lambda c, p: wf(target_image_base64="data:image/png;base64," + b64(JPEG)), IRE,
         "says image/png but the bytes are a JPEG", "wf-b64-data-uri-mismatch"),
    case(lambda c, p: wf(target_image_base64="data:text/plain;base64," + b64(PNG)), IRE,
         "a data URI must start with", "wf-b64-data-uri-text"),
    case(lambda c, p: wf(simple_legal_status="7"), IRE, "each status must be 0, 1, 2, 220",
         "wf-legal-7"),
    case(lambda c, p: wf(simple_legal_status=[]), IRE, "at least one status", "wf-legal-empty"),
    case(lambda c, p: wf(simple_legal_status="1,1"), IRE, "distinct", "wf-legal-duplicate"),
    case(lambda c, p: wf(simple_legal_status=True), IRE, "got bool", "wf-legal-bool"),
    case(lambda c, p: wf(loc_items=[{"id": "09-01", "bad": 1}]), IRE,
         "a mapping needs 'id' and at most 'desc'", "wf-loc-mapping-extra-key"),
    case(lambda c, p: wf(loc_items=[3.5]), IRE, "got float", "wf-loc-float"),
    case(lambda c, p: wf(loc_items=["09-01", "99-01"]), IRE, "class 01-32", "wf-loc-class-99"),
    case(lambda c, p: wf(country=["cn"]), IRE, "two upper-case letters", "wf-country-lowercase"),
    case(lambda c, p: wf(title="   "), IRE, "non-empty string", "wf-title-blank"),
    case(lambda c, p: wf(user_id=5), IRE, "must be a str, got int", "wf-user-id-int"),
    case(lambda c, p: LocItem("9-1"), IRE, "must look like '14-02'", "locitem-bad-code"),
    case(lambda c, p: LocItem("09-01", desc=5), IRE, "must be a str or None", "locitem-desc-int"),
    case(lambda c, p: WorkflowRequest.from_image_bytes("not bytes"), IRE,  # type: ignore[arg-type]
         "image data must be bytes", "wf-from-bytes-str"),
    case(lambda c, p: WorkflowRequest.from_image_bytes(PNG, target_image_base64=b64(PNG)), IRE,
         "not both", "wf-from-bytes-twice"),
    case(lambda c, p: WorkflowRequest.from_image_bytes(b"%PDF-1.7"), IRE,
         "must be a PNG or JPEG", "wf-from-bytes-pdf"),
    # -- upload_image ------------------------------------------------------------------
    case(lambda c, p: c.upload_image(b"hello, not an image"), IRE, "must be a PNG or JPEG image",
         "upload-bytes-text"),
    case(lambda c, p: c.upload_image(write(p / "notes.txt", b"plain text\n")), IRE,
         "must be a PNG or JPEG image", "upload-text-file"),
    case(lambda c, p: c.upload_image(write(p / "big.png", PNG + bytes(MAX))), IRE,
         "must be at most 4194304 bytes", "upload-file-over-4mb"),
    case(lambda c, p: c.upload_image(PNG + bytes(MAX)), IRE, "must be at most 4194304 bytes",
         "upload-bytes-over-4mb"),
    case(lambda c, p: c.upload_image(p / "missing.png"), IRE, "cannot read missing.png",
         "upload-missing-path"),
    case(lambda c, p: c.upload_image(str(p)), IRE, "cannot read", "upload-directory"),
    case(lambda c, p: c.upload_image(write(p / "empty.png", b"")), IRE,
         "must be a PNG or JPEG image", "upload-empty-file"),
    case(lambda c, p: c.upload_image(42), IRE, "must be a path or bytes, got int",  # type: ignore[arg-type]
         "upload-int"),
    # -- batches fed items that are not requests ----------------------------------------
    case(lambda c, p: first_error(c.screen_many([URL])), IRE,
         "must be an ImageSearchRequest or WorkflowRequest, got str", "screen-url-string"),
    case(lambda c, p: first_error(c.screen_many([None])), IRE, "got NoneType", "screen-none"),
    case(lambda c, p: first_error(c.screen_many([{"url": URL}])), IRE, "got dict",
         "screen-dict"),
    case(lambda c, p: first_error(c.screen_many([("sku-1", 42)])), IRE, "got int",
         "screen-pair-int"),
    case(lambda c, p: first_error(c.screen_many([("sku-1", b"bytes")])), IRE, "got bytes",
         "screen-pair-bytes"),
    case(lambda c, p: first_error(c.screen_many([isr()], unknown_policy="ignore")), IRE,
         "unknown_policy: must be 'resubmit' or 'skip'", "screen-bad-unknown-policy"),
    case(lambda c, p: first_error(c.wait_many([""])), IRE, "task_id: must be a non-empty",
         "wait-empty-task-id"),
    case(lambda c, p: first_error(c.wait_many([("k", 17)])), IRE, "non-empty string",
         "wait-int-task-id"),
    # -- endpoint methods --------------------------------------------------------------
    case(lambda c, p: c.submit_image_search(wf()), IRE,  # type: ignore[arg-type]
         "must be a ImageSearchRequest, got WorkflowRequest", "submit-wrong-kind"),
    case(lambda c, p: c.submit_workflow(isr()), IRE,  # type: ignore[arg-type]
         "must be a WorkflowRequest, got ImageSearchRequest", "submit-workflow-wrong-kind"),
    case(lambda c, p: c.submit({"url": URL}), IRE, "got dict",  # type: ignore[arg-type]
         "submit-dict"),
    case(lambda c, p: c.get_image_search_report(""), IRE, "task_id: must be a non-empty",
         "report-empty-task-id"),
    case(lambda c, p: c.get_report("   "), IRE, "non-empty", "report-blank-task-id"),
    case(lambda c, p: c.poller("", "image_search"), IRE, "task_id", "poller-empty-task-id"),
    case(lambda c, p: c.poller("t-1", "video"), IRE,  # type: ignore[arg-type]
         "kind: must be 'image_search' or 'workflow'", "poller-bad-kind"),
    # -- AI67 1-vs-1 (OneVsOneRequest, its methods, the follow-up stage) -----------------
    case(lambda c, p: OneVsOneRequest("", URL), IRE, "patent_number: must be a publication",
         "1v1-pn-empty"),
    case(lambda c, p: OneVsOneRequest("usd1055174s1", URL), IRE, "two upper-case letters",
         "1v1-pn-lowercase"),
    case(lambda c, p: OneVsOneRequest("US D1055174", URL), IRE, "publication number",
         "1v1-pn-space"),
    case(lambda c, p: OneVsOneRequest("US-D1055174", URL), IRE, "publication number",
         "1v1-pn-dash"),
    case(lambda c, p: OneVsOneRequest("USD1", URL), IRE, "4-30", "1v1-pn-short"),
    case(lambda c, p: OneVsOneRequest("US" + "1" * 31, URL), IRE, "4-30", "1v1-pn-long"),
    case(lambda c, p: OneVsOneRequest("1055174", URL), IRE, "publication number",
         "1v1-pn-no-authority"),
    case(lambda c, p: OneVsOneRequest(1055174, URL), IRE, "(a str), got int",  # type: ignore[arg-type]
         "1v1-pn-int"),
    case(lambda c, p: OneVsOneRequest("USD1055174S1", "ftp://img.example/a.png"), IRE,
         "url: must be an http or https URL", "1v1-url-ftp"),
    case(lambda c, p: OneVsOneRequest("USD1055174S1", None), IRE, "got None",  # type: ignore[arg-type]
         "1v1-url-none"),
    case(lambda c, p: OneVsOneRequest("USD1055174S1", URL, "fr"), IRE,
         "report_lang: must be 'cn' or 'en'", "1v1-lang-fr"),
    case(lambda c, p: c.submit_1v1(isr()), IRE,  # type: ignore[arg-type]
         "must be a OneVsOneRequest, got ImageSearchRequest", "1v1-submit-wrong-kind"),
    case(lambda c, p: c.get_1v1_report(""), IRE, "task_id: must be a non-empty",
         "1v1-report-empty-task-id"),
    case(lambda c, p: c.wait_1v1("  "), IRE, "task_id: must be a non-empty",
         "1v1-wait-blank-task-id"),
    case(lambda c, p: FollowUp(top=0), IRE, "top: must be an int of at least 1",
         "follow-up-top-0"),
    case(lambda c, p: FollowUp(top=True), IRE, "top", "follow-up-top-bool"),
    case(lambda c, p: FollowUp(min_risk="severe"), IRE, "min_risk: must be High, Medium or Low",
         "follow-up-bad-level"),
    case(lambda c, p: first_error(c.screen_many([isr()], follow_up="high:3")), IRE,  # type: ignore[arg-type]
         "follow_up: must be a FollowUp, got str", "follow-up-not-a-followup"),
    # -- continuation tokens -----------------------------------------------------------
    case(lambda c, p: TaskPoller.from_continuation_token(c, "not json"), IRE, "not JSON",
         "token-not-json"),
    case(lambda c, p: TaskPoller.from_continuation_token(c, ""), IRE, "not JSON", "token-empty"),
    case(lambda c, p: TaskPoller.from_continuation_token(c, None), IRE,  # type: ignore[arg-type]
         "not JSON", "token-none"),
    case(lambda c, p: TaskPoller.from_continuation_token(c, "[]"), IRE, "version 1 token",
         "token-list"),
    case(lambda c, p: TaskPoller.from_continuation_token(c, token(version=2)), IRE,
         "version 1 token", "token-newer-version"),
    case(lambda c, p: TaskPoller.from_continuation_token(c, token(kind="video")), IRE,
         "lacks a valid kind or task_id", "token-bad-kind"),
    case(lambda c, p: TaskPoller.from_continuation_token(c, token(task_id=5)), IRE,
         "lacks a valid kind or task_id", "token-int-task-id"),
    case(lambda c, p: TaskPoller.from_continuation_token(c, token(task_id="")), IRE,
         "task_id: must be a non-empty", "token-empty-task-id"),
    case(lambda c, p: TaskPoller.from_continuation_token(c, token(endpoint="/evil")), IRE,
         "was made for '/evil'", "token-other-endpoint"),
    case(lambda c, p: TaskPoller.from_continuation_token(c, token(version=True)), IRE,
         "version 1 token", "token-version-true",
         ),
    # -- FtoClient options --------------------------------------------------------------
    case(lambda c, p: FtoClient(base_url=c.config.base_url), CFG, "no credentials",
         "client-no-credentials"),
    case(lambda c, p: FtoClient(client_id="demo-client", base_url=c.config.base_url), CFG,
         "no credentials", "client-id-without-secret"),
    case(lambda c, p: FtoClient(api_key=API_KEY, client_id="demo-client",
                                client_secret="demo-secret"), CFG,
         "either api_key or client_id/client_secret, not both", "client-both-schemes"),
    case(lambda c, p: FtoClient(client_id="", client_secret="x"), CFG, "must both be non-empty",
         "client-empty-id"),
    case(lambda c, p: FtoClient(api_key="abc"), CFG, "must be an 'sk-' key", "client-key-not-sk"),
    case(lambda c, p: client_with(c, qps=0), CFG, "qps must be > 0, got 0", "client-qps-0"),
    case(lambda c, p: client_with(c, qps=-5), CFG, "qps must be > 0", "client-qps-negative"),
    case(lambda c, p: client_with(c, qps=float("nan")), CFG, "qps must be a finite number",
         "client-qps-nan"),
    case(lambda c, p: client_with(c, base_url="ftp://img.example"), CFG,
         "base_url must be http(s)", "client-base-url-ftp"),
    case(lambda c, p: client_with(c, base_url="connect.patsnap.com"), CFG,
         "base_url must be http(s)", "client-base-url-no-scheme"),
    case(lambda c, p: client_with(c, base_url=""), CFG, "base_url must be http(s)",
         "client-base-url-empty"),
    case(lambda c, p: client_with(c, timeout=0), CFG, "timeout must be > 0", "client-timeout-0"),
    case(lambda c, p: client_with(c, max_in_flight=0), CFG, "positive integer",
         "client-in-flight-0"),
    case(lambda c, p: client_with(c, max_in_flight=2.5), CFG, "positive integer",
         "client-in-flight-float"),
    case(lambda c, p: client_with(c, max_calls=-5), CFG, "positive integer",
         "client-max-calls-negative"),
    case(lambda c, p: client_with(c, workflow_result_path="api/result"), CFG,
         "must start with '/'", "client-workflow-path-relative"),
    case(lambda c, p: client_with(c, retry=RetryConfig(base=-1)), CFG, "base must be >= 0",
         "client-retry-base-negative"),
    case(lambda c, p: client_with(c, qps="fast"), CFG, "qps", "client-qps-str"),
    case(lambda c, p: client_with(c, timeout="10"), CFG, "timeout", "client-timeout-str",
         ),
    case(lambda c, p: client_with(c, base_url=5), CFG, "base_url", "client-base-url-int",
         ),
    case(lambda c, p: FtoClient(api_key=5), CFG, "api_key", "client-key-int"),  # type: ignore[arg-type]
    case(lambda c, p: FtoClient(client_id=5, client_secret="x"), CFG, "client_id",  # type: ignore[arg-type]
         "client-id-int"),
    case(lambda c, p: sent(c, qps=float("inf")), CFG, "qps", "client-qps-inf"),
    case(lambda c, p: client_with(c, daily_limit=True), CFG, "daily_limit",
         "client-daily-limit-bool"),
    case(lambda c, p: client_with(c, retry=RetryConfig(max_attempts=0)), CFG, "max_attempts",
         "client-retry-0-attempts"),
    case(lambda c, p: client_with(c, retry=RetryConfig(budget=-1)), CFG, "budget",
         "client-retry-budget-negative"),
    case(lambda c, p: client_with(c, poll=None, config=None, timeout=float("inf")), CFG,
         "timeout", "client-timeout-inf"),
]


async def attempt(action: Action, client: FtoClient, tmp_path: Path) -> None:
    """Run one case (awaiting it if needed; closing a client it managed to build)."""
    result = action(client, tmp_path)
    if inspect.isawaitable(result):
        await result
    if isinstance(result, FtoClient):
        await result.aclose()


@pytest.mark.parametrize(("action", "error", "fragment"), CASES)
async def test_bad_input_is_refused_before_any_call(
    action: Action, error: type[FtoError], fragment: str, tmp_path: Path
) -> None:
    """The bad input raises exactly its FtoError class, with a clear message, and no call
    reaches the emulator."""
    async with emulator() as emu, make_client(emu) as client:
        with pytest.raises(FtoError) as info:
            await attempt(action, client, tmp_path)
        assert type(info.value) is error, repr(info.value)
        assert fragment in str(info.value), str(info.value)
        assert not emu.stats.calls, emu.stats.calls
        assert emu.stats.token_requests == 0
        assert client.stats.calls == 0


# -- catalogs (fto_async.cli._catalog, the CLI's reader) -------------------------------------

HEADER = "sku,image_url,country\n"
CATALOG_FILES: list[Any] = [
    pytest.param(b"", "the catalog is empty", id="empty-file"),
    pytest.param(b"\n\n  \n", "the catalog is empty", id="blank-lines-only"),
    pytest.param(b"image_url,country\nhttps://a.example/x.png,US\n", "no key column",
                 id="no-key-column"),
    pytest.param(b"sku,country\nA1,US\n", "no image column", id="no-image-column"),
    pytest.param(b"sku,image_url\nA1,https://a.example/x.png\n", "no 'country' column",
                 id="no-country-column"),
    pytest.param("sku,image_url,country\nA1,https://a.example/é.png,US\n".encode("latin-1"),
                 "not UTF-8 text (byte 0xe9 on line 2)", id="latin-1-bytes"),
    pytest.param("sku,image_url,country\n".encode("utf-16"), "not UTF-8", id="utf-16-bom"),
]


@pytest.mark.parametrize(("content", "fragment"), CATALOG_FILES)
def test_unusable_catalog_raises_catalog_error(content: bytes, fragment: str,
                                               tmp_path: Path) -> None:
    """A catalog that cannot be used at all raises CatalogError naming the problem."""
    path = write(tmp_path / "catalog.csv", content)
    with pytest.raises(CatalogError) as info:
        Catalog(path).scan()
    assert fragment in str(info.value), str(info.value)
    assert not isinstance(info.value, FtoError)  # private to the CLI, which catches it


CATALOG_ROWS: list[Any] = [
    pytest.param(HEADER + "A1,https://a.example/1.png,US\nA1,https://a.example/2.png,US\n",
                 {stand_in_key(3): "duplicate key 'A1' (first on line 2)"}, id="duplicate-key"),
    pytest.param(HEADER + "A1,https://a.example/1.png,us\n",
                 {"A1": "country: each code must be two upper-case letters"},
                 id="lowercase-country"),
    pytest.param(HEADER + ",https://a.example/1.png,US\n",
                 {stand_in_key(2): "no key (sku or id is empty)"}, id="empty-key"),
    pytest.param(HEADER + "A1,https://a.example/1.png,US,extra\n",
                 {stand_in_key(2): "has 4 values but the header has 3 columns"},
                 id="too-many-cells"),
    pytest.param(HEADER + '"A1"x,https://a.example/1.png,US\nA2,https://a.example/2.png,US\n',
                 {stand_in_key(2): "broken CSV (',' expected after '\"')"}, id="text-after-quote"),
]


@pytest.mark.parametrize(("content", "errors"), CATALOG_ROWS)
def test_bad_catalog_rows_are_flagged_not_raised(content: str, errors: dict[str, str],
                                                 tmp_path: Path) -> None:
    """Rows that cannot be screened carry their reason; the good rows around them stay good."""
    path = write(tmp_path / "catalog.csv", content.encode())
    rows = {row.jkey: row for row in Catalog(path).rows()}
    for jkey, fragment in errors.items():
        assert rows[jkey].error is not None
        assert fragment in rows[jkey].error, rows[jkey].error
    assert all(row.ok for jkey, row in rows.items() if jkey not in errors)


def test_unclosed_quote_stops_the_catalog_instead_of_losing_rows(tmp_path: Path) -> None:
    """An unclosed quote would swallow every later row: the file is refused, naming the line."""
    path = write(tmp_path / "catalog.csv", (HEADER + "A0,https://a.example/0.png,US\n"
                                            '"A1,https://a.example/1.png,US\n'
                                            "A2,https://a.example/2.png,US\n").encode())
    with pytest.raises(CatalogError, match="line 3: a quote opened here is never closed"):
        list(Catalog(path).rows())


def test_utf8_bom_catalog_is_read_fine(tmp_path: Path) -> None:
    """A UTF-8 BOM (Excel's CSV export) is not part of the first column's name."""
    path = write(tmp_path / "catalog.csv", b"\xef\xbb\xbf" + HEADER.encode()
                 + b"A1,https://a.example/1.png,US\n")
    rows = list(Catalog(path).rows())
    assert [(row.key, row.ok) for row in rows] == [("A1", True)]


def test_jsonl_catalog_bad_lines_are_flagged(tmp_path: Path) -> None:
    """JSONL lines that are not JSON objects become flagged rows, not a crash."""
    lines = ['{"sku": "A1", "url": "https://a.example/1.png", "country": "US"}', "{not json",
             "[1, 2]", '{"sku": "A2", "url": "ftp://a.example/2.png", "country": "US"}']
    path = write(tmp_path / "catalog.jsonl", "\n".join(lines).encode())
    rows = list(Catalog(path, Defaults(country=("US",))).rows())
    assert [row.ok for row in rows] == [True, False, False, False]
    assert "bad JSON" in (rows[1].error or "")
    assert "not a JSON object (got list)" in (rows[2].error or "")
    assert "http or https" in (rows[3].error or "")
