"""Event time (SPEC §3) on the engine: lateness, out-of-order arrival, live versus final snapshots,
and a silent room's live instant running on with the wall clock. Hand-computed; times are seconds
after T0, W = 60 s, lateness 5 s, presence timeout 90 s."""

import itertools

from livemon.engine import Engine, EngineConfig
from livemon.ingest.events import FUTURE, LATE

from tests.test_engine_metrics import ADMIT_ALL, ROOM, T0, at, beacon, chat, click, expect, order, show, view


def timeline(snapshots):
    return {s["ts"] - T0: s for s in snapshots if s["room_id"] == ROOM}


def test_events_older_than_the_watermark_are_rejected_late_and_not_counted():
    engine = Engine(ADMIT_ALL)
    a, b, c, d = view("A", 0), view("B", 100), view("C", 94.9), view("D", 95)
    # After B at 100 the watermark is 100 - 5 = 95: C (94.9) is late, D (95, not older) is not.
    assert engine.ingest([a, b, c, d]) == [(c, LATE)]
    tl = timeline(engine.finish(T0 + 100))
    # t=100, window (40,100]: A [0,90) timed out at 90; B and D present; C counted nowhere.
    expect(at(tl, 100), online=2, entries=2, leaves=1, viewers=3)
    expect(at(tl, 96), online=1, entries=1, viewers=2)  # (36,96]: D present; A until 90; B not yet


def test_late_events_of_every_kind_change_nothing():
    base = [view("A", 0), view("B", 1), click("A", 3, "product"), order("A", 4, "o1", 10.0),
            beacon("B", 5, "cdn-a", play_ms=1000, stall_ms=1000, latency_ms=50), view("A", 60, "heartbeat")]
    late = [view("C", 50), chat("A", 50), click("B", 50, "product"), order("B", 50, "o2", 99.0),
            order("A", 50, "o1", 1.0, status="paid"),
            beacon("B", 50, "cdn-b", play_ms=1, stall_ms=9, error="E"), view("A", 54, "leave")]
    clean, dirty = Engine(ADMIT_ALL), Engine(ADMIT_ALL)
    assert clean.ingest(base) == []
    assert dirty.ingest(base + late) == [(event, LATE) for event in late]  # watermark 60 - 5 = 55
    assert dirty.finish(T0 + 200) == clean.finish(T0 + 200)


def test_future_events_are_rejected_against_the_wall_clock():
    engine = Engine(EngineConfig(future_limit=300))
    wall = T0 + 10
    ok, ahead = view("A", 310), view("B", 310.5)
    assert engine.ingest([ok, ahead], wall=wall) == [(ahead, FUTURE)]  # more than wall + 300


# The events of one room in event-time order; the arrival order below shuffles them within 5 s.
IN_ORDER = [
    view("A", 0), view("A", 3, "heartbeat"),  # A: [0, 93)
    view("C", 10), view("C", 12, "leave"),  # C: [10, 12)
    view("B", 20), chat("B", 21), click("B", 22, "product"), order("B", 23, "o1", 9.5),
    beacon("B", 24, "cdn-a", play_ms=4000, stall_ms=1000, stall_count=1, latency_ms=800),
    view("B", 107, "heartbeat"), view("B", 112, "heartbeat"),  # B: [20, 202)
]
ARRIVAL = [
    view("A", 3, "heartbeat"), view("A", 0),  # a heartbeat before its enter
    view("C", 12, "leave"), view("C", 10),  # a leave before its enter
    view("B", 20), order("B", 23, "o1", 9.5), click("B", 22, "product"),
    beacon("B", 24, "cdn-a", play_ms=4000, stall_ms=1000, stall_count=1, latency_ms=800), chat("B", 21),
    view("B", 112, "heartbeat"),  # 112 >= 20 + 90 would end B at 110 if taken before 107
    view("B", 107, "heartbeat"),
]


def test_out_of_order_within_the_lateness_gives_the_in_order_result():
    assert sorted(ARRIVAL, key=lambda e: e.ts) == IN_ORDER
    in_order, shuffled = Engine(ADMIT_ALL), Engine(ADMIT_ALL)
    assert in_order.ingest(IN_ORDER) == []
    assert shuffled.ingest(ARRIVAL) == []
    want = in_order.finish(T0 + 260)
    assert shuffled.finish(T0 + 260) == want
    tl = timeline(want)
    # Hand-computed: A [0,93) (the heartbeat at 3 counts), C [10,12), B [20,202).
    expect(at(tl, 12), online=1, leaves=1, avg_watch_seconds=2.0)
    expect(at(tl, 92), online=2)
    expect(at(tl, 93), online=1, leaves=1, avg_watch_seconds=93.0)
    expect(at(tl, 111), online=1, leaves=1)  # window (51,111]: B still present, A's end at 93
    expect(at(tl, 201), online=1)
    expect(at(tl, 202), online=0, leaves=1, avg_watch_seconds=182.0)
    expect(at(tl, 30), conversion_rate=1.0, gmv=9.5, danmaku_per_min=1.0, stall_ratio=0.2)


