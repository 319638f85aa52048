"""A straightforward computation of SPEC §8-11, independent of the engine.

Slow on purpose, in the style of tests/reference.py: it sorts each room's events, builds every
presence interval (with the attributes of the `enter` that started it), splits the room's events
into shows, and evaluates each instant and each show by scanning everything.

- `timeline(events, ...)`: {(room_id, t): {"by", "products", "startup", "cdn_startup", "pinned"}}
  for the instants of tests/reference.py's timeline (§8, §9, §11).
- `summaries(events, ...)`: the show summaries of §10 (all keys but `incidents`).
- `assert_line_matches`, `assert_summary_matches`: engine output against these.

Conventions where the SPEC leaves a choice (each noted where it is made):
- an order counts once per `order_id` of a room: its first `paid` event in arrival order;
- an event's show is found on the room's events in `ts` order (an event at the ts of a show's
  `start` or `end` is in that show; other ties in arrival order);
- a `refunded` event refunds a counted paid order when its `ts` is later than the paid event's.
"""

from __future__ import annotations

import bisect
import math
from collections import defaultdict

from tests.reference import _nearest_rank, accept

DIMENSIONS = ("source", "device", "region", "age_band", "gender", "follower")
UNKNOWN = {d: "unknown" for d in DIMENSIONS}
INTERACTIONS = ("like", "share", "follow")
BY_NAMES = ("viewers", "entries", "avg_watch_seconds", "interaction_rate", "product_ctr", "conversion_rate",
            "orders", "gmv", "uv_value")
PRODUCT_NAMES = ("clickers", "carts", "orders", "gmv", "ctr", "conversion_rate")
STARTUP_NAMES = ("startup_p50_ms", "fast_start_ratio", "slow_start_ratio")


def ratio(a, b):
    return a / b if b else None


def attributes(enter):
    """The attributes a presence takes from the `enter` that started it (SPEC §8)."""
    attrs = {d: enter.get(d) if enter.get(d) is not None else "unknown" for d in DIMENSIONS}
    follower = enter.get("follower")
    attrs["follower"] = "unknown" if follower is None else ("yes" if follower else "no")
    return attrs


def presences(view_events, timeout):
    """Presences (user, start, end, attributes) of one room: tests/reference.py's `presences`,
    keeping the attributes of the starting `enter` (a later enter only refreshes last_seen)."""
    by_user = defaultdict(list)
    for event in sorted(view_events, key=lambda e: e["ts"]):
        by_user[event["user_id"]].append(event)
    intervals = []
    for user, events in by_user.items():
        start = last_seen = attrs = None
        for event in events:
            ts, action = event["ts"], event["action"]
            if start is not None and ts >= last_seen + timeout:
                intervals.append((user, start, last_seen + timeout, attrs))
                start = None
            if start is None:
                if action == "enter":
                    start = last_seen = ts
                    attrs = attributes(event)
            elif action == "leave":
                intervals.append((user, start, ts, attrs))
                start = None
            else:
                last_seen = ts
        if start is not None:
            intervals.append((user, start, last_seen + timeout, attrs))
    return intervals


def _event_order(event):
    """Events in ts order; of one ts, a show `start` first and an `end` last ("in the show" is a
    ts in [start, end]); other ties keep their arrival order (the sort is stable)."""
    action = event.get("action") if event["type"] == "show" else None
    return event["ts"], 0 if action == "start" else 2 if action == "end" else 1


