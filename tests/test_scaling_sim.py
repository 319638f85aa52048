"""Two-stage aggregation by user shard (docs/SCALING.md): K shard engines, each fed the events of
its users (and every room-level `show` event), merged per instant, equal the single engine on every
exactly-mergeable figure of a generated hot room; the naive split by event does not."""

import pytest

from tests.scaling_sim import ROOM_CHECKED, merge, route, shard_of, simulate


@pytest.fixture(scope="module")
def small_room():
    # 70 s of show: every SPEC §5 figure but retention_180s has values, W = 60 s is crossed
    return simulate(rate=600, duration=70, shards=(2, 3), seed=3)


def test_merged_shards_equal_one_engine_at_every_instant(small_room):
    r = small_room
    assert r["single"]["rejected"] == 0 and r["instants"] >= 70
    for shard in r["shards"]:
        assert shard["rejected"] == 0
        assert shard["mismatches"] == 0, shard["first_mismatches"]
        assert shard["checked_instants"] == shard["equal_instants"] == r["instants"]
        # every user's events in exactly one shard; the show events in all of them
        assert r["events"] <= shard["routed_events"] < r["events"] + shard["k"] * 200
        assert all(n > 0 for n in shard["shard_events"])
        assert shard["merge_us_per_instant"] > 0 and shard["shard_events_per_s"] > 0


def test_the_check_has_teeth_a_split_by_event_is_found_wrong():
    r = simulate(rate=600, duration=20, shards=(2,), seed=3, split="event")
    assert r["shards"][0]["mismatches"] > 0 and r["shards"][0]["equal_instants"] < r["instants"]
    assert any("viewers" in m or "interaction_rate" in m for m in r["shards"][0]["first_mismatches"])


def test_routing_keeps_a_user_on_one_shard_and_broadcasts_shows():
    from livemon.ingest.events import Show, View

    events = [View("r", f"u{i}", 1.0 + i, "enter") for i in range(50)] + [Show("r", 60.0, "pin", product_id="p1")]
    routed = route([events, events], 4)
    for k, batches in enumerate(routed):
        for batch in batches:
            assert all(type(e) is Show or shard_of(e.user_id, 4) == k for e in batch)
            assert sum(type(e) is Show for e in batch) == 1
    assert sum(len(b) for batches in routed for b in batches) == 2 * (50 + 4)


def test_merge_of_nothing_is_nulls_not_errors():
    merged = merge([], 60.0)
    assert set(ROOM_CHECKED) <= set(merged["metrics"])
    assert merged["metrics"]["viewers"] == 0 and merged["metrics"]["stall_ratio"] is None
    assert merged["metrics"]["latency_p95_ms"] is None
