"""Hand-computed cases for every SPEC §8-11 definition and its edges.

Each case lists its events and, in comments, the arithmetic behind each expected number. Times are
seconds after T0 (an hour boundary: 22:00:00 UTC, 06:00 at +08:00); the window is (t-W, t] with
W = 60 s, presence timeout 90 s; a presence is the half-open interval [start, end).

The engine is driven through `livemon replay`'s API only (`replay_lines` with its `shows=` list).
Every case also runs against tests/reference_sales.py (the `reference` parameter), which holds the
reference to the same hand-worked numbers.
"""

from collections import defaultdict

import orjson
import pytest

from livemon.engine import EngineConfig
from livemon.replay import CHUNK, REPLAY_ADMISSION, replay_lines
from tests import reference_sales

T0 = 1_699_999_200  # 2023-11-14 22:00:00 UTC
ROOM = "room-1"
NONE_BY = {d: {} for d in reference_sales.DIMENSIONS}


# ---- event builders (ts in seconds after T0), as JSON objects ----

def enter(user, at, room=ROOM, **attrs):
    return {"type": "view", "room_id": room, "user_id": user, "ts": T0 + at, "action": "enter", **attrs}


def heartbeat(user, at, room=ROOM):
    return {"type": "view", "room_id": room, "user_id": user, "ts": T0 + at, "action": "heartbeat"}


def leave(user, at, room=ROOM):
    return {"type": "view", "room_id": room, "user_id": user, "ts": T0 + at, "action": "leave"}


def chat(user, at, room=ROOM):
    return {"type": "danmaku", "room_id": room, "user_id": user, "ts": T0 + at, "text": "666"}


def click(user, at, target="product", product="sku-1", room=ROOM):
    event = {"type": "click", "room_id": room, "user_id": user, "ts": T0 + at, "target": target}
    if target in ("product", "cart"):
        event["product_id"] = product
    return event


def order(user, at, order_id, amount, product="sku-1", status="paid", room=ROOM):
    return {"type": "order", "room_id": room, "user_id": user, "ts": T0 + at, "order_id": order_id,
            "product_id": product, "amount": amount, "status": status}


def beacon(user, at, cdn, startup_ms=None, room=ROOM):
    event = {"type": "health", "room_id": room, "user_id": user, "ts": T0 + at, "cdn": cdn, "play_ms": 1000,
             "stall_ms": 0, "stall_count": 0}
    if startup_ms is not None:
        event["startup_ms"] = startup_ms
    return event


def show(at, action, room=ROOM, **fields):
    return {"type": "show", "room_id": room, "ts": T0 + at, "action": action, **fields}


# ---- running the engine (or the reference) ----

class Result:
    def __init__(self, lines, shows):
        self.lines = {(line["room_id"], round(line["ts"] - T0, 6)): line for line in lines}
        self.shows = defaultdict(list)
        for summary in shows:
            self.shows[summary["room_id"]].append(summary)
        for summaries in self.shows.values():
            summaries.sort(key=lambda s: s["start"])

    def line(self, t, room=ROOM):
        assert (room, t) in self.lines, f"no line of {room} at t={t}"
        return self.lines[(room, t)]

    def summary(self, index=0, room=ROOM):
        assert len(self.shows[room]) > index, f"{room} has {len(self.shows[room])} show summaries"
        return self.shows[room][index]


def engine_config(utc_offset=28800.0):
    """The replay config with a UTC offset in seconds east of UTC (the contract), or as "+HH:MM"
    when the engine's config takes the offset in that form."""
    try:
        return EngineConfig(**REPLAY_ADMISSION, utc_offset=utc_offset)
    except (TypeError, ValueError):
        minutes = round(abs(utc_offset) / 60)
        text = f"{'-' if utc_offset < 0 else '+'}{minutes // 60:02d}:{minutes % 60:02d}"
        return EngineConfig(**REPLAY_ADMISSION, utc_offset=text)


def _engine(events, until, utc_offset, advance_after=None):
    data = [orjson.dumps(e) for e in events]
    if advance_after is not None:
        # Invalid lines (rejected, counted) up to replay's CHUNK: replay advances the engine right
        # after the first `advance_after` events, as a worker does all the time.
        data[advance_after:advance_after] = [b"not json"] * (-advance_after % CHUNK)
    shows = []
    config = engine_config(utc_offset)
    lines = list(replay_lines(data, config, None if until is None else T0 + until, shows=shows))
    return Result(lines, shows)


def _reference(events, until, utc_offset, advance_after=None):
    timeline = reference_sales.timeline(events, until=None if until is None else T0 + until)
    lines = [{"ts": t, "room_id": room, "by": want["by"], "products": want["products"],
              "metrics": dict(want["startup"]), "cdn": {c: dict(v) for c, v in want["cdn_startup"].items()},
              "show": {"pinned": want["pinned"]}} for (room, t), want in timeline.items()]
    return Result(lines, reference_sales.summaries(events, utc_offset=utc_offset))


@pytest.fixture(params=["engine", "reference"])
def run(request):
    """run(events in arrival order, until=None, utc_offset=28800) -> Result."""
    compute = _engine if request.param == "engine" else _reference

    def run_(events, until=None, utc_offset=28800.0, advance_after=None):
        return compute(events, until, utc_offset, advance_after)
    return run_


def same(got, want, where="value"):
    reference_sales.assert_same(got, want, where)


def row(viewers, entries, avg, interaction, ctr, conversion, orders, gmv, uv):
    return {"viewers": viewers, "entries": entries, "avg_watch_seconds": avg, "interaction_rate": interaction,
            "product_ctr": ctr, "conversion_rate": conversion, "orders": orders, "gmv": gmv, "uv_value": uv}