class Room:
    """One room's accepted events, presences, counted paid orders and shows."""

    def __init__(self, room_id, arrival, timeout, show_idle):
        self.id = room_id
        self.events = sorted(arrival, key=_event_order)
        self.stamps = [e["ts"] for e in self.events]
        self.paid_stamps = None
        self._attrs = {}
        self.presences = presences([e for e in arrival if e["type"] == "view"], timeout)
        self.starts = defaultdict(list)  # user -> [(start, attributes)] in start order
        for user, s, _, attrs in sorted(self.presences, key=lambda p: p[1]):
            self.starts[user].append((s, attrs))
        self.paid, seen = [], set()
        for event in arrival:  # arrival order: the first paid status of an order counts (SPEC §2)
            if event["type"] == "order" and event["status"] == "paid" and event["order_id"] not in seen:
                seen.add(event["order_id"])
                self.paid.append(event)
        self.paid.sort(key=lambda e: e["ts"])
        self.paid_stamps = [e["ts"] for e in self.paid]
        self.shows = split_shows(self.events, show_idle)
        self.pins = [(e, show) for show in self.shows for e in show["events"]
                     if e["type"] == "show" and e["action"] in ("pin", "unpin")]

    def attrs_at(self, user, ts):
        """A user's attributes at `ts` (SPEC §8): presences of a user never overlap, so the one
        containing ts, else the most recent one started at or before ts, is the latest start <= ts."""
        starts = self.starts.get(user, [])
        i = bisect.bisect_right([s for s, _ in starts], ts)
        return starts[i - 1][1] if i else UNKNOWN

    def value_at(self, event, dimension):
        key = id(event)
        if key not in self._attrs:
            self._attrs[key] = self.attrs_at(event["user_id"], event["ts"])
        return self._attrs[key][dimension]

    def window(self, lo, t):
        """The events with ts in (lo, t], in ts order."""
        return self.events[bisect.bisect_right(self.stamps, lo):bisect.bisect_right(self.stamps, t)]

    def paid_window(self, lo, t):
        return self.paid[bisect.bisect_right(self.paid_stamps, lo):bisect.bisect_right(self.paid_stamps, t)]


def split_shows(events, show_idle):
    """The room's shows from its events in ts order (SPEC §5, §10).

    A show begins at a `start`, or at the first event when none runs; it ends at an `end`, after
    more than `show_idle` seconds without events (at its last event), or at a `start` while it runs
    (at its last event). Returns dicts: start, end, last, show_id, title, events, closed_by
    ("end", "idle", "start" or None while open), live_end (when the live pin ends)."""
    shows, current = [], None
    for event in events:
        ts = event["ts"]
        if current is not None and current["closed_by"] is None and ts - current["last"] > show_idle:
            current.update(closed_by="idle", end=current["last"], live_end=current["last"] + show_idle)
        is_show = event["type"] == "show"
        if is_show and event["action"] == "start":
            if current is not None and current["closed_by"] is None:
                current.update(closed_by="start", end=current["last"], live_end=ts)
            current = _new_show(ts, event.get("show_id"), event.get("title"))
        elif current is None or current["closed_by"] is not None:
            current = _new_show(ts, None, None)
        if not shows or shows[-1] is not current:
            shows.append(current)
        current["events"].append(event)
        current["last"] = ts
        if is_show and event["action"] == "end":
            for name in ("show_id", "title"):  # each from the start event, else from the end event
                if current[name] is None:
                    current[name] = event.get(name)
            current.update(closed_by="end", end=ts, live_end=ts)
    if current is not None and current["closed_by"] is None:
        current.update(end=current["last"], live_end=current["last"] + show_idle)
    return shows


def _new_show(ts, show_id, title):
    return {"start": ts, "end": None, "last": ts, "show_id": show_id, "title": title, "events": [],
            "closed_by": None, "live_end": None}


def group_rooms(events, lateness, timeout, show_idle):
    rooms = defaultdict(list)
    for event in accept(events, lateness):
        rooms[event["room_id"]].append(event)
    return {room_id: Room(room_id, arrival, timeout, show_idle) for room_id, arrival in rooms.items()}


# ---- §8, §9, §11 at each instant ----

def startup(beacons):
    values = [e["startup_ms"] for e in beacons if e.get("startup_ms") is not None]
    return {
        "startup_p50_ms": _nearest_rank(values, 0.5),
        "fast_start_ratio": ratio(sum(1 for v in values if v <= 1000), len(values)),
        "slow_start_ratio": ratio(sum(1 for v in values if v >= 3000), len(values)),
    }


def is_interaction(event):
    return event["type"] == "danmaku" or (event["type"] == "click" and event["target"] in INTERACTIONS)


