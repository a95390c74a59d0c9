"""The examples run against an in-process emulator and do what their docstrings say."""

from __future__ import annotations

import asyncio
import csv
import json
import runpy
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer

from fto_async.emulator import Emulator, EmulatorConfig
from tests._shared import PNG, unmeasured_env

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
SCALE = "0.001"


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, emu: Emulator) -> dict[str, str]:
    """PATSNAP_* variables pointing at the emulator's demo account."""
    values = {"PATSNAP_API_KEY": "sk-demo", "PATSNAP_BASE_URL": emu.base_url,
              "PATSNAP_QPS": "500"}
    for name in ("PATSNAP_CLIENT_ID", "PATSNAP_CLIENT_SECRET"):
        monkeypatch.delenv(name, raising=False)
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return values


def load(name: str) -> dict[str, Any]:
    """Import an example by path (its ``__main__`` block does not run)."""
    return runpy.run_path(str(EXAMPLES / name), run_name=f"example_{name[:-3]}")


def test_example_catalog_is_the_bundled_sample():
    """examples/catalog.csv is byte-for-byte the sample catalog shipped in the package."""
    bundled = ROOT / "fto_async" / "data" / "sample_catalog.csv"
    assert (EXAMPLES / "catalog.csv").read_bytes() == bundled.read_bytes()


@pytest.mark.parametrize("name", ["screen_catalog.py", "web_app.py", "pipeline_step.py",
                                  "csv_pipeline.py", "fastapi_app.py", "pandas_pipeline.py",
                                  "airflow_step.py"])
def test_examples_say_how_to_run_them(name):
    """Each example's docstring explains how to run it against fto-async emulator."""
    doc = load(name)["__doc__"]
    assert "fto-async emulator" in doc
    assert "PATSNAP_BASE_URL" in doc


async def test_screen_catalog(emu, env, capsys):
    """screen_catalog.py screens every good row once and skips the three bad ones."""
    main = load("screen_catalog.py")["main"]
    code = await asyncio.to_thread(main, ["--time-scale", SCALE])
    out, err = capsys.readouterr()
    assert code == 0
    assert len(emu.stats.submits) == 38
    assert err.count("skipped") == 3
    assert "Rows by highest risk" in out
    assert "High-risk products" in out


async def test_web_app_json_multipart_and_errors(emu, env):
    """POST /screen answers a risk summary for JSON and multipart input, 400 for bad input."""
    app = load("web_app.py")["make_app"](time_scale=0.001)
    async with TestClient(TestServer(app)) as client:
        resp = await client.post("/screen", json={
            "url": "https://example.com/lamp.png", "country": ["US", "EU"], "lang": "en"
        })
        assert resp.status == 200
        body = await resp.json()
        assert set(body) >= {"task_id", "highest_risk", "high_risk_countries", "patents"}

        form = aiohttp.FormData()
        form.add_field("image", PNG, filename="lamp.png", content_type="image/png")
        form.add_field("country", "US,EU")
        resp = await client.post("/screen", data=form)
        assert resp.status == 200
        assert (await resp.json())["task_id"]

        resp = await client.post("/screen", json={"url": "ftp://x", "country": ["US"]})
        assert resp.status == 400
        assert (await resp.json())["field"] == "url"
    assert emu.stats.count("/image-search/image-upload", 0) == 1
    assert len(emu.stats.submits) == 2


async def test_web_app_shares_one_client(emu, env):
    """The app builds one client on startup and closes it on cleanup."""
    module = load("web_app.py")
    app = module["make_app"](time_scale=0.001)
    async with TestClient(TestServer(app)) as client:
        shared = app[module["CLIENT"]]
        for _ in range(2):
            resp = await client.post("/screen", json={"url": "https://example.com/a.png"})
            assert resp.status == 200
        assert app[module["CLIENT"]] is shared
        assert emu.stats.token_requests == 0  # an sk- key needs no token
    assert shared.closed


async def test_pipeline_step_subprocess(emu, env):
    """pipeline_step.py reads JSONL on stdin and writes one JSONL outcome per row."""
    rows = [
        {"id": 1, "url": "https://example.com/1.png", "country": ["US"]},
        {"id": 2, "url": "https://example.com/2.png", "country": "US,EU", "lang": "cn"},
        {"id": 3, "url": "https://example.com/3.png", "country": ["usa"]},
    ]
    stdin = "".join(json.dumps(r) + "\n" for r in rows).encode()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(EXAMPLES / "pipeline_step.py"), "--time-scale", SCALE,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, env={**unmeasured_env(), **env},
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(stdin), 30)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 1, err.decode()
    records = {r["id"]: r for r in map(json.loads, out.decode().splitlines())}
    assert set(records) == {1, 2, 3}
    assert records[1]["ok"]
    assert records[2]["ok"]
    assert records[1]["task_id"]
    assert not records[3]["ok"]
    assert records[3]["error"].startswith("country:")
    assert len(emu.stats.submits) == 2