def test_out_of_order_with_a_worker_advancing_between_arrivals():
    # As a worker does: the final instants are taken every step while events keep arriving.
    worker = Engine(ADMIT_ALL)
    finals = []
    for event in ARRIVAL:
        assert worker.ingest([event]) == []
        finals += worker.advance()
        worker.live_snapshots()  # reading live values must not disturb the result
    finals += worker.finish(T0 + 260)
    reference = Engine(ADMIT_ALL)
    reference.ingest(IN_ORDER)
    assert finals == reference.finish(T0 + 260)


def test_any_permutation_within_the_lateness_gives_the_same_timeline():
    events = [view("A", 0), view("B", 20)]
    tail = [view("D", 107), view("B", 108, "heartbeat"), view("A", 109), view("D", 110, "leave"),
            view("A", 111, "leave"), view("B", 112, "heartbeat")]
    want = None
    for arrival in itertools.permutations(tail):  # 720 arrival orders, all within the 5 s lateness
        engine = Engine(ADMIT_ALL)
        assert engine.ingest(events + list(arrival)) == []
        got = engine.finish(T0 + 250)
        want = want or got
        assert got == want, arrival
    tl = timeline(want)
    # In ts order: A [0,90) by timeout, then [109,111) (wrong if its leave is taken before its
    # enter); B [20,202) (wrong if the heartbeat at 112, past B's timeout at 110, is taken before
    # the one at 108); D [107,110).
    # t=110, window (50,110]: present A, B; started A 109, D 107; ended A 90, D 110; viewers A B D.
    expect(at(tl, 110), online=2, entries=2, leaves=2, viewers=3)
    # t=111: A's second presence ended: 3 ends of 90 + 3 + 2 seconds.
    expect(at(tl, 111), online=1, leaves=3, viewers=3, avg_watch_seconds=95 / 3)
    expect(at(tl, 201), online=1)
    expect(at(tl, 202), online=0)


def test_a_leave_before_its_enter_survives_the_forgetting_of_the_viewers_old_presence():
    # A's first presence timed out at 90, so A is forgotten from instant 151 on. Its next leave
    # (158.8) arrives before its enter (158.3); when the leave comes, a worker's advance makes
    # instant 151 final. The leave must still end the presence the enter then starts.
    events = [view("A", 0), view("B", 20), view("B", 100, "heartbeat"), view("B", 150, "heartbeat")]
    worker = Engine(ADMIT_ALL)
    finals = []
    for event in events + [view("A", 158.8, "leave"), view("A", 158.3), view("B", 170, "heartbeat")]:
        assert worker.ingest([event]) == []
        finals += worker.advance()
    finals += worker.finish(T0 + 250)
    reference = Engine(ADMIT_ALL)
    reference.ingest(events + [view("A", 158.3), view("A", 158.8, "leave"), view("B", 170, "heartbeat")])
    assert finals == reference.finish(T0 + 250)
    expect(at(timeline(finals), 160), online=1)  # B only: A was present [158.3, 158.8)


def test_an_enter_between_a_timeout_and_a_later_enter_leaves_the_final_timeout_alone():
    # A's presence times out at 90. A's enter at 99 comes first and ends it there; a worker's
    # advance then makes instant 90 final. A's enter at 96 (within the lateness of 99) comes
    # last: it is put before the enter at 99, but the timeout, final, is not undone with it.
    worker = Engine(ADMIT_ALL)
    finals = []
    for event in (view("A", 0), view("A", 99), view("A", 96)):
        assert worker.ingest([event]) == []
        finals += worker.advance()
    finals += worker.finish(T0 + 250)
    reference = Engine(ADMIT_ALL)
    reference.ingest([view("A", 0), view("A", 96), view("A", 99)])
    assert finals == reference.finish(T0 + 250)
    line = timeline(finals)
    expect(at(line, 92), online=0, leaves=1)
    expect(at(line, 97), online=1, entries=1)