def show_row(viewers, entries, avg, clickers, buyers, conversion, orders, gmv, uv):
    return {"viewers": viewers, "entries": entries, "avg_watch_seconds": avg, "clickers": clickers,
            "buyers": buyers, "conversion_rate": conversion, "orders": orders, "gmv": gmv, "uv_value": uv}


def product(clickers, carts, orders, gmv, ctr, conversion):
    return {"clickers": clickers, "carts": carts, "orders": orders, "gmv": gmv, "ctr": ctr,
            "conversion_rate": conversion}


# ---- §8 attribution ----

U1_ATTRS = dict(source="paid", device="mobile", region="Zhejiang", age_band="24-30", gender="female",
                follower=True)


def attribution_events():
    return [
        enter("u1", 10, **U1_ATTRS),
        click("u1", 20),  # inside u1's presence [10, 30): paid, mobile, ...
        click("u2", 25),  # u2 never entered: every attribute "unknown"
        chat("u2", 26),
        leave("u1", 30),
        click("u1", 40, target="like"),  # after leaving: the most recent presence's attributes
        order("u1", 45, "o1", 100.0),
    ]


def test_attribution_inside_after_leaving_and_never_entered(run):
    result = run(attribution_events(), until=110)
    by = result.line(50)["by"]  # window (-10, 50]
    # The attributed value: u1's presence [10, 30) overlaps, started, ended (20 s); like at 40
    # (interaction 1/1); product click at 20 (ctr 1/1); u1 paid o1 at 45: conversion 1/1,
    # orders 1, gmv 100, uv_value 100/1.
    attributed = row(1, 1, 20.0, 1.0, 1.0, 1.0, 1, 100.0, 100.0)
    # "unknown": u2's danmaku and click, no viewer: the rates over 0 viewers are null; conversion:
    # clickers {u2}, payers in the window {u1}: 0/1.
    unknown = row(0, 0, None, None, None, 0.0, 0, 0, None)
    same(by, {"source": {"paid": attributed, "unknown": unknown},
              "device": {"mobile": attributed, "unknown": unknown},
              "region": {"Zhejiang": attributed, "unknown": unknown},
              "age_band": {"24-30": attributed, "unknown": unknown},
              "gender": {"female": attributed, "unknown": unknown},
              "follower": {"yes": attributed, "unknown": unknown}}, "by at 50")
    # Window (35, 95]: no viewer; the like (40) and the order (45) are still attributed to u1's
    # presence that ended at 30; u2's events (25, 26) left the window: "unknown" is not listed.
    by = result.line(95)["by"]
    same(by["source"], {"paid": row(0, 0, None, None, None, None, 1, 100.0, None)}, "by.source at 95")
    same(by["follower"], {"yes": row(0, 0, None, None, None, None, 1, 100.0, None)}, "by.follower at 95")
    # Window (46, 106]: nothing left to list in any dimension.
    same(result.line(106)["by"], NONE_BY, "by at 106")


def test_reenter_with_other_attributes_and_second_enter_during_a_presence(run):
    result = run([
        enter("u1", 10, source="paid", device="pc"),
        enter("u1", 20, source="organic", device="tv", follower=True),  # during the presence: no change
        click("u1", 25, product="sku-2"),  # paid / pc / follower unknown
        leave("u1", 30),
        enter("u1", 40, source="search", follower=False),  # a new presence: search, device unknown, "no"
        chat("u1", 45),
        order("u1", 50, "o1", 50.0, product="sku-2"),
    ], until=60)
    by = result.line(60)["by"]  # window (0, 60]
    # First presence [10, 30): 20 s watched; the click at 25 (ctr 1/1); u1 paid in the window:
    # conversion 1/1; no order attributed (the order at 50 falls in the second presence): uv 0/1.
    first = row(1, 1, 20.0, 0.0, 1.0, 1.0, 0, 0, 0.0)
    # Second presence [40, 130): not ended; the danmaku at 45 (1/1), no click (ctr 0/1, no
    # conversion), the order at 50: orders 1, gmv 50, uv 50/1.
    second = row(1, 1, None, 1.0, 0.0, None, 1, 50.0, 50.0)
    same(by["source"], {"paid": first, "search": second}, "by.source")
    same(by["device"], {"pc": first, "unknown": second}, "by.device")
    same(by["follower"], {"unknown": first, "no": second}, "by.follower")
    # Both presences share region, age_band and gender "unknown": u1 is one viewer there, with two
    # entries, one ended presence (20 s), the danmaku (1/1), the click (1/1, and paid: 1/1) and
    # the order.
    both = row(1, 2, 20.0, 1.0, 1.0, 1.0, 1, 50.0, 50.0)
    same(by["region"], {"unknown": both}, "by.region")
    same(by["gender"], {"unknown": both}, "by.gender")
    # The room's viewers: u1 alone; sku-2: 1 clicker of 1 viewer, who paid an order of sku-2.
    same(result.line(60)["products"], {"sku-2": product(1, 0, 1, 50.0, 1.0, 1.0)}, "products")