async def test_pipeline_step_from_a_file(emu, env, tmp_path, capsys):
    """pipeline_step.py also reads a JSONL file given as its argument."""
    source = tmp_path / "in.jsonl"
    source.write_text('{"id": "a", "url": "https://example.com/a.png"}\n\n')
    main = load("pipeline_step.py")["main"]
    code = await asyncio.to_thread(main, [str(source), "--time-scale", SCALE])
    (line,) = capsys.readouterr().out.splitlines()
    assert code == 0
    assert json.loads(line)["id"] == "a"


# -- the FastAPI app (examples/fastapi_app.py) ---------------------------------------------

@asynccontextmanager
async def fastapi_app(monkeypatch: pytest.MonkeyPatch, **env: str) -> AsyncIterator[Any]:
    """The example's app, its lifespan entered, and an HTTP client talking to it. FastAPI
    and httpx are imported here, not at the module's top: every xdist worker collects
    this module, and only one runs these tests (0.2 s of imports each)."""
    pytest.importorskip("fastapi")
    httpx = pytest.importorskip("httpx")
    for name, value in {"FTO_TIME_SCALE": SCALE, **env}.items():
        monkeypatch.setenv(name, value)
    app = load("fastapi_app.py")["app"]
    async with app.router.lifespan_context(app), httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://app"
    ) as http:
        yield app, http


def lamp(i: int) -> dict[str, Any]:
    return {"url": f"https://example.com/lamp-{i}.png", "country": ["US"], "lang": "en"}


async def test_fastapi_app_shares_tasks_and_answers_records(emu, env, monkeypatch):
    async with fastapi_app(monkeypatch) as (_, http):
        answers = await asyncio.gather(*(http.post("/screen", json=lamp(i % 2))
                                         for i in range(6)))  # fmt: skip
        bad = await http.post("/screen", json={"url": "not a url"})
    assert [a.status_code for a in answers] == [200] * 6
    assert {a.json()["status"] for a in answers} == {"done"}
    assert "report" not in answers[0].json()
    assert emu.stats.count("/ai/image-search/submit", 0) == 2  # 6 requests, 2 questions
    assert bad.status_code == 400


async def test_fastapi_app_overload_is_429_and_quota_is_503(emu, env, monkeypatch):
    async with fastapi_app(monkeypatch, MAX_WAITING="1") as (_, http):
        answers = await asyncio.gather(http.post("/screen", json=lamp(1)),
                                       http.post("/screen", json=lamp(2)))  # fmt: skip
        assert sorted(a.status_code for a in answers) == [200, 429]
        refused = next(a for a in answers if a.status_code == 429)
        assert int(refused.headers["retry-after"]) >= 1
        emu.reconfigure(balance=0)
        spent = await http.post("/screen", json=lamp(3))
    assert spent.status_code == 503


async def test_fastapi_app_deadline_is_504(env, monkeypatch):
    async with Emulator(EmulatorConfig(time_scale=0.001, qps=None, hang_rate=1.0,
                                       hang_seconds=60)) as hanging:  # fmt: skip
        monkeypatch.setenv("PATSNAP_BASE_URL", hanging.base_url)
        async with fastapi_app(monkeypatch, SCREEN_DEADLINE="0.3") as (_, http):
            started = asyncio.get_running_loop().time()
            answer = await http.post("/screen", json=lamp(1))
            took = asyncio.get_running_loop().time() - started
    assert answer.status_code == 504
    assert took < 2


async def test_fastapi_app_lifespan_owns_the_client(emu, env, monkeypatch):
    """The client is created at startup, shared by every request, closed at shutdown."""
    async with fastapi_app(monkeypatch) as (app, http):
        client = app.state.fto
        assert (await http.post("/screen", json=lamp(1))).status_code == 200
        assert app.state.fto is client
        assert not client.closed
    assert client.closed