def is_product_click(event):
    return event["type"] == "click" and event["target"] == "product"


def breakdowns(room, t, lo):
    """SPEC §8 for one instant: {dimension: {value: {9 names}}}."""
    in_window = room.window(lo, t)
    paid = room.paid_window(lo, t)
    payers = {e["user_id"] for e in paid}
    # The presences that count at t: overlapping the window (those that started or ended in it do).
    overlapping = [p for p in room.presences if p[1] <= t and p[2] > lo]
    by = {}
    for dimension in DIMENSIONS:
        acc = defaultdict(lambda: {"viewers": set(), "entries": 0, "ended": [], "interacting": set(),
                                   "clickers": set(), "orders": {}})
        for user, s, e, attrs in overlapping:
            a = acc[attrs[dimension]]
            if s <= t and e > lo:
                a["viewers"].add(user)
            if lo < s <= t:
                a["entries"] += 1
            if lo < e <= t:
                a["ended"].append(e - s)
        for event in in_window:
            if is_interaction(event):
                acc[room.value_at(event, dimension)]["interacting"].add(event["user_id"])
            elif is_product_click(event):
                acc[room.value_at(event, dimension)]["clickers"].add(event["user_id"])
        for event in paid:
            acc[room.value_at(event, dimension)]["orders"][event["order_id"]] = event["amount"]
        values = {}
        for value, a in acc.items():
            if not (a["viewers"] or a["entries"] or a["ended"] or a["interacting"] or a["clickers"] or a["orders"]):
                continue
            viewers, gmv = len(a["viewers"]), sum(a["orders"].values())
            values[value] = {
                "viewers": viewers,
                "entries": a["entries"],
                "avg_watch_seconds": ratio(sum(a["ended"]), len(a["ended"])),
                "interaction_rate": ratio(len(a["interacting"]), viewers),
                "product_ctr": ratio(len(a["clickers"]), viewers),
                "conversion_rate": ratio(len(a["clickers"] & payers), len(a["clickers"])),
                "orders": len(a["orders"]),
                "gmv": gmv,
                "uv_value": ratio(gmv, viewers),
            }
        by[dimension] = values
    return by


def products(room, t, lo):
    """SPEC §9 for one instant: {product_id: {6 names}}."""
    viewers = len({u for u, s, e, _ in room.presences if s <= t and e > lo})
    acc = defaultdict(lambda: {"clickers": set(), "carts": set(), "orders": {}, "payers": set()})
    for event in room.window(lo, t):
        if event["type"] == "click" and event["target"] in ("product", "cart"):
            acc[event["product_id"]]["clickers" if event["target"] == "product" else "carts"].add(event["user_id"])
    for event in room.paid_window(lo, t):
        a = acc[event["product_id"]]
        a["orders"][event["order_id"]] = event["amount"]
        a["payers"].add(event["user_id"])
    result = {}
    for pid, a in acc.items():
        if a["clickers"] or a["carts"] or a["orders"]:
            result[pid] = {
                "clickers": len(a["clickers"]),
                "carts": len(a["carts"]),
                "orders": len(a["orders"]),
                "gmv": sum(a["orders"].values()),
                "ctr": ratio(len(a["clickers"]), viewers),
                "conversion_rate": ratio(len(a["clickers"] & a["payers"]), len(a["clickers"])),
            }
    return result


def pinned_at(room, t):
    """SPEC §9: the product pinned at t, from a `pin` at or before t to the next pin, an unpin, or
    the show's end (its `end` event, or 10 minutes after its last event; a show cut short by a
    `start` ends its pin at that start)."""
    latest = None
    for event, show in room.pins:
        if event["ts"] <= t:
            latest = (event, show)
    if latest is None:
        return None
    event, show = latest
    if event["action"] != "pin" or t >= show["live_end"]:
        return None
    return event["product_id"]


