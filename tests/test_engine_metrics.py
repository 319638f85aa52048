"""Hand-computed cases for every SPEC §5 definition and its edges, on the engine itself.

Each case lists its events and, in comments, the arithmetic behind each expected number. Times are
seconds after T0; the window is (t-W, t] with W = 60 s, presence timeout 90 s, unless a test says
otherwise. A presence is the half-open interval [start, end): present at t when start <= t < end.
"""

import pytest

from livemon.engine import CDN_METRIC_NAMES, METRIC_NAMES, Engine, EngineConfig
from livemon.ingest.events import Click, Danmaku, Health, Order, Show, View

T0 = 1_700_000_000  # instants are whole seconds: T0 + t
ROOM = "room-1"
# Every room admitted at its first event: these cases are about the definitions, and some rooms
# have fewer events than admission asks (admission: tests/test_engine_admission.py).
ADMIT_ALL = EngineConfig(admit_events=1)


# ---- event builders (ts in seconds after T0) ----

def view(user, at, action="enter", room=ROOM):
    return View(room_id=room, user_id=user, ts=T0 + at, action=action)


def chat(user, at, room=ROOM):
    return Danmaku(room_id=room, user_id=user, ts=T0 + at, text="666")


def click(user, at, target, room=ROOM):
    product = "sku-1" if target in ("product", "cart") else None
    return Click(room_id=room, user_id=user, ts=T0 + at, target=target, product_id=product)


def order(user, at, order_id, amount, status="paid", room=ROOM):
    return Order(room_id=room, user_id=user, ts=T0 + at, order_id=order_id, product_id="sku-1",
                 amount=amount, status=status)


def beacon(user, at, cdn, play_ms, stall_ms=0, stall_count=0, latency_ms=None, error=None, room=ROOM):
    return Health(room_id=room, user_id=user, ts=T0 + at, cdn=cdn, play_ms=play_ms, stall_ms=stall_ms,
                  stall_count=stall_count, latency_ms=latency_ms, error=error)


def show(at, action, show_id=None, room=ROOM):
    return Show(room_id=room, ts=T0 + at, action=action, show_id=show_id)


# ---- running the engine ----

def finals(events, until, room=ROOM, **config):
    """The final snapshots of `room` keyed by instant (seconds after T0), all events in ts order."""
    engine = Engine(EngineConfig(**{"admit_events": 1, **config}))
    assert engine.ingest(sorted(events, key=lambda e: e.ts)) == []
    return {s["ts"] - T0: s for s in engine.finish(T0 + until) if s["room_id"] == room}


def at(timeline, t):
    assert t in timeline, f"no line at t={t}"
    snapshot = timeline[t]
    assert set(snapshot["metrics"]) >= set(METRIC_NAMES)
    return snapshot["metrics"]


def expect(metrics, **want):
    """Each named metric equals the hand-computed value (None: null; floats to rounding)."""
    for name, value in want.items():
        got = metrics[name]
        if value is None:
            assert got is None, f"{name}: {got!r}, expected null"
        elif "latency" in name:  # nearest rank, a sketch may answer within 2%
            assert got is not None and abs(got - value) <= 0.02 * value, f"{name}: {got!r}, expected ~{value}"
        else:
            assert got == pytest.approx(value, rel=1e-12, abs=1e-12), f"{name}: {got!r}, expected {value}"


# ---- presence: online, entries, leaves, viewers, avg_watch_seconds ----