@pytest.mark.parametrize("advance_after", [None, 2])
def test_attribution_long_after_a_presence_ended(run, advance_after):
    # u1's presence [0, 90) timed out; the order at 235.5 takes its attributes (the most recent
    # presence started at or before it), whatever u1 does later, and wherever replay advances.
    result = run([
        enter("u1", 0, source="other"),
        order("u1", 235.5, "o1", 10.0),
        enter("u1", 241.5, source="paid"),  # a new presence, after the order
    ], advance_after=advance_after)
    # Window (176, 236]: no viewer; the order under "other": 1 order, 10, rates over 0 viewers null.
    same(result.line(236)["by"]["source"], {"other": row(0, 0, None, None, None, None, 1, 10.0, None)}, "at 236")
    # The show: u1's two presences, one per value; the order (buyer) under "other".
    same(result.summary()["by"]["source"], {
        "other": show_row(1, 1, 90.0, 0, 1, None, 1, 10.0, 10.0),
        "paid": show_row(1, 1, None, 0, 0, None, 0, 0, 0.0),
    }, "show by.source")


def test_attributes_are_remembered_across_shows(run):
    # Three shows 1000 s apart; u1 watched only the first. Its danmaku and order in the third show
    # take the attributes of its most recent presence (in the first show): "paid".
    result = run([
        show(0, "start", show_id="A"), enter("u1", 1, source="paid"), leave("u1", 5), show(10, "end"),
        show(1000, "start", show_id="B"), enter("u2", 1001), show(1010, "end"),
        show(2000, "start", show_id="C"), enter("u3", 2001), chat("u1", 2005), order("u1", 2006, "o1", 10.0),
        show(2010, "end"),
    ])
    # Window (1950, 2010]: u3 (no attributes) is the one viewer; u1's danmaku and order under "paid".
    same(result.line(2010)["by"]["source"], {
        "unknown": row(1, 1, None, 0.0, 0.0, None, 0, 0, 0.0),
        "paid": row(0, 0, None, None, None, None, 1, 10.0, None),
    }, "by.source at 2010")
    same(result.summary(2)["by"]["source"], {
        "unknown": show_row(1, 1, None, 0, 0, None, 0, 0, 0.0),
        "paid": show_row(0, 0, None, 0, 1, None, 1, 10.0, None),
    }, "show C by.source")


# ---- §9 products ----

def test_products_listed_and_conversion_needs_a_paid_order_of_that_product(run):
    result = run([
        enter("u1", 5), enter("u2", 5), enter("u3", 5),
        click("u1", 10, product="sku-1"),
        click("u2", 11, product="sku-1"),
        order("u1", 12, "o1", 30.0, product="sku-2"),  # u1 pays, but for sku-2
        order("u2", 13, "o2", 20.0, product="sku-1", status="created"),  # created only: not a purchase
        click("u3", 14, target="cart", product="sku-3"),
        click("u3", 15, target="like"),
        order("u1", 16, "o3", 9.0, product="sku-4", status="refunded"),  # never paid: nothing
        order("u2", 17, "o4", 5.0, product="sku-5", status="created"),  # created only: not listed
        order("u1", 22, "o1", 999.0, product="sku-2"),  # a duplicate paid: counted once, at 12
    ], until=80)
    line = result.line(30)  # window (-30, 30], 3 viewers
    same(line["products"], {
        # 2 clickers of 3 viewers; neither paid an order of sku-1: 0/2.
        "sku-1": product(2, 0, 0, 0, 2 / 3, 0.0),
        # o1 once (the duplicate paid does nothing): 1 order, 30; no clickers.
        "sku-2": product(0, 0, 1, 30.0, 0.0, None),
        # one cart click.
        "sku-3": product(0, 1, 0, 0, 0.0, None),
    }, "products at 30")
    # The room-wide conversion of §8 takes any paid order: clickers {u1, u2}, payers {u1}: 1/2;
    # interaction: u3's like, 1/3; product_ctr 2/3; o1 counted once: gmv 30, uv 30/3.
    same(line["by"]["source"], {"unknown": row(3, 3, None, 1 / 3, 2 / 3, 0.5, 1, 30.0, 10.0)}, "by.source at 30")
    # Window (12, 72]: o1 counted at 12 is out; its duplicate at 22 counts nothing; the cart click
    # at 14 is in: only sku-3 is listed.
    same(result.line(72)["products"], {"sku-3": product(0, 1, 0, 0, 0.0, None)}, "products at 72")
    # Window (16, 76]: nothing: no product is listed.
    same(result.line(76)["products"], {}, "products at 76")


# ---- §11 start-up ----