def timeline(events, step=1.0, window=60.0, lateness=5.0, timeout=90.0, show_idle=600.0, until=None):
    """{(room_id, t): {"by", "products", "startup", "cdn_startup", "pinned"}} at the instants of
    tests/reference.py's timeline (a room with a present viewer or an event in (t-W-180, t])."""
    rooms = group_rooms(events, lateness, timeout, show_idle)
    if not rooms:
        return {}
    horizon = max(e["ts"] for room in rooms.values() for e in room.events)
    if until is not None:
        horizon = max(horizon, until)
    result = {}
    for room_id, room in rooms.items():
        first = room.events[0]["ts"]
        for k in range(math.ceil(first / step), math.floor(horizon / step) + 1):
            t = k * step
            lo = t - window
            online = sum(1 for _, s, e, _ in room.presences if s <= t < e)
            if not online and not room.window(t - window - 180, t):
                continue
            beacons = [e for e in room.window(lo, t) if e["type"] == "health"]
            result[(room_id, t)] = {
                "by": breakdowns(room, t, lo),
                "products": products(room, t, lo),
                "startup": startup(beacons),
                "cdn_startup": {cdn: startup([e for e in beacons if e["cdn"] == cdn])
                                for cdn in sorted({e["cdn"] for e in beacons})},
                "pinned": pinned_at(room, t),
            }
    return result


# ---- §10 show summaries ----

def local_hour(ts, utc_offset):
    return "%02d" % (math.floor((ts + utc_offset) / 3600) % 24)


def summaries(events, step=1.0, lateness=5.0, timeout=90.0, show_idle=600.0, utc_offset=28800.0):
    """Every show summary of SPEC §10 (all keys but `incidents`), by room then start."""
    result = []
    for room_id, room in sorted(group_rooms(events, lateness, timeout, show_idle).items()):
        for show in room.shows:
            result.append(summary(room, show, step, utc_offset))
    return result