def test_live_snapshot_equals_the_final_one_once_all_events_are_in():
    engine = Engine(ADMIT_ALL)
    engine.ingest(IN_ORDER)
    live = engine.live_snapshots()[ROOM]
    assert live["ts"] == T0 + 112  # the newest instant the room's events reached
    finals = {s["ts"]: s for s in engine.finish()}
    assert live["metrics"] == finals[T0 + 112]["metrics"]
    assert live["cdn"] == finals[T0 + 112]["cdn"]
    expect(live["metrics"], online=1, viewers=2, leaves=1)


def test_a_live_snapshot_shown_again_is_the_same_until_an_event_of_its_instant_comes():
    # A room whose live instant stays put costs nothing to show again; an event of that instant
    # (within the lateness) makes it again, with the event in.
    engine = Engine(ADMIT_ALL)
    wall = T0 + 10.5
    engine.ingest([view("A", 0), view("B", 10)], wall=wall)
    first = engine.live_snapshots(wall=wall)[ROOM]
    assert engine.live_snapshots(wall=wall + 0.4)[ROOM] is first
    engine.ingest([order("A", 9, "o1", 5.0)], wall=wall + 0.6)
    again = engine.live_snapshots(wall=wall + 0.8)[ROOM]
    assert again is not first and again["ts"] == first["ts"] == T0 + 10
    expect(first["metrics"], gmv=0.0, online=2)
    expect(again["metrics"], gmv=5.0, online=2)
    # Its lean final (read back from what was kept of it): the same figures, without the breakdowns.
    lean = {s["ts"]: s for s in engine.advance(wall=wall + 20, lean=True)}[T0 + 10]
    assert lean == {part: value for part, value in again.items() if part not in ("by", "products")}


def test_a_silent_rooms_live_instant_runs_on_with_the_wall_clock():
    engine = Engine(ADMIT_ALL)
    wall = T0 + 10.5  # the driver's clock when A's events arrive
    assert engine.ingest([view("A", 0), view("A", 10, "heartbeat")], wall=wall) == []  # A until 100
    live = engine.live_snapshots(wall=wall)[ROOM]
    assert live["ts"] == T0 + 10 and live["metrics"]["online"] == 1
    # 50 s of silence: the live instant is the clock (10 + 50) less the lateness.
    live = engine.live_snapshots(wall=wall + 50)[ROOM]
    assert live["ts"] == T0 + 55
    expect(live["metrics"], online=1, leaves=0)
    # 96 s of silence: the instant is 101 and A's presence timed out at 100.
    live = engine.live_snapshots(wall=wall + 96)[ROOM]
    assert live["ts"] == T0 + 101
    expect(live["metrics"], online=0, leaves=1, avg_watch_seconds=100.0)
    # The record follows: instants before the watermark 101 - 5 = 96 are final.
    finals = timeline(engine.advance(wall=wall + 96))
    assert max(finals) == 95
    assert all(s["metrics"]["online"] == 1 for s in finals.values())
    # A heartbeat that arrives now: at 90 it is late; at 97 it is in time and keeps A present.
    late, in_time = view("A", 90, "heartbeat"), view("A", 97, "heartbeat")
    assert engine.ingest([late, in_time], wall=wall + 96) == [(late, LATE)]
    live = engine.live_snapshots(wall=wall + 96)[ROOM]
    assert live["ts"] == T0 + 101
    expect(live["metrics"], online=1, leaves=0)
    finals = timeline(engine.finish(T0 + 190))
    expect(at(finals, 186), online=1)
    expect(at(finals, 187), online=0, leaves=1, avg_watch_seconds=187.0)


def test_the_provisional_value_differs_only_by_events_within_the_lateness():
    engine = Engine(ADMIT_ALL)
    engine.ingest([view("A", 0), order("A", 10, "o1", 5.0)])
    before = engine.live_snapshots()[ROOM]
    assert before["ts"] == T0 + 10
    expect(before["metrics"], gmv=5.0, online=1)
    engine.ingest([order("A", 8, "o2", 7.0)])  # 2 s late: within the lateness, it still counts
    after = engine.live_snapshots()[ROOM]
    expect(after["metrics"], gmv=12.0, orders_per_min=2.0)
    finals = {s["ts"]: s for s in engine.finish()}
    assert finals[T0 + 10]["metrics"] == after["metrics"]