def test_startup_room_and_per_cdn(run):
    result = run([
        enter("u1", 1),
        beacon("u1", 10, "cdn-a", 800), beacon("u1", 11, "cdn-a", 1000), beacon("u1", 12, "cdn-a", 2500),
        beacon("u1", 13, "cdn-b", 3000), beacon("u1", 14, "cdn-b", 5000), beacon("u1", 15, "cdn-b"),
        beacon("u1", 16, "cdn-c"),
        beacon("u1", 70, "cdn-c"),
    ], until=80)
    line = result.line(20)  # window (-40, 20]
    # Room: [800, 1000, 2500, 3000, 5000]: nearest rank ceil(0.5*5) = 3rd = 2500; <= 1000: 2 of 5;
    # >= 3000: 2 of 5.
    startup = {k: line["metrics"][k] for k in reference_sales.STARTUP_NAMES}
    same(startup, {"startup_p50_ms": 2500, "fast_start_ratio": 0.4, "slow_start_ratio": 0.4}, "room at 20")
    # cdn-a [800, 1000, 2500]: rank ceil(1.5) = 2nd = 1000, fast 2/3, slow 0/3; cdn-b [3000, 5000]:
    # rank 1 = 3000, fast 0/2, slow 2/2; cdn-c: no start-up: null.
    expected = {"cdn-a": (1000, 2 / 3, 0.0), "cdn-b": (3000, 0.0, 1.0), "cdn-c": (None, None, None)}
    for cdn, values in expected.items():
        same({k: line["cdn"][cdn][k] for k in reference_sales.STARTUP_NAMES},
             dict(zip(reference_sales.STARTUP_NAMES, values)), f"{cdn} at 20")
    # Window (11, 71]: [2500, 3000, 5000]: 3000, fast 0/3, slow 2/3; cdn-a [2500].
    line = result.line(71)
    same({k: line["metrics"][k] for k in reference_sales.STARTUP_NAMES},
         {"startup_p50_ms": 3000, "fast_start_ratio": 0.0, "slow_start_ratio": 2 / 3}, "room at 71")
    same({k: line["cdn"]["cdn-a"][k] for k in reference_sales.STARTUP_NAMES},
         {"startup_p50_ms": 2500, "fast_start_ratio": 0.0, "slow_start_ratio": 0.0}, "cdn-a at 71")
    # Window (20, 80]: only cdn-c's beacon at 70, without start-up: all null.
    line = result.line(80)
    assert set(line["cdn"]) == {"cdn-c"}
    for scope in (line["metrics"], line["cdn"]["cdn-c"]):
        same({k: scope[k] for k in reference_sales.STARTUP_NAMES},
             dict.fromkeys(reference_sales.STARTUP_NAMES), "null at 80")


# ---- §9 show.pinned, §10 segments and promotions ----

def pin_events():
    return [
        show(0, "start", show_id="s1", title="Spring"),
        show(1, "product", product_id="sku-1", category="beauty", title="Lipstick"),
        show(1.5, "product", product_id="sku-2", category="food"),
        enter("u1", 2, source="paid", age_band="24-30"),
        show(5, "unpin"),  # nothing pinned: nothing
        show(10, "pin", product_id="sku-1"),
        click("u1", 12),
        order("u1", 15, "o1", 40.0),
        show(20, "promo_start", promo_id="A", promo_type="seckill", product_id="sku-1"),
        enter("u2", 25, source="organic", age_band="18-23"),  # no heartbeat: present until 115
        show(30, "pin", product_id="sku-1"),  # the same product again: a new stretch
        click("u1", 35),
        order("u1", 40, "o2", 60.0),
        enter("u3", 45), leave("u3", 48),
        show(50, "pin", product_id="sku-2"),
        click("u2", 55, product="sku-2"),
        order("u2", 58, "o3", 25.0, product="sku-2"),
        show(60, "promo_end", promo_id="A"),
        show(70, "unpin"),
        show(75, "promo_start", promo_id="B", promo_type="coupon"),  # no product: every product
        show(80, "pin", product_id="sku-1"),  # runs past the show's end
        click("u2", 82),
        order("u2", 85, "o4", 10.0),
        leave("u1", 90),
        show(100, "end"),
    ]


def test_pinned_on_the_line(run):
    result = run(pin_events(), until=110)
    expected = {4: None, 5: None, 9: None, 10: "sku-1", 29: "sku-1", 30: "sku-1", 49: "sku-1", 50: "sku-2",
                69: "sku-2", 70: None, 79: None, 80: "sku-1", 99: "sku-1",
                100: None,  # the show's end event ends the pin
                101: None, 110: None}
    got = {t: (result.line(t).get("show") or {}).get("pinned", "missing") for t in expected}
    assert got == expected