def test_presence_counts_and_the_half_open_window():
    events = [view("A", 0), view("B", 10), view("A", 30, "heartbeat"), view("B", 20, "leave"),
              view("C", 40), view("A", 50, "leave")]
    tl = finals(events, until=200)
    # Presences: A [0,50), B [10,20), C [40,130) (no event after its enter: timeout 40+90).
    # t=59, window (-1,59]: online C=1; entries A0,B10,C40=3; leaves A50,B20=2; viewers 3;
    # avg_watch (50+10)/2 = 30.
    expect(at(tl, 59), online=1, entries=3, leaves=2, viewers=3, avg_watch_seconds=30.0)
    # t=60, window (0,60]: A's start at 0 is outside the window (left-open), A still a viewer.
    expect(at(tl, 60), online=1, entries=2, leaves=2, viewers=3, avg_watch_seconds=30.0)
    # t=129, window (69,129]: C only, nothing started or ended -> avg_watch null.
    expect(at(tl, 129), online=1, entries=0, leaves=0, viewers=1, avg_watch_seconds=None)
    # t=130: C's timeout end 130 is in (70,130]: a leave of 90 s; C was present during (70,130).
    expect(at(tl, 130), online=0, entries=0, leaves=1, viewers=1, avg_watch_seconds=90.0)
    # t=190, window (130,190]: nobody was present in it; the line exists (events in (t-240,t]).
    expect(at(tl, 190), online=0, entries=0, leaves=0, viewers=0, avg_watch_seconds=None,
           interaction_rate=None, product_ctr=None, uv_value=None)


def test_leave_without_enter_and_heartbeat_without_enter_make_no_presence():
    events = [view("X", 10, "leave"), view("X", 20, "heartbeat"), view("X", 30, "heartbeat"),
              view("X", 40), view("X", 50, "leave")]
    tl = finals(events, until=60)
    # Up to 39 X never entered: nothing is present, started or ended, yet the room has lines.
    for t in (10, 20, 30, 39):
        expect(at(tl, t), online=0, entries=0, leaves=0, viewers=0, avg_watch_seconds=None)
    # The enter at 40 starts the one presence [40,50).
    expect(at(tl, 45), online=1, entries=1, leaves=0, viewers=1)
    expect(at(tl, 50), online=0, entries=1, leaves=1, viewers=1, avg_watch_seconds=10.0)


def test_heartbeat_timeout_ends_presence_at_last_seen_plus_timeout():
    tl = finals([view("A", 0), view("A", 50, "heartbeat")], until=200)
    # last_seen 50 -> present until 140.
    expect(at(tl, 139), online=1, leaves=0)
    # t=140, window (80,140]: the timeout end at 140, watched 140 s.
    expect(at(tl, 140), online=0, leaves=1, avg_watch_seconds=140.0, viewers=1)


def test_heartbeat_exactly_at_the_timeout_does_not_revive():
    tl = finals([view("A", 0), view("A", 50, "heartbeat"), view("A", 140, "heartbeat")], until=200)
    # 140 >= 50 + 90: the presence ended at 140 before the heartbeat, which has no presence to extend.
    expect(at(tl, 140), online=0, leaves=1, avg_watch_seconds=140.0)
    expect(at(tl, 150), online=0, entries=0, leaves=1, viewers=1)  # window (90,150]


def test_heartbeat_just_before_the_timeout_extends():
    tl = finals([view("A", 0), view("A", 50, "heartbeat"), view("A", 139, "heartbeat")], until=240)
    # 139 < 140: last_seen 139, present until 229.
    expect(at(tl, 200), online=1, leaves=0)
    expect(at(tl, 228), online=1)
    expect(at(tl, 229), online=0, leaves=1, avg_watch_seconds=229.0)


def test_enter_exactly_at_the_timeout_starts_a_new_presence():
    tl = finals([view("A", 0), view("A", 50, "heartbeat"), view("A", 140)], until=240)
    # First presence [0,140) by timeout; the enter at 140 starts [140,230).
    # t=140, window (80,140]: one end (140 s watched), one start; one distinct viewer.
    expect(at(tl, 140), online=1, entries=1, leaves=1, viewers=1, avg_watch_seconds=140.0)
    expect(at(tl, 229), online=1, leaves=0)
    expect(at(tl, 230), online=0, leaves=1, avg_watch_seconds=90.0)


