"""A straightforward computation of every SPEC §5 definition, independent of the engine.

Slow on purpose: it sorts each room's events, builds every presence interval, and evaluates each
instant by scanning everything. Tests compare the engine (and `livemon replay`) against it.
"""

from __future__ import annotations

import math
from collections import defaultdict

from livemon import catalogue

HORIZONS = (30, 60, 180)


def _nearest_rank(values, q):
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q * len(ordered))) - 1]


def accept(events, lateness=5.0):
    """Events that are not late, in arrival order (the watermark rule of SPEC §3).

    A room's watermark is its newest ts less the lateness; once the room has had no newer event
    for longer than the lateness (measured on the newest ts of any room), it moves on with that.
    """
    newest_of_room, seen_at, clock, accepted = {}, {}, None, []
    for event in events:
        room, ts = event["room_id"], event["ts"]
        reference = ts if clock is None else max(clock, ts)
        if room in newest_of_room:
            newest = newest_of_room[room] + max(0.0, reference - seen_at[room] - lateness)
            if ts < newest - lateness:
                continue
        accepted.append(event)
        if ts > newest_of_room.get(room, -math.inf):
            newest_of_room[room], seen_at[room] = ts, reference
        clock = reference
    return accepted


def presences(view_events, timeout):
    """Presence intervals (user, start, end) from one room's view events."""
    by_user = defaultdict(list)
    for event in sorted(view_events, key=lambda e: e["ts"]):
        by_user[event["user_id"]].append(event)
    intervals = []
    for user, events in by_user.items():
        start = last_seen = None
        for event in events:
            ts, action = event["ts"], event["action"]
            if start is not None and ts >= last_seen + timeout:
                intervals.append((user, start, last_seen + timeout))
                start = None
            if start is None:
                if action == "enter":
                    start = last_seen = ts
            elif action == "leave":
                intervals.append((user, start, ts))
                start = None
            else:
                last_seen = ts
        if start is not None:
            intervals.append((user, start, last_seen + timeout))
    return intervals


def timeline(events, step=1.0, window=60.0, lateness=5.0, timeout=90.0, until=None):
    """{(room_id, t): metrics} for every instant up to the newest ts (or `until`)."""
    accepted = accept(events, lateness)
    if not accepted:
        return {}
    horizon = max(e["ts"] for e in accepted)
    if until is not None:
        horizon = max(horizon, until)
    rooms = defaultdict(list)
    for event in accepted:
        rooms[event["room_id"]].append(event)
    result = {}
    for room_id, room_events in rooms.items():
        paid, seen_orders = [], set()
        for event in room_events:  # arrival order: the first paid status counts
            if event["type"] == "order" and event["status"] == "paid" and event["order_id"] not in seen_orders:
                seen_orders.add(event["order_id"])
                paid.append(event)
        intervals = presences([e for e in room_events if e["type"] == "view"], timeout)
        first = min(e["ts"] for e in room_events)
        for k in range(math.ceil(first / step), math.floor(horizon / step) + 1):
            t = k * step
            lo = t - window
            in_window = [e for e in room_events if lo < e["ts"] <= t]
            online = sum(1 for _, s, e in intervals if s <= t < e)
            if not online and not any(t - window - 180 < e["ts"] <= t for e in room_events):
                continue
            viewers = len({u for u, s, e in intervals if s <= t and e > lo})
            ended = [(s, e) for _, s, e in intervals if lo < e <= t]
            entries = sum(1 for _, s, e in intervals if lo < s <= t)
            m = {"online": online, "entries": entries, "leaves": len(ended), "viewers": viewers}
            for h in HORIZONS:
                cohort = [(s, e) for _, s, e in intervals if lo - h < s <= t - h]
                m[f"retention_{h}s"] = (sum(1 for s, e in cohort if e - s >= h) / len(cohort)) if cohort else None
            m["avg_watch_seconds"] = (sum(e - s for s, e in ended) / len(ended)) if ended else None

            def ratio(a, b):
                return a / b if b else None

            interacting = {e["user_id"] for e in in_window if e["type"] == "danmaku" or (
                e["type"] == "click" and e["target"] in ("like", "share", "follow"))}
            clickers = {e["user_id"] for e in in_window if e["type"] == "click" and e["target"] == "product"}
            window_paid = [e for e in paid if lo < e["ts"] <= t]
            payers = {e["user_id"] for e in window_paid}
            gmv = sum(e["amount"] for e in window_paid)
            beacons = [e for e in in_window if e["type"] == "health"]
            stall = sum(e["stall_ms"] for e in beacons)
            play = sum(e["play_ms"] for e in beacons)
            latencies = [e["latency_ms"] for e in beacons if e.get("latency_ms") is not None]
            m.update(
                interaction_rate=ratio(len(interacting), viewers),
                danmaku_per_min=sum(1 for e in in_window if e["type"] == "danmaku") * 60 / window,
                product_ctr=ratio(len(clickers), viewers),
                conversion_rate=ratio(len(clickers & payers), len(clickers)),
                orders_per_min=len(window_paid) * 60 / window,
                gmv=gmv,
                gmv_total=sum(e["amount"] for e in paid if e["ts"] <= t),
                orders_total=sum(1 for e in paid if e["ts"] <= t),
                uv_value=ratio(gmv, viewers),
                gpm=ratio(gmv * 1000, entries),
                stall_ratio=ratio(stall, stall + play),
                stalls_per_min=ratio(sum(e["stall_count"] for e in beacons), (stall + play) / 60000),
                latency_p50_ms=_nearest_rank(latencies, 0.5),
                latency_p95_ms=_nearest_rank(latencies, 0.95),
                error_rate=ratio(sum(1 for e in beacons if e.get("error")), len(beacons)),
                **startup(beacons),  # SPEC §11
                startups=sum(1 for e in beacons if e.get("startup_ms") is not None),
                **recent(beacons, t, window, step),
            )
            cdns = {}
            for cdn in sorted({e["cdn"] for e in beacons}):
                own = [e for e in beacons if e["cdn"] == cdn]
                s_ms, p_ms = sum(e["stall_ms"] for e in own), sum(e["play_ms"] for e in own)
                cdns[cdn] = {
                    "viewers": len({e["user_id"] for e in own}),
                    "stall_ratio": ratio(s_ms, s_ms + p_ms),
                    "latency_p95_ms": _nearest_rank(
                        [e["latency_ms"] for e in own if e.get("latency_ms") is not None], 0.95),
                    "error_rate": ratio(sum(1 for e in own if e.get("error")), len(own)),
                    **startup(own),
                    "startups": sum(1 for e in own if e.get("startup_ms") is not None),
                    **recent(own, t, window, step),
                }
            result[(room_id, t)] = {"metrics": m, "cdn": cdns}
    return result