def test_segments_and_promos_cross_the_show_end(run):
    summary = run(pin_events()).summary()
    same(summary["segments"], [
        # [10, 30): u2 entered at 25; u1 clicked sku-1 at 12 and paid o1 (40) at 15.
        {"product_id": "sku-1", "start": T0 + 10, "end": T0 + 30, "entries": 1, "clickers": 1, "orders": 1,
         "gmv": 40.0, "gmv_all": 40.0},
        # [30, 50): u3 entered at 45; u1 clicked at 35, paid o2 (60) at 40.
        {"product_id": "sku-1", "start": T0 + 30, "end": T0 + 50, "entries": 1, "clickers": 1, "orders": 1,
         "gmv": 60.0, "gmv_all": 60.0},
        # [50, 70): u2 clicked sku-2 at 55, paid o3 (25) at 58.
        {"product_id": "sku-2", "start": T0 + 50, "end": T0 + 70, "entries": 0, "clickers": 1, "orders": 1,
         "gmv": 25.0, "gmv_all": 25.0},
        # [80, 100): ended by the show's end; u2 clicked sku-1 at 82, paid o4 (10) at 85.
        {"product_id": "sku-1", "start": T0 + 80, "end": T0 + 100, "entries": 0, "clickers": 1, "orders": 1,
         "gmv": 10.0, "gmv_all": 10.0},
    ], "segments")
    same(summary["promos"], [
        # A on sku-1 over [20, 60): u1's click at 35 and o2 at 40: 1 clicker who paid.
        {"promo_id": "A", "promo_type": "seckill", "product_id": "sku-1", "start": T0 + 20, "end": T0 + 60,
         "clickers": 1, "buyers": 1, "orders": 1, "gmv": 60.0, "conversion_rate": 1.0},
        # B on every product over [75, 100) (the show's end): u2's click at 82 and o4 at 85.
        {"promo_id": "B", "promo_type": "coupon", "product_id": None, "start": T0 + 75, "end": T0 + 100,
         "clickers": 1, "buyers": 1, "orders": 1, "gmv": 10.0, "conversion_rate": 1.0},
    ], "promos")
    # The rest of this show's summary, worked out: presences u1 [2, 90), u2 [25, 115), u3 [45, 48).
    assert (summary["show_id"], summary["title"], summary["start"], summary["end"]) == ("s1", "Spring", T0, T0 + 100)
    same(summary["totals"], {
        "viewers": 3, "entries": 3,
        "peak_online": 3,  # 45 <= t < 48: all three
        "avg_watch_seconds": 45.5,  # ended in the show: u1 88 s, u3 3 s
        "stayed_60s": 2,  # u1 88 s; u2 still present at the end: 100 - 25 = 75 s; u3 3 s
        "interacting": 0, "clickers": 2, "carters": 0, "ordering": 2, "buyers": 2,
        "orders": 4, "gmv": 135.0,  # 40 + 60 + 25 + 10
        "refunds": 0, "refund_rate": 0.0,
        "uv_value": 45.0,  # 135 / 3
        "gpm": 45000.0,  # 135 * 1000 / 3
        "conversion_rate": 1.0,  # both clickers bought
        "stall_ratio": None, "error_rate": None,  # no beacons
    }, "totals")
    assert summary["funnel"] == [3, 2, 2, 2, 2]
    same(summary["products"], {
        "sku-1": {"title": "Lipstick", "category": "beauty", "clickers": 2, "carters": 0, "buyers": 2,
                  "orders": 3, "gmv": 110.0, "refunds": 0, "refund_rate": 0.0, "conversion_rate": 1.0},
        "sku-2": {"title": None, "category": "food", "clickers": 1, "carters": 0, "buyers": 1, "orders": 1,
                  "gmv": 25.0, "refunds": 0, "refund_rate": 0.0, "conversion_rate": 1.0},
    }, "products")
    same(summary["by"]["source"], {
        # u1: 88 s, clicked, bought o1 + o2.
        "paid": show_row(1, 1, 88.0, 1, 1, 1.0, 2, 100.0, 100.0),
        # u2: still present, clicked, bought o3 + o4.
        "organic": show_row(1, 1, None, 1, 1, 1.0, 2, 35.0, 35.0),
        # u3: 3 s, nothing else.
        "unknown": show_row(1, 1, 3.0, 0, 0, None, 0, 0, 0.0),
    }, "by.source")
    # Age bands at the paid event: u1 (24-30) o1 + o2 of sku-1 (beauty); u2 (18-23) o3 (food), o4 (beauty).
    same(summary["age_category"], {"24-30": {"beauty": 100.0}, "18-23": {"food": 25.0, "beauty": 10.0}})
    same(summary["categories"], {
        "beauty": {"clickers": 2, "buyers": 2, "orders": 3, "gmv": 110.0, "conversion_rate": 1.0},
        "food": {"clickers": 1, "buyers": 1, "orders": 1, "gmv": 25.0, "conversion_rate": 1.0},
    }, "categories")
    assert summary["top10_share"] == 1.0
    # All in local hour 06 (22:00 UTC + 8 h).
    same(summary["hours"], {"06": {"entries": 3, "clickers": 2, "buyers": 2, "orders": 4, "gmv": 135.0}})
    assert (summary["spend"], summary["spend_total"], summary["roi"], summary["roi_by_channel"]) == ({}, 0, None, {})


def test_a_show_ended_by_silence_ends_its_stretch_at_its_last_event(run):
    result = run([
        enter("u1", 0),
        show(10, "pin", product_id="sku-1"),
        show(12, "promo_start", promo_id="P", promo_type="gift"),
        click("u1", 20),  # the room's last event: the show's end
        enter("u2", 700),  # more than 10 minutes later: another show
    ])
    first = result.summary(0)
    assert (first["start"], first["end"], first["show_id"], first["title"]) == (T0, T0 + 20, None, None)
    same(first["segments"], [{"product_id": "sku-1", "start": T0 + 10, "end": T0 + 20, "entries": 0,
                              "clickers": 0,  # the click at 20 is not in [10, 20)
                              "orders": 0, "gmv": 0, "gmv_all": 0}], "segments")
    assert [(p["promo_id"], p["start"], p["end"], p["product_id"]) for p in first["promos"]] == [
        ("P", T0 + 12, T0 + 20, None)]
    # The pin lasts until 10 minutes after the show's last event: still pinned on its lines.
    assert result.line(20)["show"]["pinned"] == "sku-1"
    second = result.summary(1)
    assert (second["start"], second["end"], second["segments"], second["promos"]) == (T0 + 700, T0 + 700, [], [])
    # The second show's line: the pin of the first show ended (10 minutes after 20).
    assert result.line(700)["show"]["pinned"] is None


def test_events_at_the_end_events_ts_are_in_the_show_not_in_the_stretch(run):
    summary = run([
        show(0, "start"),
        enter("u1", 1),
        show(10, "pin", product_id="sku-1"),
        show(10, "promo_start", promo_id="P", promo_type="discount", product_id="sku-1"),
        show(30, "end"),
        click("u1", 30),  # arrives after the end, at its ts: in the show ([start, end] is closed)
        order("u1", 30, "o1", 8.0),
    ]).summary()
    assert (summary["start"], summary["end"]) == (T0, T0 + 30)
    assert (summary["totals"]["clickers"], summary["totals"]["orders"], summary["totals"]["gmv"]) == (1, 1, 8.0)
    # The stretch and the promotion are [10, 30): the click and order at 30 are not in them.
    same(summary["segments"], [{"product_id": "sku-1", "start": T0 + 10, "end": T0 + 30, "entries": 0,
                                "clickers": 0, "orders": 0, "gmv": 0, "gmv_all": 0}], "segments")
    same(summary["promos"], [{"promo_id": "P", "promo_type": "discount", "product_id": "sku-1", "start": T0 + 10,
                              "end": T0 + 30, "clickers": 0, "buyers": 0, "orders": 0, "gmv": 0,
                              "conversion_rate": None}], "promos")