def test_leave_after_the_timeout_does_not_lengthen_the_presence():
    tl = finals([view("A", 0), view("A", 95, "leave")], until=100)
    # The presence ended at 0+90 by timeout; the leave at 95 finds nobody present.
    expect(at(tl, 90), online=0, leaves=1, avg_watch_seconds=90.0)
    expect(at(tl, 100), online=0, leaves=1, avg_watch_seconds=90.0)


def test_enter_while_present_only_refreshes_last_seen():
    tl = finals([view("A", 0), view("A", 50)], until=200)
    expect(at(tl, 55), online=1, entries=1, viewers=1)  # window (-5,55]: one start, at 0
    expect(at(tl, 139), online=1)  # last_seen 50 -> present until 140
    expect(at(tl, 140), online=0, leaves=1, avg_watch_seconds=140.0)


def test_reenter_within_the_window_counts_one_viewer():
    tl = finals([view("A", 0), view("A", 10, "leave"), view("A", 20), view("A", 30, "leave")], until=40)
    # Presences [0,10) and [20,30). t=40, window (-20,40]: 2 entries, 2 leaves, 1 distinct viewer.
    expect(at(tl, 40), online=0, entries=2, leaves=2, viewers=1, avg_watch_seconds=10.0)
    # t=25: present again, still one viewer.
    expect(at(tl, 25), online=1, entries=2, leaves=1, viewers=1)


def test_reenter_while_the_old_presence_is_still_in_the_window():
    tl = finals([view("A", 0), view("A", 10, "leave"), view("A", 50), view("A", 60, "heartbeat")], until=210)
    # [0,10) and [50,150). t=65, window (5,65]: both overlap it -> 1 viewer; entries 50 -> 1;
    # leaves 10 -> 1.
    expect(at(tl, 65), online=1, entries=1, leaves=1, viewers=1)
    # t=71, window (11,71]: only the second presence.
    expect(at(tl, 71), online=1, entries=1, leaves=0, viewers=1)
    # t=200, window (140,200]: the second presence ended at 150 -> still a viewer of this window.
    expect(at(tl, 200), online=0, entries=0, leaves=1, viewers=1, avg_watch_seconds=100.0)
    # t=210, window (150,210]: nobody.
    expect(at(tl, 210), viewers=0)


def test_reenter_beyond_the_window():
    tl = finals([view("A", 0), view("A", 10, "leave"), view("A", 100)], until=110)
    expect(at(tl, 69), viewers=1)  # (9,69] overlaps [0,10)
    expect(at(tl, 70), viewers=0, online=0)  # (10,70]: [0,10) ended at its left edge
    expect(at(tl, 100), viewers=1, entries=1, online=1, leaves=0)  # (40,100]


# ---- retention ----

def test_retention_cohorts_at_each_horizon():
    events = [
        view("P", 0), view("P", 20, "leave"),  # lasted 20
        view("V", 5), view("V", 50, "heartbeat"), view("V", 65, "leave"),  # lasted exactly 60
        view("Q", 15), view("Q", 45, "leave"),  # lasted exactly 30
        view("R", 20), view("R", 49, "leave"),  # lasted 29
        view("S", 60), *(view("S", s, "heartbeat") for s in (90, 150, 210, 240)),  # still going at 250
        view("U", 71), view("U", 72, "leave"),  # lasted 1
    ]
    tl = finals(events, until=250)
    # t=90. 30 s: cohort starts in (0,60]: V5 (60 >= 30 yes), Q15 (30, exactly T: yes), R20 (29: no),
    # S60 (still going at 90, has lasted exactly 30: yes) -> 3/4. P's start at 0 is outside.
    # 60 s: cohort (-30,30]: P0 (no), V5 (exactly 60: yes), Q15 (no), R20 (no) -> 1/4.
    # 180 s: cohort (-150,-90]: none -> null.
    expect(at(tl, 90), retention_30s=3 / 4, retention_60s=1 / 4, retention_180s=None)
    # t=100. 30 s: (10,70]: Q yes, R no, S yes -> 2/3. 60 s: (-20,40]: P, V, Q, R -> 1/4.
    expect(at(tl, 100), retention_30s=2 / 3, retention_60s=1 / 4, retention_180s=None)
    # t=101. 30 s: (11,71] adds U (1 s: no) -> 2/4.
    expect(at(tl, 101), retention_30s=2 / 4)
    # t=250. 30 s: (160,220] and 60 s: (130,190]: no presence started there -> null.
    # 180 s: (10,70]: Q (no), R (no), S (still going at 250: yes) -> 1/3.
    expect(at(tl, 250), retention_30s=None, retention_60s=None, retention_180s=1 / 3)


