"""A worker's step goes to the snapshots topic in records the broker accepts: cut by size, every
snapshot kept once and in order."""

import orjson

from livemon.agents.runtime import SNAPSHOT_RECORD_BYTES, snapshot_chunks


def _snapshot(room: str, size: int) -> bytes:
    return orjson.dumps({"room_id": room, "ts": 1, "by": {"source": {"x" * 8: "y" * size}}})


def test_a_large_step_is_cut_into_records_under_the_limit_keeping_every_snapshot_in_order():
    live = [_snapshot(f"room-{i:03d}", 40_000) for i in range(60)]  # ~2.4 MB: over the broker's limit at once
    finals = [_snapshot(f"room-{i:03d}", 30_000) for i in range(40)]
    chunks = snapshot_chunks(live, finals)
    assert len(chunks) > 1
    records = [orjson.dumps({"live": part_live, "final": part_final}) for part_live, part_final in chunks]
    assert all(len(record) <= SNAPSHOT_RECORD_BYTES + 100 for record in records)
    decoded = [orjson.loads(record) for record in records]
    assert [s["room_id"] for d in decoded for s in d["live"]] == [orjson.loads(b)["room_id"] for b in live]
    assert [s for d in decoded for s in d["final"]] == [orjson.loads(b) for b in finals]


def test_an_empty_step_is_one_empty_record_and_an_oversized_snapshot_goes_alone():
    assert [(list(a), list(b)) for a, b in snapshot_chunks([], [])] == [([], [])]
    big = _snapshot("room-big", SNAPSHOT_RECORD_BYTES)
    small = _snapshot("room-small", 10)
    chunks = snapshot_chunks([small, big, small], [])
    assert [len(live) for live, _ in chunks] == [1, 1, 1]