# ---- §10 totals: refunds, spend and roi, hours, top10_share, categories ----

def test_refunds_count_once_per_counted_order(run):
    summary = run([
        show(0, "start", show_id="r"),
        enter("u1", 1),
        order("u1", 10, "o1", 100.0),
        order("u1", 20, "o1", 100.0, status="refunded"),  # refunds o1
        order("u1", 30, "o2", 50.0),
        order("u1", 35, "o2", 50.0),  # duplicate paid: nothing
        order("u1", 40, "o2", 50.0, status="refunded"),
        order("u1", 45, "o2", 50.0, status="refunded"),  # o2 again: still one refund
        order("u2", 50, "o9", 70.0, status="refunded"),  # never paid: nothing
        order("u2", 55, "o3", 30.0, status="created"),
        order("u2", 56, "o3", 30.0, status="refunded"),  # created, never paid: nothing
        order("u2", 60, "o4", 20.0, product="sku-2"),
        show(70, "end"),
    ]).summary()
    totals = summary["totals"]
    # Counted paid orders o1, o2, o4: 170; refunded o1 and o2: 2 of 3.
    same({k: totals[k] for k in ("orders", "gmv", "refunds", "refund_rate", "buyers", "ordering", "viewers",
                                 "uv_value", "gpm", "conversion_rate")},
         {"orders": 3, "gmv": 170.0, "refunds": 2, "refund_rate": 2 / 3,
          "buyers": 2, "ordering": 2,  # u1, u2 (u2 created o3 and paid o4)
          "viewers": 1, "uv_value": 170.0,  # u2 never entered
          "gpm": 170000.0, "conversion_rate": None}, "totals")
    same(summary["products"], {
        "sku-1": {"title": None, "category": "unknown", "clickers": 0, "carters": 0, "buyers": 1, "orders": 2,
                  "gmv": 150.0, "refunds": 2, "refund_rate": 1.0, "conversion_rate": None},
        "sku-2": {"title": None, "category": "unknown", "clickers": 0, "carters": 0, "buyers": 1, "orders": 1,
                  "gmv": 20.0, "refunds": 0, "refund_rate": 0.0, "conversion_rate": None},
    }, "products")
    same(summary["categories"], {"unknown": {"clickers": 0, "buyers": 2, "orders": 3, "gmv": 170.0,
                                             "conversion_rate": None}}, "categories")


def test_spend_roi_and_roi_by_channel(run):
    result = run([
        # room-a: spend, no order: roi 0/150 = 0; "social" spent 0: null.
        show(0, "start", room="room-a"),
        enter("u1", 1, room="room-a", source="paid"),
        show(5, "spend", room="room-a", amount=100.0, channel="paid", campaign="c1"),
        show(6, "spend", room="room-a", amount=50.0, channel="paid"),
        show(7, "spend", room="room-a", amount=0.0, channel="social"),
        show(20, "end", room="room-a"),
        # room-b: only a spend of 0: roi null.
        show(0, "start", room="room-b"),
        enter("u1", 1, room="room-b"),
        show(5, "spend", room="room-b", amount=0.0, channel="search"),
        order("u1", 8, "o1", 10.0, room="room-b"),
        show(20, "end", room="room-b"),
        # room-c: 100 of gmv over 100 of spend; paid: 30 / 60; search: 0 / 40; organic: no spend.
        show(0, "start", room="room-c"),
        enter("u1", 1, room="room-c", source="paid"),
        enter("u2", 2, room="room-c", source="organic"),
        show(3, "spend", room="room-c", amount=60.0, channel="paid"),
        show(4, "spend", room="room-c", amount=40.0, channel="search"),
        order("u1", 10, "o1", 30.0, room="room-c"),
        order("u2", 11, "o2", 70.0, room="room-c"),
        show(20, "end", room="room-c"),
    ])
    a, b, c = (result.summary(room=room) for room in ("room-a", "room-b", "room-c"))
    same({k: a[k] for k in ("spend", "spend_total", "roi", "roi_by_channel")},
         {"spend": {"paid": 150.0, "social": 0.0}, "spend_total": 150.0, "roi": 0.0,
          "roi_by_channel": {"paid": 0.0, "social": None}}, "room-a")
    same({k: b[k] for k in ("spend", "spend_total", "roi", "roi_by_channel")},
         {"spend": {"search": 0.0}, "spend_total": 0.0, "roi": None, "roi_by_channel": {"search": None}}, "room-b")
    same({k: c[k] for k in ("spend", "spend_total", "roi", "roi_by_channel")},
         {"spend": {"paid": 60.0, "search": 40.0}, "spend_total": 100.0, "roi": 1.0,
          "roi_by_channel": {"paid": 0.5, "search": 0.0}}, "room-c")


def hour_events():
    return [
        show(3500, "start"),  # 22:58:20 UTC
        enter("u1", 3550),
        click("u1", 3580),
        order("u1", 3590, "o1", 10.0),
        enter("u2", 3610),  # 23:00:10 UTC
        click("u2", 3620),
        order("u2", 3630, "o2", 20.0),
        order("u1", 3640, "o3", 5.0, product="sku-2"),
        show(3700, "end"),
    ]