def test_retention_counts_a_timed_out_presence_by_its_timeout_duration():
    tl = finals([view("A", 0), view("B", 1), view("B", 61, "heartbeat"), view("C", 2)], until=240)
    # A [0,90): 90 s. B [1,151): 150 s. C [2,92): 90 s.
    # t=180, 180 s cohort (-60,0]: A lasted 90 < 180 -> 0/1 (a real zero, not null).
    # t=200: 180 s cohort (-40,20]: A, B, C: none lasted 180 -> 0/3; 60 s cohort (80,140]: none.
    expect(at(tl, 180), retention_180s=0.0)
    expect(at(tl, 200), retention_180s=0.0, retention_60s=None)
    # t=91, 60 s cohort (-29,31]: A (90: yes), B (yes), C (90: yes) -> 1.
    expect(at(tl, 91), retention_60s=1.0)


# ---- interaction, danmaku, product clicks ----

def test_interaction_rate_danmaku_per_min_and_product_ctr():
    users = "ABCDEF"
    events = [view(u, 1) for u in users] + [
        chat("A", 5), chat("A", 6), click("A", 7, "like"),  # A twice over: one user
        click("B", 8, "like"), click("C", 9, "share"), click("D", 10, "follow"),
        click("E", 11, "cart"),  # a cart click is not an interaction, nor a product click
        click("F", 12, "product"), click("F", 13, "product"),  # a product click is not an interaction
    ]
    tl = finals(events, until=80)
    # t=30, window (-30,30]: viewers A-F = 6; interacting A, B, C, D = 4 -> 4/6;
    # danmaku 2 * 60/60 = 2; product clickers F -> 1/6; F did not pay -> conversion 0/1 = 0.
    expect(at(tl, 30), viewers=6, interaction_rate=4 / 6, danmaku_per_min=2.0, product_ctr=1 / 6,
           conversion_rate=0.0)
    # t=70, window (10,70]: D's follow at 10 has left; F's clicks at 12, 13 are still in.
    # Everyone is still present (enter 1, timeout 91).
    expect(at(tl, 70), viewers=6, interaction_rate=0.0, danmaku_per_min=0.0, product_ctr=1 / 6)
    # t=73, window (13,73]: no product click left -> ctr 0, conversion null (no clickers).
    expect(at(tl, 73), product_ctr=0.0, conversion_rate=None)


def test_danmaku_per_min_scales_with_the_window():
    events = [view("A", 1), chat("A", 10), chat("A", 20), chat("A", 30)]
    tl = finals(events, until=140, window=120)
    # W=120: 3 danmaku in (-60,60] -> 3 * 60/120 = 1.5 per minute.
    expect(at(tl, 60), danmaku_per_min=1.5)
    expect(at(tl, 129), danmaku_per_min=1.5)  # (9,129]
    expect(at(tl, 130), danmaku_per_min=1.0)  # (10,130]: 2 left


# ---- conversion, orders, GMV ----

