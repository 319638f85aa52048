"""The control room's chart history: fixed rings of doubles per room that give the page the same JSON
as the earlier deque of Python points, and hold the same memory after 100 points as after 2000."""

import collections
import gc
import math
import random
import tracemalloc

import orjson

from livemon.web.hub import CHART_METRICS, HISTORY_SECONDS, ControlRoomHub

try:
    from livemon.web.hub import CDN_CHART_METRICS
except ImportError:   # the earlier hub kept whole CDN readings
    CDN_CHART_METRICS = ("stall_ratio", "latency_p95_ms")

ROOM = "room-hist"
START = 1_700_000_000


class DequeRoom:
    """The earlier history, verbatim: a deque of `[ts, *metrics]` lists and of `(ts, cdn)` pairs."""

    def __init__(self):
        self.latest = None
        self.history = collections.deque(maxlen=HISTORY_SECONDS)
        self.cdn_history = collections.deque(maxlen=HISTORY_SECONDS)

    def add(self, snap):
        ts = snap["ts"]
        if self.latest is not None and ts < self.latest["ts"]:
            return
        metrics = snap.get("metrics") or {}
        point = [ts] + [metrics.get(name) for name in CHART_METRICS]
        if self.history and self.history[-1][0] == ts:
            self.history[-1] = point
            self.cdn_history[-1] = (ts, snap.get("cdn") or {})
        else:
            self.history.append(point)
            self.cdn_history.append((ts, snap.get("cdn") or {}))
        self.latest = snap

    def view(self, since=None):
        """What the page reads of the earlier `room_view` (the CDN readings cut to the charted fields)."""
        points = [p for p in self.history if since is None or p[0] > since]
        cdns = [(ts, c) for ts, c in self.cdn_history if since is None or ts > since]
        return json({"columns": ["ts", *CHART_METRICS], "points": points,
                     "cdn_points": [{"ts": ts, "cdn": {name: {f: r.get(f) for f in CDN_CHART_METRICS}
                                                       for name, r in c.items()}} for ts, c in cdns]})

    def spark(self):
        return json([p[1] for p in list(self.history)[-120:]])


def json(value):
    """The value as the page gets it (NaN and None both become null)."""
    return orjson.loads(orjson.dumps(value))


def page_view(hub, since=None):
    view = hub.room_view(ROOM, since)
    return json({k: view[k] for k in ("columns", "points", "cdn_points")})


def snapshots(n, seed=3, late=450):
    """`n` snapshots with ints, floats, None and NaN values, repeated seconds, a CDN that comes late,
    one that drops out for a while, a CDN reading with nulls, and an out-of-order older one."""
    rng = random.Random(seed)
    ts = START
    for i in range(n):
        if i and rng.random() < 0.1:
            pass                      # the same second again: overwrites the last point
        elif i and rng.random() < 0.03:
            ts += 2                   # a second skipped
        elif i:
            ts += 1
        if i and rng.random() < 0.02:
            yield {"ts": ts - 3, "room_id": ROOM, "metrics": {"online": -1}, "cdn": {}}   # older: ignored
        metrics = {name: rng.uniform(0, 100) for name in CHART_METRICS}
        metrics["online"] = rng.randint(0, 5000)
        metrics["uv_value"] = 1.5     # not charted
        for name in rng.sample(CHART_METRICS, 3):
            metrics[name] = None
        if rng.random() < 0.05:
            metrics["gmv"] = math.nan
        if rng.random() < 0.05:
            del metrics["stall_ratio"]
        cdn = {}
        if not 300 <= i < 340:
            cdn["cdn-a"] = {"viewers": 10, "stall_ratio": rng.uniform(0, 0.02), "latency_p95_ms": rng.uniform(1000, 3000),
                            "error_rate": 0.001}
        cdn["cdn-b"] = {"viewers": 4, "stall_ratio": None if rng.random() < 0.2 else rng.uniform(0, 0.3),
                        "latency_p95_ms": rng.uniform(1000, 9000), "error_rate": 0.0}
        if i >= late:                 # appears late
            cdn["cdn-c"] = {"viewers": 2, "stall_ratio": None, "latency_p95_ms": None, "error_rate": None}
        yield {"ts": ts, "room_id": ROOM, "metrics": metrics, "cdn": cdn, "show": None}


