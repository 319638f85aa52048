"""The engine against the straightforward computation of every SPEC definition (tests/reference.py),
on generated shows with out-of-order arrival, late events, re-entries, timeouts, duplicate orders."""

import random

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from livemon.engine import Engine, EngineConfig
from livemon.replay import REPLAY_ADMISSION, replay_lines
from tests.reference import assert_matches, timeline

T0 = 1_700_000_000.0


def generated_show(seed, users=40, rooms=2, span=400.0, disorder=4.0, late_share=0.03):
    """Events in arrival order: each event arrives up to `disorder` seconds after its ts."""
    rng = random.Random(seed)
    events = []
    for u in range(users):
        room = f"room-{rng.randrange(rooms)}"
        user = f"user-{u}"
        ts = T0 + rng.uniform(0, span * 0.6)
        cdn = rng.choice(["cdn-a", "cdn-b"])
        for _ in range(rng.randint(1, 3)):  # visits; gaps may exceed the presence timeout
            if rng.random() < 0.1:
                events.append({"type": "view", "room_id": room, "user_id": user, "ts": ts, "action": "leave"})
            events.append({"type": "view", "room_id": room, "user_id": user, "ts": ts, "action": "enter"})
            for _ in range(rng.randint(0, 6)):
                ts += rng.choice([rng.uniform(1, 40), rng.uniform(80, 120)])
                kind = rng.random()
                if kind < 0.6:
                    events.append({"type": "view", "room_id": room, "user_id": user, "ts": ts,
                                   "action": rng.choice(["heartbeat", "heartbeat", "enter"])})
                elif kind < 0.75:
                    events.append({"type": "danmaku", "room_id": room, "user_id": user, "ts": ts, "text": "好"})
                elif kind < 0.85:
                    target = rng.choice(["product", "product", "cart", "like", "share", "follow"])
                    click = {"type": "click", "room_id": room, "user_id": user, "ts": ts, "target": target}
                    if target in ("product", "cart"):
                        click["product_id"] = "sku-1"
                    events.append(click)
                else:
                    order = f"order-{rng.randrange(30)}"
                    status = rng.choice(["created", "paid", "paid", "refunded"])
                    events.append({"type": "order", "room_id": room, "user_id": user, "ts": ts, "order_id": order,
                                   "product_id": "sku-1", "amount": round(rng.uniform(1, 300), 2), "status": status})
                beacon = {"type": "health", "room_id": room, "user_id": user, "ts": ts + 0.5, "cdn": cdn,
                          "play_ms": rng.randrange(0, 10000), "stall_ms": rng.choice([0, 0, rng.randrange(5000)]),
                          "stall_count": rng.randrange(3)}
                if rng.random() < 0.8:
                    beacon["latency_ms"] = rng.uniform(500, 9000)
                if rng.random() < 0.1:
                    beacon["error"] = "decode"
                events.append(beacon)
            if rng.random() < 0.7:
                ts += rng.uniform(0, 20)
                events.append({"type": "view", "room_id": room, "user_id": user, "ts": ts, "action": "leave"})
            ts += rng.uniform(1, 150)
    arrival = []
    for event in events:
        delay = rng.uniform(0, disorder)
        if rng.random() < late_share:
            delay += rng.uniform(10, 60)  # too late: must be rejected
        arrival.append((event["ts"] + delay, event))
    arrival.sort(key=lambda pair: pair[0])
    return [event for _, event in arrival]


def engine_timeline(events, config=None, until=None):
    lines = [orjson.dumps(e) for e in events]
    return {(s["room_id"], s["ts"]): s for s in replay_lines(lines, config, until)}


def check(events, until=None):
    got = engine_timeline(events, until=until)
    want = timeline(events, until=until)
    assert set(got) == set(want), f"lines differ: {sorted(set(got) ^ set(want))[:5]}"
    for key in sorted(want):
        assert_matches(got[key], want[key], where=str(key))
    return got


def test_generated_shows_match_the_reference():
    for seed in range(6):
        got = check(generated_show(seed))
        assert any(s["metrics"]["online"] for s in got.values())


def test_evaluation_continues_until_requested_instant():
    events = generated_show(42, users=10, rooms=1, span=100)
    last = max(e["ts"] for e in events)
    got = check(events, until=last + 200)
    assert max(t for _, t in got) == int(last + 200)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 10**9), st.floats(0, 5), st.integers(2, 15))
def test_any_arrival_order_within_lateness_matches(seed, disorder, users):
    check(generated_show(seed, users=users, rooms=1, span=250, disorder=disorder))


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 10**9), st.floats(0, 5), st.integers(1, 30))
def test_live_snapshots_taken_between_change_no_final_one(seed, disorder, every):
    # A room keeps its live snapshots for the final ones (when nothing of their instant or before
    # came since): timeouts, re-entries and late leaves included, the finals stay the reference's.
    from livemon.ingest.events import decode
    events = generated_show(seed, users=15, rooms=2, span=250, disorder=disorder)
    engine = Engine(EngineConfig(**REPLAY_ADMISSION))
    finals = []
    for i, event in enumerate(events, 1):
        engine.ingest(decode(orjson.dumps(event))[0])
        if i % every == 0:
            finals += engine.advance()
            engine.live_snapshots()
    finals += engine.finish()
    got = {(s["room_id"], s["ts"]): s for s in finals}
    want = timeline(events)
    assert set(got) == set(want)
    for key in sorted(want):
        assert_matches(got[key], want[key], where=str(key))


def test_live_snapshot_equals_final_once_all_events_arrived():
    events = generated_show(7, users=30, rooms=1)
    from livemon.ingest.events import decode
    engine = Engine(EngineConfig())
    for e in events:
        engine.ingest(decode(orjson.dumps(e))[0])
    live = engine.live_snapshots()
    (room_id, snapshot), = live.items()
    finals = {s["ts"]: s for s in engine.finish()}
    assert_matches(snapshot, finals[snapshot["ts"]], where="live vs final")