def test_conversion_rate_is_clickers_who_paid_in_the_window():
    events = [view(u, 1) for u in "ABCDE"] + [
        click("A", 10, "product"), click("B", 12, "product"), click("C", 14, "product"),
        order("A", 20, "o1", 10.0),
        order("B", 22, "o2", 20.0, status="created"),  # created is not paid
        order("D", 25, "o3", 30.0),  # paid, but D never clicked a product
        order("E", 35, "o5", 5.0), click("E", 40, "product"),  # paid before clicking, same window
        order("C", 100, "o4", 40.0),  # C pays long after the window of the click
    ]
    tl = finals(events, until=110)
    # t=60, window (0,60]: clickers A, B, C, E; of them A and E paid in the window -> 2/4.
    expect(at(tl, 60), conversion_rate=2 / 4, product_ctr=4 / 5)
    # t=73, window (13,73]: clickers C (14), E (40); E paid at 35 -> 1/2.
    expect(at(tl, 73), conversion_rate=1 / 2)
    # t=100, window (40,100]: no product click -> null, although C pays at 100.
    expect(at(tl, 100), conversion_rate=None, orders_per_min=1.0, gmv=40.0)


def test_orders_gmv_duplicates_and_refunds():
    events = [
        view("A", 1), view("B", 1),
        order("A", 10, "o1", 100.0),
        order("B", 15, "o2", 50.5, status="created"), order("B", 20, "o2", 50.5),
        order("A", 30, "o1", 999.0),  # duplicate paid o1: does nothing
        # The rule: GMV counts paid orders; a refund does not subtract from GMV (nor from orders).
        order("B", 40, "o2", 50.5, status="refunded"),
        order("A", 45, "o3", 999.0, status="created"),  # never paid: not counted
        order("B", 50, "o4", 7.0, status="refunded"),  # refunded without a paid status: nothing
        order("A", 80, "o1", 100.0),  # duplicate again, in a later window
    ]
    tl = finals(events, until=100)
    # t=60, window (0,60]: paid o1 (100) and o2 (50.5) -> 2 per minute, gmv 150.5;
    # viewers 2 -> uv_value 75.25; entries 2 (enter at 1) -> gpm 150.5 * 1000 / 2 = 75250.
    expect(at(tl, 60), orders_per_min=2.0, gmv=150.5, gmv_total=150.5, uv_value=75.25, gpm=75250.0,
           orders_total=2)
    # t=75, window (15,75]: o2 (paid at 20) only; entries 0 -> gpm null; uv 50.5/2.
    expect(at(tl, 75), orders_per_min=1.0, gmv=50.5, gmv_total=150.5, uv_value=25.25, gpm=None)
    # t=100, window (40,100]: the duplicate at 80 adds nothing; viewers A, B until 91 -> uv 0/2.
    expect(at(tl, 100), orders_per_min=0.0, gmv=0.0, gmv_total=150.5, uv_value=0.0, orders_total=2)


def test_orders_per_min_scales_with_the_window():
    events = [order("A", 10, "o1", 1.0), order("A", 20, "o2", 2.0), order("A", 30, "o3", 3.0)]
    tl = finals(events, until=30, window=120)
    expect(at(tl, 30), orders_per_min=1.5, gmv=6.0)  # 3 * 60/120


# ---- gmv_total and shows ----

def test_gmv_total_restarts_with_a_show_start_after_an_end():
    events = [show(0, "start", "s1"), view("A", 1), order("A", 10, "o1", 100.0), show(20, "end"),
              show(100, "start", "s2"), view("A", 101), order("A", 110, "o2", 30.0)]
    tl = finals(events, until=110)
    expect(at(tl, 15), gmv_total=100.0)
    assert tl[15]["show"]["id"] == "s1"
    # The second show began at 100: only o2 counts in its total; the window (50,110] has o2 only.
    expect(at(tl, 105), gmv_total=0.0)
    expect(at(tl, 110), gmv_total=30.0, gmv=30.0)
    assert tl[110]["show"]["id"] == "s2"