def asgi_post(path: str, body: dict[str, Any]) -> dict[str, Any]:
    """An ASGI HTTP scope for a JSON POST (what uvicorn hands the app)."""
    return {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
            "method": "POST", "scheme": "http", "path": path, "raw_path": path.encode(),
            "query_string": b"", "root_path": "", "client": ("127.0.0.1", 5000),
            "server": ("app", 80),
            "headers": [(b"host", b"app"), (b"content-type", b"application/json"),
                        (b"content-length", str(len(json.dumps(body))).encode())]}


async def test_fastapi_app_a_disconnected_caller_stops_waiting_the_task_is_kept(
    env, monkeypatch, tmp_path
):
    """The caller hangs up while its task runs: the handler stops waiting at once (499),
    the task is polled to its end and cached, so asking again costs no second task."""
    async with Emulator(EmulatorConfig(time_scale=0.001, qps=None,
                                       task_duration=1000.0)) as slow:  # 1 s tasks
        monkeypatch.setenv("PATSNAP_BASE_URL", slow.base_url)
        async with fastapi_app(monkeypatch, FTO_CACHE=str(tmp_path / "c.db")) as (app, http):
            body = lamp(7)
            inbox = [{"type": "http.request", "body": json.dumps(body).encode(),
                      "more_body": False}]  # fmt: skip
            hang_up = asyncio.Event()
            sent: list[dict[str, Any]] = []

            async def receive() -> dict[str, Any]:
                if inbox:
                    return inbox.pop(0)
                await hang_up.wait()  # what uvicorn does once the body is read
                return {"type": "http.disconnect"}

            async def send(message: dict[str, Any]) -> None:
                sent.append(message)

            handler = asyncio.create_task(app(asgi_post("/screen", body), receive, send))
            async with asyncio.timeout(10):
                while not slow.stats.submits:  # the task is paid for
                    await asyncio.sleep(0.005)
            hang_up.set()
            async with asyncio.timeout(0.5):  # stops waiting at once, not after 1 s
                await handler
            assert app.state.fto.screen_stats.in_flight == 1  # the task goes on
            async with asyncio.timeout(15):
                while app.state.fto.screen_stats.in_flight:
                    await asyncio.sleep(0.01)
            again = await http.post("/screen", json=body)
    starts = [m for m in sent if m["type"] == "http.response.start"]
    assert [m["status"] for m in starts] == [499]
    assert again.status_code == 200
    assert again.json()["status"] == "done", again.json()["error"]
    assert len(slow.stats.submits) == 1  # the second caller got the cached report


async def test_fastapi_app_202_then_get_the_result_by_token(emu, env, monkeypatch):
    """POST /tasks answers 202 with a Location holding the continuation token; GET on it
    answers 202 + Retry-After while the task runs, then 200 and the record."""
    async with fastapi_app(monkeypatch) as (_, http):
        started = await http.post("/tasks", json={"kind": "workflow", "country": ["US"],
                                                  "url": "https://example.com/w.png"})
        assert started.status_code == 202
        location = started.headers["location"]
        assert started.json()["poll"] == location
        assert int(started.headers["retry-after"]) >= 1
        statuses = []
        async with asyncio.timeout(10):
            while True:
                answer = await http.get(location)
                statuses.append(answer.status_code)
                if answer.status_code != 202:
                    break
                assert int(answer.headers["retry-after"]) >= 1
                await asyncio.sleep(0.005)
        bad = await http.get("/tasks/not-a-token")
    assert statuses[-1] == 200
    assert set(statuses[:-1]) <= {202}
    record = answer.json()
    assert record["status"] == "done", record
    assert record["task_id"] == started.json()["task_id"]
    assert bad.status_code == 400
    assert emu.stats.count("/api/mcp/submit-workflow", 0) == 1


async def test_csv_pipeline(emu, env, tmp_path):
    """examples/csv_pipeline.py: a CSV of URLs and local files in, one record per row out;
    the local image is uploaded once."""
    (tmp_path / "lamp.png").write_bytes(PNG)
    src = tmp_path / "in.csv"
    src.write_text("sku,image_url,image_path,country\n"
                   "A,https://example.com/a.png,,US\n"
                   f"B,,{tmp_path / 'lamp.png'},US\n"
                   f"C,,{tmp_path / 'lamp.png'},US\n", encoding="utf-8")  # fmt: skip
    dst = tmp_path / "out.csv"
    await load("csv_pipeline.py")["main"](src, dst, float(SCALE))
    with dst.open(newline="", encoding="utf-8") as handle:
        rows = {r["key"]: r for r in csv.DictReader(handle)}
    assert sorted(rows) == ["A", "B", "C"]
    assert {r["status"] for r in rows.values()} == {"done"}
    assert rows["B"]["task_id"] == rows["C"]["task_id"]  # equal files share one task
    assert emu.stats.count("/image-search/image-upload", 0) == 1