def summary(room, show, step, utc_offset):
    start, end = show["start"], show["end"]
    evs = show["events"]  # the events with ts in [start, end] whose show this is

    def in_show(ts):
        return start <= ts <= end

    overlapping = [p for p in room.presences if p[1] <= end and p[2] > start]
    started = [p for p in room.presences if in_show(p[1])]
    ended = [p for p in room.presences if in_show(p[2])]
    paid = [e for e in room.paid if in_show(e["ts"])]  # the show's counted paid orders
    paid_user = {e["user_id"] for e in paid}
    clicks = [e for e in evs if is_product_click(e)]
    carts = [e for e in evs if e["type"] == "click" and e["target"] == "cart"]
    refunded = set()
    for event in paid:
        if any(e["type"] == "order" and e["status"] == "refunded" and e["order_id"] == event["order_id"]
               and e["ts"] > event["ts"] for e in evs):
            refunded.add(event["order_id"])
    beacons = [e for e in evs if e["type"] == "health"]
    stall = sum(e["stall_ms"] for e in beacons)
    play = sum(e["play_ms"] for e in beacons)

    viewers = len({p[0] for p in overlapping})
    entries = len(started)
    gmv = sum(e["amount"] for e in paid)
    clickers = {e["user_id"] for e in clicks}
    instants = range(math.ceil(start / step), math.floor(end / step) + 1)
    totals = {
        "viewers": viewers,
        "entries": entries,
        "peak_online": max((sum(1 for _, s, e, _ in room.presences if s <= k * step < e) for k in instants),
                           default=0),
        "avg_watch_seconds": ratio(sum(e - s for _, s, e, _ in ended), len(ended)),
        "stayed_60s": len({u for u, s, e, _ in overlapping if min(e, end) - s >= 60}),
        "interacting": len({e["user_id"] for e in evs if is_interaction(e)}),
        "clickers": len(clickers),
        "carters": len({e["user_id"] for e in carts}),
        "ordering": len({e["user_id"] for e in evs if e["type"] == "order" and e["status"] in ("created", "paid")}),
        "buyers": len(paid_user),
        "orders": len(paid),
        "gmv": gmv,
        "refunds": len(refunded),
        "refund_rate": ratio(len(refunded), len(paid)),
        "uv_value": ratio(gmv, viewers),
        "gpm": ratio(gmv * 1000, entries),
        "conversion_rate": ratio(len(clickers & paid_user), len(clickers)),
        "stall_ratio": ratio(stall, stall + play),
        "error_rate": ratio(sum(1 for e in beacons if e.get("error")), len(beacons)),
    }

    by = {}
    for dimension in DIMENSIONS:
        acc = defaultdict(lambda: {"viewers": set(), "entries": 0, "ended": [], "clickers": set(),
                                   "buyers": set(), "orders": {}})
        for user, _, _, attrs in overlapping:
            acc[attrs[dimension]]["viewers"].add(user)
        for _, s, e, attrs in started:
            acc[attrs[dimension]]["entries"] += 1
        for _, s, e, attrs in ended:
            acc[attrs[dimension]]["ended"].append(e - s)
        for event in clicks:
            acc[room.value_at(event, dimension)]["clickers"].add(event["user_id"])
        for event in paid:
            a = acc[room.value_at(event, dimension)]
            a["buyers"].add(event["user_id"])
            a["orders"][event["order_id"]] = event["amount"]
        values = {}
        for value, a in acc.items():
            if not (a["viewers"] or a["entries"] or a["clickers"] or a["buyers"] or a["orders"]):
                continue
            n, g = len(a["viewers"]), sum(a["orders"].values())
            values[value] = {
                "viewers": n,
                "entries": a["entries"],
                "avg_watch_seconds": ratio(sum(a["ended"]), len(a["ended"])),
                "clickers": len(a["clickers"]),
                "buyers": len(a["buyers"]),
                "conversion_rate": ratio(len(a["clickers"] & paid_user), len(a["clickers"])),
                "orders": len(a["orders"]),
                "gmv": g,
                "uv_value": ratio(g, n),
            }
        by[dimension] = values

    # The catalogue: the show's latest `product` event of each product (ts order, ties: arrival).
    catalogue = {}
    for event in evs:
        if event["type"] == "show" and event["action"] == "product":
            catalogue[event["product_id"]] = event
    category = {pid: (e.get("category") or "unknown") for pid, e in catalogue.items()}

    acc = defaultdict(lambda: {"clickers": set(), "carters": set(), "buyers": set(), "orders": {}, "refunds": set()})
    for event in clicks:
        acc[event["product_id"]]["clickers"].add(event["user_id"])
    for event in carts:
        acc[event["product_id"]]["carters"].add(event["user_id"])
    for event in paid:
        a = acc[event["product_id"]]
        a["buyers"].add(event["user_id"])
        a["orders"][event["order_id"]] = event["amount"]
        if event["order_id"] in refunded:
            a["refunds"].add(event["order_id"])
    product_summary = {}
    for pid, a in acc.items():
        if not (a["clickers"] or a["carters"] or a["buyers"] or a["orders"] or a["refunds"]):
            continue
        product_summary[pid] = {
            "title": catalogue[pid].get("title") if pid in catalogue else None,
            "category": category.get(pid, "unknown"),
            "clickers": len(a["clickers"]),
            "carters": len(a["carters"]),
            "buyers": len(a["buyers"]),
            "orders": len(a["orders"]),
            "gmv": sum(a["orders"].values()),
            "refunds": len(a["refunds"]),
            "refund_rate": ratio(len(a["refunds"]), len(a["orders"])),
            "conversion_rate": ratio(len(a["clickers"] & a["buyers"]), len(a["clickers"])),
        }
    top = sorted((p["gmv"] for p in product_summary.values()), reverse=True)[:10]

    cats = defaultdict(lambda: {"clickers": set(), "buyers": set(), "orders": {}})
    for event in clicks:
        cats[category.get(event["product_id"], "unknown")]["clickers"].add(event["user_id"])
    age_category = defaultdict(lambda: defaultdict(float))
    for event in paid:
        c = category.get(event["product_id"], "unknown")
        cats[c]["buyers"].add(event["user_id"])
        cats[c]["orders"][event["order_id"]] = event["amount"]
        age_category[room.value_at(event, "age_band")][c] += event["amount"]
    categories = {
        c: {"clickers": len(a["clickers"]), "buyers": len(a["buyers"]), "orders": len(a["orders"]),
            "gmv": sum(a["orders"].values()),
            "conversion_rate": ratio(len(a["clickers"] & a["buyers"]), len(a["clickers"]))}
        for c, a in cats.items() if a["clickers"] or a["buyers"] or a["orders"]}

    # Pinned stretches: every pin begins one; an unpin with nothing pinned does nothing.
    stretches, pinned = [], None
    for event in evs:
        if event["type"] != "show":
            continue
        if event["action"] == "pin":
            if pinned is not None:
                pinned[2] = event["ts"]
            pinned = [event["product_id"], event["ts"], None]
            stretches.append(pinned)
        elif event["action"] == "unpin" and pinned is not None:
            pinned[2] = event["ts"]
            pinned = None
    segments = []
    for pid, s, e in stretches:
        e = end if e is None else e
        inside = [ev for ev in evs if s <= ev["ts"] < e]
        own = [ev for ev in paid if s <= ev["ts"] < e]
        segments.append({
            "product_id": pid, "start": s, "end": e,
            "entries": sum(1 for _, ps, _, _ in room.presences if s <= ps < e),
            "clickers": len({ev["user_id"] for ev in inside if is_product_click(ev) and ev["product_id"] == pid}),
            "orders": sum(1 for ev in own if ev["product_id"] == pid),
            "gmv": sum(ev["amount"] for ev in own if ev["product_id"] == pid),
            "gmv_all": sum(ev["amount"] for ev in own),
        })

    promos = []
    for i, event in enumerate(evs):
        if event["type"] != "show" or event["action"] != "promo_start":
            continue
        s, pid = event["ts"], event.get("product_id")
        e = next((ev["ts"] for ev in evs[i + 1:] if ev["type"] == "show" and ev["action"] == "promo_end"
                  and ev["promo_id"] == event["promo_id"]), end)
        promo_clickers = {ev["user_id"] for ev in evs if s <= ev["ts"] < e and is_product_click(ev)
                          and (pid is None or ev["product_id"] == pid)}
        own = [ev for ev in paid if s <= ev["ts"] < e and (pid is None or ev["product_id"] == pid)]
        promo_buyers = {ev["user_id"] for ev in own}
        promos.append({
            "promo_id": event["promo_id"], "promo_type": event["promo_type"], "product_id": pid,
            "start": s, "end": e,
            "clickers": len(promo_clickers), "buyers": len(promo_buyers), "orders": len(own),
            "gmv": sum(ev["amount"] for ev in own),
            "conversion_rate": ratio(len(promo_clickers & promo_buyers), len(promo_clickers)),
        })

    spend = defaultdict(float)
    for event in evs:
        if event["type"] == "show" and event["action"] == "spend":
            spend[event["channel"]] += event["amount"]
    spend_total = sum(spend.values())
    source_gmv = defaultdict(float)
    for event in paid:
        source_gmv[room.value_at(event, "source")] += event["amount"]

    hours = defaultdict(lambda: {"entries": 0, "clickers": set(), "buyers": set(), "orders": {}})
    for _, s, _, _ in started:
        hours[local_hour(s, utc_offset)]["entries"] += 1
    for event in clicks:
        hours[local_hour(event["ts"], utc_offset)]["clickers"].add(event["user_id"])
    for event in paid:
        h = hours[local_hour(event["ts"], utc_offset)]
        h["buyers"].add(event["user_id"])
        h["orders"][event["order_id"]] = event["amount"]

    return {
        "room_id": room.id, "show_id": show["show_id"], "start": start, "end": end, "title": show["title"],
        "totals": totals,
        "funnel": [totals[k] for k in ("viewers", "stayed_60s", "clickers", "ordering", "buyers")],
        "by": by,
        "products": product_summary,
        "top10_share": ratio(sum(top), gmv),
        "categories": categories,
        "age_category": {band: dict(per) for band, per in age_category.items()},
        "segments": segments,
        "promos": promos,
        "spend": dict(spend),
        "spend_total": spend_total,
        "roi": ratio(gmv, spend_total),
        "roi_by_channel": {ch: ratio(source_gmv.get(ch, 0.0), amount) for ch, amount in spend.items()},
        "hours": {h: {"entries": a["entries"], "clickers": len(a["clickers"]), "buyers": len(a["buyers"]),
                      "orders": len(a["orders"]), "gmv": sum(a["orders"].values())}
                  for h, a in hours.items() if a["entries"] or a["clickers"] or a["buyers"] or a["orders"]},
    }