@pytest.mark.parametrize("offset, hours", [
    # +08:00 (the default): 06:58-07:01.
    (28800.0, {"06": (1, 1, 1, 1, 10.0), "07": (1, 1, 2, 2, 25.0)}),
    (0.0, {"22": (1, 1, 1, 1, 10.0), "23": (1, 1, 2, 2, 25.0)}),
    (-5 * 3600.0, {"17": (1, 1, 1, 1, 10.0), "18": (1, 1, 2, 2, 25.0)}),
    # +05:30: 04:28-04:31, one hour: 2 entries, 2 clickers, 2 buyers, 3 orders, 35.
    (19800.0, {"04": (2, 2, 2, 3, 35.0)}),
])
def test_hours_in_local_time(run, offset, hours):
    summary = run(hour_events(), utc_offset=offset).summary()
    names = ("entries", "clickers", "buyers", "orders", "gmv")
    same(summary["hours"], {h: dict(zip(names, v)) for h, v in hours.items()}, f"hours at {offset}")


def test_top10_share(run):
    events = [show(0, "start"), enter("u1", 1)]
    # sku-1 .. sku-12 paid 1 .. 12: gmv 78; the 10 largest 3 + ... + 12 = 75.
    events += [order("u1", 1 + k, f"o{k}", float(k), product=f"sku-{k}") for k in range(1, 13)]
    events += [show(30, "end"), show(40, "start"), click("u1", 41), show(50, "end")]
    result = run(events)
    assert abs(result.summary(0)["top10_share"] - 75 / 78) < 1e-12
    assert result.summary(1)["top10_share"] is None  # no gmv


def test_categories_unknown_latest_product_event_and_age_category(run):
    summary = run([
        show(0, "start"),
        show(1, "product", product_id="sku-1", category="beauty"),
        show(2, "product", product_id="sku-2", title="Mystery"),  # no category: "unknown"
        enter("u1", 3, age_band="18-23"),
        enter("u2", 4),
        show(5, "product", product_id="sku-1", category="food", title="Snack"),  # the latest counts
        click("u1", 10, product="sku-1"),
        order("u1", 11, "o1", 10.0, product="sku-1"),
        click("u1", 12, product="sku-2"),
        click("u2", 13, product="sku-3"),  # sku-3 has no product event: "unknown"
        order("u2", 14, "o2", 7.0, product="sku-3"),
        order("u2", 15, "o3", 3.0, product="sku-2"),
        click("u1", 16, target="cart", product="sku-2"),
        show(30, "end"),
    ]).summary()
    same(summary["products"], {
        "sku-1": {"title": "Snack", "category": "food", "clickers": 1, "carters": 0, "buyers": 1, "orders": 1,
                  "gmv": 10.0, "refunds": 0, "refund_rate": 0.0, "conversion_rate": 1.0},
        # u1 clicked and put it in the cart, u2 bought it: 0 of 1 clicker paid for it.
        "sku-2": {"title": "Mystery", "category": "unknown", "clickers": 1, "carters": 1, "buyers": 1,
                  "orders": 1, "gmv": 3.0, "refunds": 0, "refund_rate": 0.0, "conversion_rate": 0.0},
        "sku-3": {"title": None, "category": "unknown", "clickers": 1, "carters": 0, "buyers": 1, "orders": 1,
                  "gmv": 7.0, "refunds": 0, "refund_rate": 0.0, "conversion_rate": 1.0},
    }, "products")
    same(summary["categories"], {
        # "beauty" is gone: sku-1's latest product event says food.
        "food": {"clickers": 1, "buyers": 1, "orders": 1, "gmv": 10.0, "conversion_rate": 1.0},
        # sku-2 and sku-3: clickers {u1, u2}, buyers {u2}: 1 of 2.
        "unknown": {"clickers": 2, "buyers": 1, "orders": 2, "gmv": 10.0, "conversion_rate": 0.5},
    }, "categories")
    # o1 by u1 (18-23) of food; o2 and o3 by u2 (age unknown) of unknown-category products.
    same(summary["age_category"], {"18-23": {"food": 10.0}, "unknown": {"unknown": 10.0}}, "age_category")
    assert summary["top10_share"] == 1.0
    # by.age_band: u1 18-23 clicked twice (one clicker), bought; u2 unknown clicked, bought twice.
    # Conversion: of the value's clickers, the share among all the show's buyers {u1, u2}.
    same(summary["by"]["age_band"], {
        "18-23": show_row(1, 1, None, 1, 1, 1.0, 1, 10.0, 10.0),
        "unknown": show_row(1, 1, None, 1, 1, 1.0, 2, 10.0, 10.0),
    }, "by.age_band")


# ---- §10 stayed_60s, peak_online, a start while a show runs ----

def test_stayed_60s_counts_a_presence_still_going_at_the_end(run):
    summary = run([
        show(0, "start"),
        enter("u4", 5),
        enter("u1", 10),
        enter("u2", 20),
        enter("u3", 30),
        heartbeat("u1", 50),
        heartbeat("u3", 60),
        leave("u4", 66),  # 61 s
        leave("u2", 70),  # 50 s
        show(75, "end"),  # u1 still present (until 140): 65 s by the end; u3 (until 150): 45 s
    ]).summary()
    same({k: summary["totals"][k] for k in ("viewers", "entries", "peak_online", "stayed_60s", "avg_watch_seconds")},
         {"viewers": 4, "entries": 4,
          "peak_online": 4,  # 30 <= t < 66
          "stayed_60s": 2,  # u4 (61 s) and u1 (65 s up to the end)
          "avg_watch_seconds": 55.5}, "totals")  # ended in the show: u4 61, u2 50
    assert summary["funnel"][:2] == [4, 2]