def test_gmv_total_restarts_with_a_start_during_a_show():
    events = [show(0, "start", "s1"), order("A", 10, "o1", 100.0), show(50, "start", "s2"),
              order("A", 55, "o2", 1.0)]
    tl = finals(events, until=55)
    expect(at(tl, 49), gmv_total=100.0)
    expect(at(tl, 55), gmv_total=1.0, gmv=101.0)  # window (-5,55] still holds o1


def test_an_event_after_a_show_end_begins_a_new_show():
    events = [show(0, "start", "s1"), order("A", 10, "o1", 100.0), show(20, "end"), order("A", 30, "o2", 5.0)]
    tl = finals(events, until=30)
    # s1 ended at 20; o2 at 30 belongs to the next show -> gmv_total 5; the window (−30,30] has both.
    expect(at(tl, 30), gmv_total=5.0, gmv=105.0)


def test_gmv_total_without_show_events_follows_the_ten_minute_idle_rule():
    events = [order("A", 0, "o1", 100.0), order("A", 600, "o2", 50.0), order("A", 1201, "o3", 7.0)]
    tl = finals(events, until=1201)
    # The show began at the room's first event (0). 600 s without events is not more than 10
    # minutes: o2 is in the same show. 601 s after o2, o3 begins a new show.
    expect(at(tl, 0), gmv_total=100.0)
    expect(at(tl, 600), gmv_total=150.0, gmv=50.0)
    expect(at(tl, 1201), gmv_total=7.0, gmv=7.0)


# ---- stream health and CDNs ----

def test_stall_latency_and_errors_room_and_per_cdn():
    events = [view(u, 1) for u in "ABC"] + [
        beacon("A", 10, "cdn-a", play_ms=9000, stall_ms=1000, stall_count=2, latency_ms=100),
        beacon("B", 20, "cdn-a", play_ms=8000, latency_ms=200, error="ERR_CDN_5XX"),
        beacon("C", 30, "cdn-b", play_ms=5000, stall_ms=5000, stall_count=3, latency_ms=300),
        beacon("C", 40, "cdn-b", play_ms=10000),  # no latency reported
        beacon("A", 50, "cdn-a", play_ms=2000, latency_ms=1000),
    ]
    tl = finals(events, until=115)
    # t=60, window (0,60], all five beacons:
    #   stall 6000 / (play 34000 + stall 6000) = 0.15; stalls 5 over 40000 ms = 2/3 min -> 7.5/min;
    #   latencies [100,200,300,1000]: p50 rank ceil(.5*4)=2 -> 200, p95 rank ceil(.95*4)=4 -> 1000;
    #   errors 1/5.
    expect(at(tl, 60), stall_ratio=0.15, stalls_per_min=7.5, latency_p50_ms=200, latency_p95_ms=1000,
           error_rate=0.2)
    cdn = tl[60]["cdn"]
    assert set(cdn) == {"cdn-a", "cdn-b"}
    for reading in cdn.values():
        assert set(reading) == set(CDN_METRIC_NAMES)
    # cdn-a: A, B; stall 1000/20000; latencies [100,200,1000] p95 rank ceil(2.85)=3 -> 1000; 1/3 errors.
    expect(cdn["cdn-a"], viewers=2, stall_ratio=0.05, latency_p95_ms=1000, error_rate=1 / 3)
    # cdn-b: C; stall 5000/20000; latencies [300]; no errors -> 0 (not null).
    expect(cdn["cdn-b"], viewers=1, stall_ratio=0.25, latency_p95_ms=300, error_rate=0.0)
    # t=71, window (11,71]: beacons at 20, 30, 40, 50. stall 5000 / 30000; 3 stalls in 0.5 min -> 6;
    #   latencies [200,300,1000]: p50 rank 2 -> 300, p95 rank 3 -> 1000; errors 1/4.
    expect(at(tl, 71), stall_ratio=5000 / 30000, stalls_per_min=6.0, latency_p50_ms=300,
           latency_p95_ms=1000, error_rate=0.25)
    # cdn-a: B, A; no stall -> 0; [200,1000] p95 rank 2 -> 1000; 1/2 errors.
    expect(tl[71]["cdn"]["cdn-a"], viewers=2, stall_ratio=0.0, latency_p95_ms=1000, error_rate=0.5)
    # t=101, window (41,101]: only the beacon at 50 (cdn-a); cdn-b has no beacon in the window.
    assert set(tl[101]["cdn"]) == {"cdn-a"}
    expect(at(tl, 101), stall_ratio=0.0, stalls_per_min=0.0, latency_p50_ms=1000, error_rate=0.0)
    # t=115, window (55,115]: no beacon: every health metric is null, no CDN listed.
    expect(at(tl, 115), stall_ratio=None, stalls_per_min=None, latency_p50_ms=None, latency_p95_ms=None,
           error_rate=None)
    assert tl[115]["cdn"] == {}