# ---- comparison ----

def _close(got, want, relative=1e-9):
    return math.isclose(got, want, rel_tol=relative, abs_tol=1e-9)


def assert_same(got, want, where, percentile=("startup_p50_ms",)):
    """Deep equality; numbers to 1e-9 (names in `percentile` to 2%, a sketch may be used)."""
    if got == want:  # the common case, at C speed (numbers equal are within any tolerance)
        return
    if isinstance(want, dict):
        assert isinstance(got, dict), f"{where}: engine {got!r} != reference {want!r}"
        assert set(got) == set(want), (f"{where}: keys: engine only {sorted(set(got) - set(want))}, "
                                       f"reference only {sorted(set(want) - set(got))}")
        for key in want:
            assert_same(got[key], want[key], f"{where}.{key}", percentile)
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), f"{where}: engine {got!r} != reference {want!r}"
        for i, (g, w) in enumerate(zip(got, want)):
            assert_same(g, w, f"{where}[{i}]", percentile)
    elif want is None or got is None or isinstance(want, str) or isinstance(got, str):
        assert got == want, f"{where}: engine {got!r} != reference {want!r}"
    else:
        name = where.rsplit(".", 1)[-1]
        relative = 0.02 if name in percentile else 1e-9
        assert _close(got, want, relative), f"{where}: engine {got!r} != reference {want!r}"


