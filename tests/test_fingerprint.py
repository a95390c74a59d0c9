"""The request fingerprint: equal questions agree, any change of the question differs."""

from __future__ import annotations

import base64

import pytest

from fto_async import ImageSearchRequest, InvalidRequestError, WorkflowRequest
from fto_async.fingerprint import image_digest, request_fingerprint, wire_fingerprint
from tests._shared import JPEG, PNG

URL = "https://example.com/a.png"


def test_equal_requests_agree_and_the_format_is_versioned():
    a = request_fingerprint(ImageSearchRequest(URL, ["US"], "en"))
    b = request_fingerprint(ImageSearchRequest(URL, ("US",), "en", loc_items=None))
    assert a == b
    assert a.startswith("v1:")
    assert len(a) == 3 + 64


@pytest.mark.parametrize("change", [
    {"url": "https://example.com/b.png"},
    {"country": ["US", "CN"]},
    {"country": ["CN"]},
    {"lang": "cn"},
    {"loc_items": ["06-01"]},
    {"apply_start_time": "20200101"},
    {"main_field": "lamp"},
])
def test_every_field_of_an_image_search_changes_it(change):
    base = {"url": URL, "country": ["US"], "lang": "en"}
    assert request_fingerprint(ImageSearchRequest(**base)) != request_fingerprint(
        ImageSearchRequest(**{**base, **change})
    )


def test_documented_defaults_are_explicit():
    """The workflow's simple_legal_status defaults to 1,2 on the platform."""
    a = request_fingerprint(WorkflowRequest(url=URL, country=["US"]))
    b = request_fingerprint(WorkflowRequest(url=URL, country=["US"], simple_legal_status="1,2"))
    c = request_fingerprint(WorkflowRequest(url=URL, country=["US"], simple_legal_status="0,1,2"))
    assert a == b != c


def test_kinds_never_collide():
    body = {"url": URL, "country": ["US"]}
    assert wire_fingerprint("image_search", body) != wire_fingerprint("workflow", body)


def test_base64_images_stand_in_by_their_hash():
    """Same bytes with or without a data URI prefix: one question; other bytes: another."""
    b64 = base64.b64encode(PNG).decode()
    plain = request_fingerprint(WorkflowRequest(target_image_base64=b64, country=["US"]))
    prefixed = request_fingerprint(
        WorkflowRequest(target_image_base64="data:image/png;base64," + b64, country=["US"])
    )
    other = request_fingerprint(WorkflowRequest.from_image_bytes(JPEG, country=["US"]))
    assert plain == prefixed != other
    assert b64 not in wire_fingerprint("workflow", {"target_image_base64": b64})


def test_a_local_file_stands_in_for_its_upload_url():
    """Two uploads of one file get different URLs; the file's hash makes them one question."""
    digest = image_digest(PNG)
    first = ImageSearchRequest("https://cdn.example/upload/1.png", ["US"], "en")
    second = ImageSearchRequest("https://cdn.example/upload/2.png", ["US"], "en")
    assert request_fingerprint(first) != request_fingerprint(second)
    assert request_fingerprint(first, image_sha256=digest) == request_fingerprint(
        second, image_sha256=digest
    )
    assert request_fingerprint(first, image_sha256=image_digest(JPEG)) != request_fingerprint(
        first, image_sha256=digest
    )


def test_a_non_request_is_refused():
    with pytest.raises(InvalidRequestError, match="cannot fingerprint"):
        request_fingerprint({"url": URL})
