"""Logging: one DEBUG record per call (redacted), batch start and end at INFO, nothing more."""

from __future__ import annotations

import logging

import pytest

from fto_async import FtoClient, ImageSearchRequest, PollConfig, RetryConfig
from fto_async.testing import MockRequest, MockResponse, MockTransport

KEY = "sk-LOGSECRET"


def _platform(request: MockRequest) -> MockResponse:
    if request.path.endswith("/submit"):
        # one task per image (".../07.png?sig=..." -> "t-07"): one id for two questions
        # is a replayed answer, refused since the batch binds task ids to questions
        return MockResponse.ok({"task_id": f"t-{request.json['url'].rsplit('/', 1)[1][:2]}"})
    return MockResponse.ok({"task_id": request.json["task_id"], "task_status": 2})


async def test_calls_log_at_debug_redacted_and_a_batch_at_info(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Per-call records are DEBUG with the key redacted; INFO holds only the batch's ends."""
    requests = [ImageSearchRequest(url=f"https://img.example/{i:02d}.png?sig=SIGLOG",
                                   country=["US"], lang="en") for i in range(12)]  # fmt: skip
    with caplog.at_level(logging.DEBUG, logger="fto_async"):
        async with FtoClient(api_key=KEY, transport=MockTransport(_platform), qps=1000.0,
                             retry=RetryConfig.for_testing(),
                             poll=PollConfig(interval=0.01, min_interval=0.01)) as client:
            outcomes = [o async for o in client.screen_many(requests)]
    assert all(o.ok for o in outcomes)
    records = [r for r in caplog.records if r.name.startswith("fto_async")]
    per_call = [r for r in records if r.getMessage().startswith("POST ")]
    assert len(per_call) == client.stats.calls == 24
    assert all(r.levelno == logging.DEBUG for r in per_call)
    assert all("apikey=***" in r.getMessage() for r in per_call)
    infos = [r.getMessage() for r in records if r.levelno >= logging.INFO]
    assert len(infos) == 2
    assert infos[0].startswith("batch started")
    assert infos[1].startswith("batch ended: 12 read, 12 done, 0 failed")
    for record in records:
        assert KEY not in record.getMessage()
        assert "SIGLOG" not in record.getMessage()
