"""The room view's chart markers and funnel: pinned stretches from the live snapshots, promotions
from the provisional show summary, alert transitions and failovers, bounded per room; the funnel is
the summary's own."""

import copy

from livemon.web import hub as hub_module
from livemon.web.hub import HISTORY_SECONDS, MAX_MARKS, ControlRoomHub
from tests.fixtures.browser import SyntheticShow


def feed(hub, show, ts, pinned=None, room="room-snacks"):
    snap = show.snapshot(room, ts)
    snap["show"]["pinned"] = pinned
    hub.feed_step({"worker": "w1", "now": ts, "live": [snap]})


def test_pins_open_and_close_with_the_live_snapshots():
    hub, show = ControlRoomHub(clock=lambda: 0.0), SyntheticShow(rooms=("room-snacks",))
    t = show.start
    plan = [None, "sku-1", "sku-1", "sku-2", None, None, "sku-1"]
    for i, pinned in enumerate(plan):
        feed(hub, show, t + i, pinned)
    marks = hub.room_view("room-snacks")["marks"]
    assert [(m["kind"], m["product_id"], m["ts"] - t, m["end"] and m["end"] - t) for m in marks] == [
        ("pin", "sku-1", 1, 3), ("pin", "sku-2", 3, 4), ("pin", "sku-1", 6, None)]   # the same product again: a new stretch
    # An older snapshot (the topic backfill) changes nothing.
    feed(hub, show, t + 2, "sku-9")
    assert hub.room_view("room-snacks")["marks"] == marks


def test_alerts_failovers_and_promotions_are_marked():
    hub, show = ControlRoomHub(clock=lambda: 0.0), SyntheticShow(rooms=("room-snacks",))
    t = show.start
    feed(hub, show, t)
    for rec in show.outage("room-snacks", "cdn-a", t + 10):
        hub.feed_alert(rec)
    hub.feed_alert({"kind": "alert", "rule": "viewer_drop", "room_id": "room-snacks", "state": "pending", "ts": t + 11})
    hub.feed_alert({"kind": "failover", "room_id": "room-snacks", "from_cdn": "cdn-b", "to_cdn": "cdn-c",
                    "decision": "declined", "ts": t + 12})
    hub.feed_alert({"kind": "alert", "rule": "x", "room_id": "room-nobody", "state": "firing", "ts": t})   # no such room
    for rec in show.recover("room-snacks", t + 20):
        hub.feed_alert(rec)
    summary = {"room_id": "room-snacks", "start": t, "end": t + 30, "show_id": "evening", "provisional": True,
               "funnel": [100, 60, 20, 8, 5],
               "promos": [{"promo_id": "p1", "promo_type": "seckill", "product_id": "sku-1", "start": t + 5, "end": t + 15},
                          {"promo_id": "p2", "promo_type": "coupon", "product_id": None, "start": t + 25, "end": t + 30}]}
    hub.feed_step({"worker": "w1", "now": t + 30, "provisional": [summary]})
    view = hub.room_view("room-snacks")
    assert [(m["kind"], m["ts"] - t) for m in view["marks"]] == [
        ("promo", 5), ("alert", 10), ("failover", 11), ("alert", 20), ("promo", 25)]
    alert, failover = view["marks"][1], view["marks"][2]
    assert (alert["state"], alert["rule"], alert["cdn"]) == ("firing", "cdn_stall_ratio_high", "cdn-a")
    assert (failover["from_cdn"], failover["to_cdn"], failover["decision"]) == ("cdn-a", "cdn-b", "taken")
    assert view["marks"][3]["state"] == "resolved"
    assert view["marks"][0] == {"kind": "promo", "ts": t + 5, "end": t + 15, "promo_id": "p1",
                                "promo_type": "seckill", "product_id": "sku-1"}
    assert view["funnel"] == {"show_id": "evening", "start": t, "end": t + 30,
                              "stages": ["viewers", "stayed_60s", "clickers", "ordering", "buyers"],
                              "counts": [100, 60, 20, 8, 5]}
    # The stream's frames carry them too.
    frame, _ = hub.room_frame("room-snacks", None, lists=False)
    assert b'"marks":[' in frame and b'"counts":[100,60,20,8,5]' in frame


def test_no_summary_no_funnel():
    hub, show = ControlRoomHub(clock=lambda: 0.0), SyntheticShow(rooms=("room-snacks",))
    feed(hub, show, show.start)
    assert hub.room_view("room-snacks")["funnel"] is None


def test_markers_are_bounded_per_room_and_the_open_pin_stays():
    hub, show = ControlRoomHub(clock=lambda: 0.0), SyntheticShow(rooms=("room-snacks",))
    t = show.start
    feed(hub, show, t, "sku-long")
    for i in range(5 * MAX_MARKS):
        hub.feed_alert({"kind": "alert", "rule": "r", "room_id": "room-snacks", "state": "firing", "ts": t + 1 + i * 0.001})
    marks = hub.room_view("room-snacks")["marks"]
    assert len(marks) == MAX_MARKS
    assert marks[0]["kind"] == "pin" and marks[0]["product_id"] == "sku-long"    # still going: kept
    assert marks[-1]["ts"] == t + 1 + (5 * MAX_MARKS - 1) * 0.001               # the newest
    # Markers that ended before the chart history go when new ones come.
    feed(hub, show, t + HISTORY_SECONDS + 100, None)         # the pin ends here
    hub.feed_alert({"kind": "alert", "rule": "r", "room_id": "room-snacks", "state": "resolved",
                    "ts": t + HISTORY_SECONDS + 100})
    kinds = [(m["kind"], m.get("state")) for m in hub.room_view("room-snacks")["marks"]]
    assert kinds == [("pin", None), ("alert", "resolved")]


def test_promotions_drawn_are_the_newest_few():
    hub, show = ControlRoomHub(clock=lambda: 0.0), SyntheticShow(rooms=("room-snacks",))
    t = show.start
    feed(hub, show, t)
    promos = [{"promo_id": f"p{i}", "promo_type": "gift", "product_id": None, "start": t + i, "end": t + i + 1}
              for i in range(200)]
    hub.feed_step({"worker": "w1", "now": t, "provisional": [{"room_id": "room-snacks", "start": t, "funnel": [1, 0, 0, 0, 0],
                                                               "promos": copy.deepcopy(promos)}]})
    marks = hub.room_view("room-snacks")["marks"]
    assert [m["promo_id"] for m in marks] == [f"p{i}" for i in range(200 - hub_module.PAGE_PROMOS, 200)]
