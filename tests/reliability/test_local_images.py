"""Local images are read safely: regular files only, never more than 4 MiB + 1 byte, off the
event loop; a named pipe never hangs the catalog, the CLI or ``upload_image``."""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from fto_async import InvalidRequestError, _validate
from fto_async.cli._catalog import Catalog, Defaults
from tests._cli import cli
from tests._shared import API_KEY, PNG
from tests.client._support import running

pytestmark = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes are POSIX")

#: Seconds a check may take before it counts as hanging (it takes milliseconds).
PATIENCE = 20.0


@contextlib.contextmanager
def fifo(path: Path) -> Iterator[Path]:
    """A named pipe at ``path``; afterwards a reader still blocked on it is released."""
    os.mkfifo(path)
    try:
        yield path
    finally:
        with contextlib.suppress(OSError):  # release a reader the old code left blocked
            fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
            os.close(fd)


def in_thread(func, *args):
    """Run ``func(*args)`` in a daemon thread; return (finished, result or exception)."""
    box: list[object] = []

    def target() -> None:
        try:
            box.append(func(*args))
        except BaseException as exc:
            box.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(PATIENCE)
    return (not thread.is_alive()), (box[0] if box else None)


def test_read_image_file_refuses_a_named_pipe_without_opening_it(tmp_path):
    """A FIFO is refused at once (``open()`` on it would block for ever)."""
    with fifo(tmp_path / "pipe.png") as pipe:
        finished, result = in_thread(_validate.read_image_file, "image", pipe)
    assert finished, "read_image_file blocked on a named pipe"
    assert isinstance(result, InvalidRequestError)
    assert "named pipe" in str(result)


def test_catalog_row_with_a_named_pipe_is_invalid_not_a_hang(tmp_path):
    """A catalog row whose image_path is a FIFO becomes an invalid row, quickly."""
    pipe_path = tmp_path / "pipe.png"
    (tmp_path / "ok.png").write_bytes(PNG)
    path = tmp_path / "c.csv"
    path.write_text("sku,image_path,country\nA,pipe.png,US\nB,ok.png,US\n", encoding="utf-8")
    with fifo(pipe_path):
        finished, rows = in_thread(lambda: list(Catalog(path, Defaults()).rows()))
    assert finished, "reading the catalog blocked on a named pipe"
    assert isinstance(rows, list)
    assert "named pipe" in (rows[0].error or "")
    assert rows[1].ok


async def test_upload_image_refuses_a_named_pipe_with_no_call(tmp_path):
    """``upload_image(path)`` on a FIFO raises InvalidRequestError and sends nothing."""
    with fifo(tmp_path / "pipe.png") as pipe:
        async with running() as (emu, client):
            with pytest.raises(InvalidRequestError, match="named pipe"):
                await asyncio.wait_for(client.upload_image(pipe), PATIENCE)
            assert emu.stats.count() == 0


async def test_cli_screen_with_a_named_pipe_row_ends(tmp_path, monkeypatch):
    """``fto-async screen`` with a FIFO image_path reports the row invalid and ends."""
    monkeypatch.setenv("PATSNAP_API_KEY", API_KEY)
    (tmp_path / "ok.png").write_bytes(PNG)
    path = tmp_path / "c.csv"
    path.write_text("sku,image_path,country\nA,pipe.png,US\n", encoding="utf-8")
    with fifo(tmp_path / "pipe.png"):
        async with running() as (emu, _client):
            monkeypatch.setenv("PATSNAP_BASE_URL", emu.base_url)
            code = await asyncio.wait_for(
                cli("screen", str(path), "--out", str(tmp_path / "o.jsonl"),
                    "--time-scale", "0.001"),
                PATIENCE,
            )  # fmt: skip
            assert emu.stats.count() == 0
    assert code == 1
    assert "named pipe" in (tmp_path / "o.jsonl").read_text()


def test_devices_and_folders_are_refused(tmp_path):
    """/dev/zero (endless) and a folder are not image files: refused without reading."""
    for target, what in ((Path("/dev/zero"), "a device"), (tmp_path, "a folder")):
        if not target.exists():
            continue
        with pytest.raises(InvalidRequestError, match=what):
            _validate.read_image_file("image", target)


def test_at_most_the_limit_plus_one_byte_is_read(tmp_path, monkeypatch):
    """Whatever a file turns out to hold, the read stops at 4 MiB + 1 byte."""
    big = tmp_path / "grows.png"
    big.write_bytes(PNG)
    with big.open("ab") as handle:  # a sparse 64 MiB file
        handle.truncate(64 * 1024 * 1024)
    real_stat, real_read = os.stat, os.read
    sizes: list[int] = []

    def counting_read(fd, n):
        data = real_read(fd, n)
        sizes.append(len(data))
        return data

    # stat says 1 KiB, as for a file that grows after it was looked at
    monkeypatch.setattr(_validate.os, "stat", lambda p, *a, **k: _shrunk(real_stat(p, *a, **k)))
    monkeypatch.setattr(_validate.os, "read", counting_read)
    with pytest.raises(InvalidRequestError, match="at most 4194304 bytes"):
        _validate.read_image_file("image", big)
    assert sum(sizes) == _validate.MAX_IMAGE_BYTES + 1


def _shrunk(result: os.stat_result) -> os.stat_result:
    """``result`` claiming a 1 KiB file (as a file that grows after ``stat`` would)."""
    fields = list(result)
    fields[6] = 1024  # st_size
    return os.stat_result(fields)


async def test_upload_image_reads_off_the_event_loop(tmp_path, monkeypatch):
    """The file read and the decoding run in a worker thread, not on the event loop."""
    image = tmp_path / "a.png"
    image.write_bytes(PNG)
    threads: list[bool] = []
    real = _validate.read_image_file

    def spy(*args, **kwargs):
        threads.append(threading.current_thread() is threading.main_thread())
        return real(*args, **kwargs)

    monkeypatch.setattr(_validate, "read_image_file", spy)
    async with running() as (_emu, client):
        started = time.monotonic()
        uploaded = await client.upload_image(image)
        assert uploaded.url
        assert time.monotonic() - started < PATIENCE
    assert threads == [False]