def test_an_event_arriving_after_the_wall_ran_the_clock_on_does_not_turn_it_back():
    # Bug found by this test: an event newer than the last one but older than the wall-run clock set
    # the clock back to its ts; the watermarks fell behind instants already final, and an event
    # for one of those was taken into a closed window (danmaku_per_min went to -1 a minute later).
    engine = Engine(ADMIT_ALL)
    assert engine.ingest([view("A", 0)], wall=T0 + 0.5) == []
    final = timeline(engine.advance(wall=T0 + 100.5))  # clock 100: final up to 100 - 10 -> 89
    assert max(final) == 89
    assert engine.ingest([view("B", 97, room="r2")], wall=T0 + 100.5) == []  # in time for r2
    assert engine.live_snapshots(wall=T0 + 100.5)[ROOM]["ts"] == T0 + 95  # not back to 97 - 5
    stale = chat("A", 88)
    assert engine.ingest([stale], wall=T0 + 100.5) == [(stale, LATE)]
    later = engine.advance(wall=T0 + 200.5)
    assert all(s["metrics"]["danmaku_per_min"] == 0 for s in later)


def test_after_a_checkpoint_restore_events_of_final_instants_are_late():
    # Same family: a restored room had instants final beyond its own newest ts - lateness.
    engine = Engine(ADMIT_ALL)
    engine.ingest([view("A", 0)], wall=T0 + 0.5)
    engine.advance(wall=T0 + 60.5)  # final up to 49
    restored = Engine(ADMIT_ALL)
    restored.import_rooms(engine.export_rooms([ROOM]))
    stale, fresh = chat("A", 20), chat("A", 55)
    assert restored.ingest([stale, fresh], wall=T0 + 61) == [(stale, LATE)]
    tl = timeline(restored.advance(wall=T0 + 200))
    expect(at(tl, 60), danmaku_per_min=1.0, online=1)
    assert all(s["metrics"]["danmaku_per_min"] >= 0 for s in tl.values())


def test_an_order_arriving_after_a_later_event_at_show_start_counts_in_gmv_total():
    # Bug found by these tests: the show began at the first event to *arrive* (a danmaku at 3), so
    # a paid order at 1 arriving 2 s later fell before the show and never entered gmv_total.
    engine = Engine(ADMIT_ALL)
    assert engine.ingest([chat("A", 3), order("A", 1, "o1", 10.0)]) == []
    tl = timeline(engine.finish())
    # In event time the room's first event is the order at 1: the show begins there.
    for t in (1, 2, 3):
        expect(at(tl, t), gmv=10.0, gmv_total=10.0, orders_total=1)
        assert tl[t]["show"]["start"] == T0 + 1


def test_a_show_start_marker_arriving_after_the_first_viewers_names_and_starts_the_show():
    engine = Engine(ADMIT_ALL)
    assert engine.ingest([view("A", 1), order("A", 2, "o1", 10.0), show(0, "start", "s1")]) == []
    tl = timeline(engine.finish())
    assert tl[0]["show"]["id"] == "s1" and tl[0]["show"]["start"] == T0
    expect(at(tl, 2), gmv_total=10.0)
    assert tl[2]["show"]["id"] == "s1"


def test_a_caught_up_backlog_runs_on_from_its_own_time_not_from_where_the_wall_clock_puts_it():
    # A worker reads a backlog recorded long ago (here: a day before the wall clock). While it
    # catches up, a room's clock moves with the stream's time; once the backlog is read, the room
    # runs on with the wall clock from where it was, not jumped to the wall clock (which would
    # make a day of empty instants final, one by one, in the next step).
    engine = Engine(ADMIT_ALL)
    wall = T0 + 86_400.0
    engine.ingest([view("u1", 0.0, "enter")], wall=T0 + 1.0)  # the room, tracked before the backlog
    engine.ingest([view("u1", 10.0, "heartbeat"), chat("u1", 12.0)], wall=wall, catching_up=True)
    room = engine.rooms[ROOM]
    engine.end_catch_up(wall)
    lateness = engine.config.lateness
    # The room's clock: its newest ts (12 s), run on by the wall-clock time since (see `watermark`).
    assert engine.watermark(room, wall) == T0 + 12.0 - lateness
    assert engine.watermark(room, wall + 20.0) == T0 + 12.0 + 20.0 - 2 * lateness
    engine.end_catch_up(wall + 20.0)  # once only: nothing to move now
    assert engine.watermark(room, wall + 20.0) == T0 + 12.0 + 20.0 - 2 * lateness
    finals = engine.advance(wall + 20.0)
    assert finals and finals[-1]["ts"] == T0 + 21.0  # the instants before the watermark, not a day of them