def startup(beacons):
    from tests.reference_sales import startup as figures  # (it imports this module)
    return figures(beacons)


def recent(beacons, t, window, step, seconds=10):
    """The `*_10s` figures: stall, errors, p95 latency and 秒开率 of the beacons in the last 10 s
    of the window (whole steps, at least one, at most the window)."""
    lo = t - max(1, min(round(window / step), round(seconds / step))) * step
    own = [e for e in beacons if e["ts"] > lo]
    stall, play = sum(e["stall_ms"] for e in own), sum(e["play_ms"] for e in own)
    starts = [e["startup_ms"] for e in own if e.get("startup_ms") is not None]
    return {
        "stall_ratio_10s": (stall / (stall + play)) if stall + play else None,
        "latency_p95_ms_10s": _nearest_rank([e["latency_ms"] for e in own if e.get("latency_ms") is not None], 0.95),
        "error_rate_10s": (sum(1 for e in own if e.get("error")) / len(own)) if own else None,
        "fast_start_ratio_10s": (sum(1 for v in starts if v <= 1000) / len(starts)) if starts else None,
        "startups_10s": len(starts),
    }


def assert_matches(snapshot, expected, where=""):
    """Exact for counts and sums (to float rounding), 2% for percentiles (a sketch may be used)."""
    # Every metric of the catalogue has its reference computation: a new one without fails here.
    assert set(expected["metrics"]) == set(catalogue.ROOM_NAMES), set(catalogue.ROOM_NAMES) ^ set(expected["metrics"])
    for name, want in expected["cdn"].items():
        assert set(want) == set(catalogue.CDN_NAMES), (name, set(catalogue.CDN_NAMES) ^ set(want))
    for scope, got_metrics, want_metrics in [("room", snapshot["metrics"], expected["metrics"])] + [
            (f"cdn {name}", snapshot["cdn"].get(name, {}), want) for name, want in expected["cdn"].items()]:
        for name, want in want_metrics.items():
            got = got_metrics.get(name, "missing")
            label = f"{where} {scope} {name}: engine {got!r} != reference {want!r}"
            if want is None or got is None:
                assert got is None and want is None, label
            elif "latency" in name or name == "startup_p50_ms":
                assert abs(got - want) <= 0.02 * abs(want) + 1e-9, label
            else:
                assert math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-9), label
    assert set(snapshot["cdn"]) == set(expected["cdn"]), f"{where} CDNs {set(snapshot['cdn'])} != {set(expected['cdn'])}"