def test_an_open_show_at_the_end_of_the_file_ends_at_its_last_event(run):
    summary = run([
        enter("u1", 10),
        heartbeat("u1", 72),  # the last event: the show is as of 72; u1 has watched 62 s
    ]).summary()
    assert (summary["start"], summary["end"], summary["show_id"], summary["title"]) == (T0 + 10, T0 + 72, None, None)
    same({k: summary["totals"][k] for k in ("viewers", "entries", "stayed_60s", "avg_watch_seconds", "peak_online")},
         {"viewers": 1, "entries": 1, "stayed_60s": 1, "avg_watch_seconds": None, "peak_online": 1}, "totals")


def test_a_start_while_a_show_runs_ends_it_at_its_last_event(run):
    result = run([
        show(0, "start", show_id="A", title="Morning"),
        enter("u1", 5),
        order("u1", 20, "o1", 10.0),  # show A's last event
        show(50, "start", show_id="B"),  # ends A at 20, begins B
        enter("u2", 55),
        order("u2", 60, "o2", 5.0),
        show(80, "end", show_id="B-end", title="Evening"),  # the title comes from here, the id from the start
    ])
    a, b = result.summary(0), result.summary(1)
    assert (a["show_id"], a["title"], a["start"], a["end"]) == ("A", "Morning", T0, T0 + 20)
    assert (b["show_id"], b["title"], b["start"], b["end"]) == ("B", "Evening", T0 + 50, T0 + 80)
    keys = ("viewers", "entries", "orders", "gmv", "stayed_60s")
    # A: u1 [5, 95) overlaps [0, 20]: 15 s by A's end.
    same({k: a["totals"][k] for k in keys}, {"viewers": 1, "entries": 1, "orders": 1, "gmv": 10.0, "stayed_60s": 0})
    # B: u1 still present overlaps [50, 80] too (80 - 5 = 75 s); u2 [55, 145): 25 s.
    same({k: b["totals"][k] for k in keys}, {"viewers": 2, "entries": 1, "orders": 1, "gmv": 5.0, "stayed_60s": 1})


def test_show_id_and_title_of_a_show_without_start_come_from_its_end(run):
    result = run([
        enter("u1", 1),  # no start: the show begins here
        show(20, "end", show_id="late-id", title="Named at the end"),
        enter("u2", 40),  # another show, never named
    ])
    first, second = result.summary(0), result.summary(1)
    assert (first["show_id"], first["title"], first["start"], first["end"]) == ("late-id", "Named at the end",
                                                                              T0 + 1, T0 + 20)
    assert (second["show_id"], second["title"], second["start"], second["end"]) == (None, None, T0 + 40, T0 + 40)


@pytest.mark.parametrize("advance_after", [None, 2])
def test_show_id_from_the_end_event_wherever_replay_advances(run, advance_after):
    summary = run([
        show(0, "start"),  # no show_id: it comes from the end event
        chat("u1", 10),
        show(20, "end", show_id="late-id", title="From the end"),
    ], advance_after=advance_after).summary()
    assert (summary["show_id"], summary["title"], summary["start"], summary["end"]) == (
        "late-id", "From the end", T0, T0 + 20)


def test_a_show_begun_by_a_promotion_or_a_pin(run):
    # The room's first event is a promo_start (room-a) or a pin (room-b): the show begins with it,
    # and it is one promotion, one pinned stretch, up to the show's end (its last event, at 50).
    result = run([
        show(49, "promo_start", room="room-a", promo_id="P", promo_type="lottery"),
        enter("u1", 50, room="room-a"),
        show(49, "pin", room="room-b", product_id="sku-1"),
        enter("u1", 50, room="room-b"),
    ])
    a, b = result.summary(room="room-a"), result.summary(room="room-b")
    same(a["promos"], [{"promo_id": "P", "promo_type": "lottery", "product_id": None, "start": T0 + 49,
                        "end": T0 + 50, "clickers": 0, "buyers": 0, "orders": 0, "gmv": 0,
                        "conversion_rate": None}], "room-a promos")
    same(b["segments"], [{"product_id": "sku-1", "start": T0 + 49, "end": T0 + 50,
                          "entries": 0,  # u1 entered at 50: not in [49, 50)
                          "clickers": 0, "orders": 0, "gmv": 0, "gmv_all": 0}], "room-b segments")
    assert result.line(50, room="room-b")["show"]["pinned"] == "sku-1"


def test_an_order_counts_once_per_order_id_across_shows(run):
    # SPEC §2: an order counts once per order_id; the first paid status counts (in show A). Its
    # later paid statuses, in the next show or two shows later, do nothing.
    result = run([
        show(0, "start", show_id="A"),
        enter("u1", 1),
        order("u1", 10, "o1", 10.0),
        show(20, "end"),
        show(30, "start", show_id="B"),
        order("u1", 40, "o1", 10.0),
        show(50, "end"),
        show(1000, "start", show_id="C"),
        enter("u1", 1001),
        order("u1", 1005, "o1", 10.0),
        show(1010, "end"),
    ])
    assert [result.summary(i)["totals"]["orders"] for i in range(3)] == [1, 0, 0]
    assert [result.summary(i)["totals"]["gmv"] for i in range(3)] == [10.0, 0, 0]
    # Window (950, 1010] of show C: u1 present, no order counted.
    same(result.line(1010)["by"]["source"], {"unknown": row(1, 1, None, 0.0, 0.0, None, 0, 0, 0.0)}, "at 1010")