def test_latency_percentiles_nearest_rank_on_twenty_values():
    latencies = [float(v) for v in range(100, 2100, 100)]  # 100, 200, ..., 2000
    events = [beacon(f"u{i}", 10, "cdn-a", play_ms=1000, latency_ms=v) for i, v in enumerate(latencies)]
    tl = finals(events, until=10)
    # n=20: p50 rank ceil(10)=10 -> 1000; p95 rank ceil(19)=19 -> 1900 (not the max, 2000).
    expect(at(tl, 10), latency_p50_ms=1000, latency_p95_ms=1900)
    expect(tl[10]["cdn"]["cdn-a"], latency_p95_ms=1900, viewers=20)


# ---- empty denominators ----

def test_every_ratio_with_an_empty_denominator_is_null():
    tl = finals([chat("U", 10)], until=10)
    # No viewer, no entry, no presence ended, no click, no beacon: only counts are numbers.
    assert at(tl, 10) == {
        "online": 0, "entries": 0, "leaves": 0, "viewers": 0,
        "retention_30s": None, "retention_60s": None, "retention_180s": None,
        "avg_watch_seconds": None, "interaction_rate": None, "danmaku_per_min": 1.0,
        "product_ctr": None, "conversion_rate": None, "orders_per_min": 0.0, "gmv": 0.0,
        "gmv_total": 0.0, "uv_value": None, "gpm": None, "stall_ratio": None, "stalls_per_min": None,
        "latency_p50_ms": None, "latency_p95_ms": None, "error_rate": None, "orders_total": 0,
        "startup_p50_ms": None, "fast_start_ratio": None, "slow_start_ratio": None,
        "startups": 0, "stall_ratio_10s": None, "latency_p95_ms_10s": None, "error_rate_10s": None, "fast_start_ratio_10s": None,
        "startups_10s": 0,
    }
    assert tl[10]["cdn"] == {}


def test_a_beacon_with_no_play_and_no_stall_gives_null_stall_ratios():
    tl = finals([beacon("A", 10, "cdn-a", play_ms=0)], until=10)
    # play + stall = 0 -> stall_ratio and stalls_per_min null; one beacon, no error -> 0; no latency.
    expect(at(tl, 10), stall_ratio=None, stalls_per_min=None, error_rate=0.0, latency_p50_ms=None)
    expect(tl[10]["cdn"]["cdn-a"], viewers=1, stall_ratio=None, latency_p95_ms=None, error_rate=0.0)


def test_rooms_are_independent():
    events = [view("A", 1, room="r1"), view("A", 2, room="r2"), view("B", 3, room="r2"),
              order("A", 4, "o1", 10.0, room="r1"), order("A", 5, "o1", 20.0, room="r2")]
    engine = Engine(ADMIT_ALL)
    assert engine.ingest(events) == []
    tl = {(s["room_id"], s["ts"] - T0): s["metrics"] for s in engine.finish()}
    # The same user and the same order id in two rooms are two viewers and two orders.
    expect(tl[("r1", 5)], online=1, viewers=1, gmv=10.0)
    expect(tl[("r2", 5)], online=2, viewers=2, gmv=20.0)