# -- the pandas pipeline (examples/pandas_pipeline.py) -------------------------------------


async def test_pandas_pipeline(emu, env, tmp_path):
    """A DataFrame of products in, a DataFrame of results out, in the input's order: URLs
    and local files screened, equal files sharing one upload and one task, a bad row
    'invalid' with no call."""
    pd = pytest.importorskip("pandas")
    from fto_async import FtoClient, PollConfig

    (tmp_path / "lamp.png").write_bytes(PNG)
    products = pd.DataFrame({
        "sku": ["A", "B", "C", "D"],
        "image_url": ["https://example.com/a.png", None, None, "https://example.com/d.png"],
        "image_path": [None, str(tmp_path / "lamp.png"), str(tmp_path / "lamp.png"), None],
        "country": ["US", "US,EU", "US,EU", "usa"],
    })  # fmt: skip
    module = load("pandas_pipeline.py")
    async with FtoClient(poll=PollConfig().scaled(float(SCALE))) as client:
        results = await module["screen_frame"](client, products)
    assert list(results["sku"]) == ["A", "B", "C", "D"]
    assert list(results["status"]) == ["done", "done", "done", "invalid"]
    assert results.loc[1, "task_id"] == results.loc[2, "task_id"]  # one task for B and C
    assert results.loc[3, "error"].startswith("country")
    assert "report" not in results.columns
    assert emu.stats.count("/image-search/image-upload", 0) == 1
    assert len(emu.stats.submits) == 2


async def test_pandas_pipeline_main_reads_and_writes_csv(emu, env, tmp_path):
    pd = pytest.importorskip("pandas")
    src, dst = tmp_path / "in.csv", tmp_path / "out.csv"
    src.write_text("sku,image_url,country\nA,https://example.com/a.png,US\n")
    await load("pandas_pipeline.py")["main"](src, dst, float(SCALE))
    out = pd.read_csv(dst)
    assert list(out["status"]) == ["done"]


# -- the Airflow-style step (examples/airflow_step.py) -------------------------------------


def step_catalog(tmp_path: Path) -> Path:
    src = tmp_path / "catalog.csv"
    src.write_text("sku,image_url,country\n"
                   "A,https://example.com/a.png,US\n"
                   "B,https://example.com/b.png,US\n"
                   "BAD,https://example.com/x.png,usa\n", encoding="utf-8")  # fmt: skip
    return src


async def test_airflow_step_returns_the_summary_and_lets_invalid_rows_through(
    emu, env, tmp_path
):
    """fail_on='failed' (the step's default): two done rows and an invalid one pass, the
    summary comes back; fail_on='invalid' fails the step, not worth a retry."""
    module = load("airflow_step.py")
    step, failed = module["screen_step"], module["StepFailed"]
    out = tmp_path / "out.jsonl"
    summary = await asyncio.to_thread(step, step_catalog(tmp_path), out,
                                      extra=["--time-scale", SCALE], timeout=60)  # fmt: skip
    assert summary["exit_code"] == 0
    assert summary["status"]["done"] == 2
    assert summary["status"]["invalid"] == 1
    assert len(out.read_text().splitlines()) == 3
    with pytest.raises(failed) as caught:
        await asyncio.to_thread(step, step_catalog(tmp_path), out, fail_on="invalid",
                                extra=["--time-scale", SCALE], timeout=60)  # fmt: skip
    assert caught.value.code == 1
    assert not caught.value.retry
    assert caught.value.summary["status"]["invalid"] == 1
    assert len(emu.stats.submits) == 2  # the second run resumed: nothing paid twice


async def test_airflow_step_a_spent_quota_is_worth_a_retry(emu, env, tmp_path):
    module = load("airflow_step.py")
    emu.reconfigure(balance=0)
    with pytest.raises(module["StepFailed"]) as caught:
        await asyncio.to_thread(module["screen_step"], step_catalog(tmp_path),
                                tmp_path / "out.jsonl", extra=["--time-scale", SCALE],
                                timeout=60)  # fmt: skip
    assert caught.value.code == 3
    assert caught.value.retry
    assert caught.value.summary["reason"].startswith("fatal platform error")
