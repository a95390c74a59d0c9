"""Class 4, what cannot be checked is never shared. A journal row whose request cannot
be verified (written before fingerprints, schema 1; or one the ``fingerprint`` option
says cannot be checked: ``None``) keeps its own result, but that result never feeds the
report cache, the batch's sharing between equal items, or a later duplicate."""

from __future__ import annotations

from pathlib import Path

from fto_async.cache import ReportCache
from fto_async.fingerprint import request_fingerprint
from fto_async.journal import ItemState, Journal
from tests._shared import collect
from tests.reliability._support import emulator, make_client, request


def _unless_old(key: str, req: object) -> str | None:
    return None if key == "old" else request_fingerprint(req)  # type: ignore[arg-type]


async def test_an_unverifiable_row_keeps_its_result_and_shares_nothing(tmp_path: Path):
    """An old row polled after the upgrade answers for itself only: an equal new row gets
    its own task, and the cache holds the new row's report, not the old one's."""
    then, now = request(1, "then"), request(1, "now")  # the photo changed since
    async with emulator() as emu, make_client(emu) as client:
        old_task = await client.submit_image_search(then)
        async with Journal(tmp_path / "j.db") as journal:
            await journal.add_pending("old", 0, client.encode_request(then), "image_search",
                                      fingerprint=None)  # fmt: skip
            await journal.mark_submitting("old")
            await journal.mark_submitted("old", old_task)
        async with (
            Journal(tmp_path / "j.db") as journal,
            ReportCache(tmp_path / "c.db") as cache,
        ):
            outcomes, raised = await collect(client.screen_many(
                [("old", now), ("new", now)], journal=journal, cache=cache,
                fingerprint=_unless_old,
            ))  # fmt: skip
            assert raised is None
            by_key = {o.key: o for o in outcomes}
            assert by_key["old"].task_id == old_task  # kept its own result, as announced
            assert by_key["new"].task_id != old_task
            assert by_key["new"].shared_with is None
            platform, account = client.provenance
            hit = await cache.get(request_fingerprint(now), platform=platform, account=account)
            assert hit is not None
            assert hit.task_id == by_key["new"].task_id
            assert journal.get("new").state is ItemState.DONE


async def test_an_unverifiable_done_row_is_not_shared(tmp_path: Path):
    """A done row that cannot be checked is yielded as it is, but an equal item asks anew."""
    then, now = request(2, "then"), request(2, "now")
    async with emulator() as emu, make_client(emu) as client:
        async with Journal(tmp_path / "j.db") as journal:
            (first,), _ = await collect(client.screen_many([("old", then)], journal=journal))
        async with Journal(tmp_path / "j.db") as journal:
            outcomes, _ = await collect(client.screen_many(
                [("old", now), ("new", now)], journal=journal, fingerprint=_unless_old,
            ))  # fmt: skip
    by_key = {o.key: o for o in outcomes}
    assert by_key["old"].task_id == first.task_id
    assert by_key["old"].resumed
    assert by_key["new"].task_id != first.task_id
    assert by_key["new"].shared_with is None