def assert_line_matches(line, expected, where=""):
    """A replay line's §8, §9, §11 figures and show.pinned against `timeline`'s entry."""
    assert set(line.get("by", {})) == set(DIMENSIONS), f"{where}: by dimensions {sorted(line.get('by', {}))}"
    assert_same(line["by"], expected["by"], f"{where} by")
    assert_same(line.get("products"), expected["products"], f"{where} products")
    assert_same({k: line["metrics"].get(k, "missing") for k in STARTUP_NAMES}, expected["startup"],
                f"{where} metrics")
    assert set(line["cdn"]) == set(expected["cdn_startup"]), f"{where}: cdns {sorted(line['cdn'])}"
    for cdn, want in expected["cdn_startup"].items():
        assert_same({k: line["cdn"][cdn].get(k, "missing") for k in STARTUP_NAMES}, want, f"{where} cdn {cdn}")
    show = line.get("show") or {}
    assert show.get("pinned") == expected["pinned"], \
        f"{where}: show.pinned engine {show.get('pinned', 'missing')!r} != reference {expected['pinned']!r}"


SUMMARY_KEYS = ("room_id", "show_id", "start", "end", "title", "totals", "funnel", "by", "products",
                "top10_share", "categories", "age_category", "segments", "promos", "spend", "spend_total",
                "roi", "roi_by_channel", "hours")


def assert_summaries_match(got, want):
    """Show summaries (engine, any order; `incidents` and extra top-level keys ignored) against
    `summaries`' list, matched by (room_id, start)."""
    got_by_key = {(s.get("room_id"), s.get("start")): s for s in got}
    want_by_key = {(s["room_id"], s["start"]): s for s in want}
    assert len(got_by_key) == len(got), f"two summaries of one show: {[(s.get('room_id'), s.get('start')) for s in got]}"
    assert set(got_by_key) == set(want_by_key), (
        f"shows: engine only {sorted(set(got_by_key) - set(want_by_key))}, "
        f"reference only {sorted(set(want_by_key) - set(got_by_key))}")
    for key, w in sorted(want_by_key.items()):
        g = got_by_key[key]
        for name in SUMMARY_KEYS:
            assert name in g, f"summary {key}: no {name!r}"
            assert_same(g[name], w[name], f"summary {key} {name}")