def test_page_json_matches_the_deque_history_through_wrap_around():
    hub, old = ControlRoomHub(clock=lambda: START), DequeRoom()
    fed = 0
    for snap in snapshots(1500):
        hub.feed_step({"worker": "w1", "now": snap["ts"], "live": [snap]})
        old.add(snap)
        fed += 1
        if fed in (1, 2, 17, 599, 600, 601, 777, 1200, 1500) or fed % 97 == 0:
            new_view, old_view = page_view(hub), old.view()
            assert new_view == old_view, f"after {fed} snapshots"
            assert json(hub.grid()["rooms"][0]["spark"]) == old.spark()
            points = new_view["points"]
            # The stream's incremental reads: only points newer than `since`.
            for since in {points[0][0] - 1, points[0][0], points[len(points) // 2][0], points[-1][0],
                          points[-1][0] - 0.5, points[-1][0] + 5}:
                assert page_view(hub, since) == old.view(since), f"since {since} after {fed} snapshots"
    view = page_view(hub)
    assert len(view["points"]) == HISTORY_SECONDS                    # wrapped: the last 600 points
    assert any(p[CHART_METRICS.index("gmv") + 1] is None for p in view["points"])
    assert {"cdn-a", "cdn-b", "cdn-c"} <= set().union(*(c["cdn"] for c in view["cdn_points"]))


def test_same_second_overwrites_and_a_cdn_that_comes_later():
    hub = ControlRoomHub(clock=lambda: START)
    feed = lambda snap: hub.feed_step({"worker": "w1", "now": snap["ts"], "live": [snap]})   # noqa: E731
    feed({"ts": START, "room_id": ROOM, "metrics": {"online": 5, "gmv": None}, "cdn": {"cdn-a": {"stall_ratio": 0.5}}})
    feed({"ts": START, "room_id": ROOM, "metrics": {"online": 7}, "cdn": {}})                   # overwrites
    feed({"ts": START + 1, "room_id": ROOM, "metrics": {"online": 8},
          "cdn": {"cdn-z": {"stall_ratio": 0.1, "latency_p95_ms": 900, "viewers": 3}}})
    feed({"ts": START - 1, "room_id": ROOM, "metrics": {"online": 99}, "cdn": {}})              # older: ignored
    view = page_view(hub)
    online = CHART_METRICS.index("online") + 1
    assert [(p[0], p[online]) for p in view["points"]] == [(START, 7), (START + 1, 8)]
    assert all(v is None for p in view["points"] for i, v in enumerate(p) if i not in (0, online))
    assert view["cdn_points"] == [{"ts": START, "cdn": {}},
                                  {"ts": START + 1, "cdn": {"cdn-z": {"stall_ratio": 0.1, "latency_p95_ms": 900}}}]
    assert page_view(hub, START)["points"] == [view["points"][1]]
    assert page_view(hub, START + 1) == {"columns": view["columns"], "points": [], "cdn_points": []}


def test_a_room_with_more_cdns_than_the_cap_keeps_a_bounded_history():
    hub = ControlRoomHub(clock=lambda: START)
    feed = lambda i, cdns: hub.feed_step({"live": [{"ts": START + i, "room_id": ROOM, "metrics": {"online": i},  # noqa: E731
                                                    "cdn": {c: {"stall_ratio": 0.01} for c in cdns}}]})
    for i in range(10):
        feed(i, [f"cdn-{k}" for k in range(10)])   # ten at once: the first eight are kept
    for i in range(10, 710):
        feed(i, ["cdn-new"])                       # kept once the eight have left the window (point 609)
    room = hub.rooms[ROOM]
    assert len(room.cdns) == 8 and "cdn-new" in room.cdns
    view = page_view(hub)
    assert len(view["points"]) == HISTORY_SECONDS and view["points"][0][0] == START + 110
    assert [c["ts"] for c in view["cdn_points"] if c["cdn"]] == list(range(START + 609, START + 710))
    assert view["cdn_points"][-1]["cdn"] == {"cdn-new": {"stall_ratio": 0.01, "latency_p95_ms": None}}


def retained_bytes(n: int) -> int:
    """Bytes a hub holds after feeding one room `n` one-second snapshots (the snapshots themselves
    are built inside the loop and dropped, except the latest, the same size whatever `n`)."""
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        hub = ControlRoomHub(clock=lambda: START)
        for snap in snapshots(n, seed=5, late=0):
            hub.feed_step({"worker": "w1", "now": snap["ts"], "live": [snap]})
        page_view(hub)
        gc.collect()
        held = tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()
    del hub
    return held


def test_a_rooms_history_memory_does_not_grow():
    retained_bytes(50)                             # warm up interned names, caches
    short, long = retained_bytes(100), retained_bytes(2000)
    assert abs(long - short) < 10_000, f"100 points hold {short} B, 2000 points hold {long} B"
    # Preallocated: about (len(CHART_METRICS) + 1) * 600 doubles, plus a few small rings per CDN.
    assert short < 200_000, short
