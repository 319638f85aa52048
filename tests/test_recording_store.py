"""The recording store: what a show's review depends on must survive restarts and stay bounded."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import requests
from livemon.recording.store import RecordingStore
from livemon.web.hub import RECORD_AFTER, ControlRoomHub

from tests.fixtures.browser import SyntheticShow


def record(store, show, seconds, start_offset=0):
    for i in range(start_offset, start_offset + seconds):
        store.write(snapshots=show.step(show.start + i)["final"])


def test_timeline_survives_reopen(tmp_path):
    show = SyntheticShow(rooms=("room-a",))
    store = RecordingStore(tmp_path)
    record(store, show, 120)
    store.write(records=show.outage("room-a", "cdn-a", show.start + 100))
    store.close()

    again = RecordingStore(tmp_path)
    [listed] = again.shows()
    assert listed["key"] == "room-a.evening" and listed["instants"] == 120
    assert listed["alerts"] == 1 and listed["failovers"] == 1
    timeline = again.timeline("room-a.evening")
    assert [s["ts"] for s in timeline] == [show.start + i - 5 for i in range(120)]
    assert set(timeline[0]["cdn"]) == {"cdn-a", "cdn-b"} and "online" in timeline[0]["metrics"]


def test_a_recording_of_the_earlier_layout_is_read_and_written_on(tmp_path):
    """Snapshots were a WITHOUT ROWID table keyed by (room, instant), now a rowid table (a step's
    rows appended, not spread over the key's pages); a recording made before reads and records
    on, an instant redelivered still stored once."""
    import sqlite3

    from livemon.recording.store import DB_NAME, SCHEMA
    earlier = SCHEMA.replace("""    UNIQUE (room_id, ts)
);""", """    PRIMARY KEY (room_id, ts)
) WITHOUT ROWID;""")
    assert earlier != SCHEMA
    with sqlite3.connect(tmp_path / DB_NAME) as db:
        db.executescript(earlier)
    show = SyntheticShow(rooms=("room-a",))
    store = RecordingStore(tmp_path)
    record(store, show, 30)
    record(store, show, 10, start_offset=25)
    [listed] = store.shows()
    assert listed["instants"] == 35
    assert [s["ts"] for s in store.timeline(listed["key"])] == [show.start + i - 5 for i in range(35)]
    assert "WITHOUT ROWID" in store._db.execute("SELECT sql FROM sqlite_master WHERE name='snapshots'").fetchone()[0]


def test_a_killed_writer_loses_no_committed_step(tmp_path):
    # A worker killed with SIGKILL right after a step was written: that step is on disk.
    code = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(os.getcwd())!r})
        from livemon.recording.store import RecordingStore
        from tests.fixtures.browser import SyntheticShow
        show = SyntheticShow(rooms=("room-k",))
        store = RecordingStore({str(tmp_path)!r})
        for i in range(50):
            store.write(snapshots=show.step(show.start + i)["final"])
        print("written", flush=True)
        import time; time.sleep(60)
    """)
    writer = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert writer.stdout.readline().strip() == "written"
    writer.send_signal(signal.SIGKILL)
    writer.wait(10)
    store = RecordingStore(tmp_path)
    assert len(store.timeline(store.find_show("room-k")["key"])) == 50


def test_redelivered_records_are_stored_once(tmp_path):
    show = SyntheticShow(rooms=("room-a",))
    store = RecordingStore(tmp_path)
    step = show.step(show.start + 10)
    alerts = show.outage("room-a", "cdn-a", show.start + 10)
    for _ in range(3):   # at-least-once delivery, or two workers recording the same topics
        store.write(snapshots=step["final"], records=alerts)
    [listed] = store.shows()
    assert listed["instants"] == 1 and listed["alerts"] == 1 and listed["failovers"] == 1


def test_shows_are_delimited_by_show_start_and_end(tmp_path):
    store = RecordingStore(tmp_path)
    first = SyntheticShow(rooms=("room-a",), start=1_700_000_000.0)
    record(store, first, 30)
    first.show_ids = False
    second = SyntheticShow(rooms=("room-a",), start=1_700_000_040.0)
    second.snapshot = lambda room, ts, base=second.snapshot: {**base(room, ts), "show": {"id": "late-night", "start": second.start, "title": "Late night <deals>"}}
    record(store, second, 30)
    shows = {s["key"]: s for s in store.shows()}
    assert set(shows) == {"room-a.evening", "room-a.late-night"}
    assert shows["room-a.evening"]["ended"] is not None      # a new show ends the previous one
    assert shows["room-a.late-night"]["title"] == "Late night <deals>"
    assert shows["room-a.late-night"]["ended"] is None


def test_without_show_events_ten_idle_minutes_start_a_new_show(tmp_path):
    store = RecordingStore(tmp_path)
    show = SyntheticShow(rooms=("room-a",), show_ids=False)
    record(store, show, 60)
    record(store, show, 60, start_offset=60 + 9 * 60)      # 9 silent minutes: still the same show
    assert len(store.shows()) == 1
    record(store, show, 60, start_offset=120 + 9 * 60 + 11 * 60)   # 11 silent minutes: a new one
    shows = store.shows()
    assert len(shows) == 2 and shows[1]["ended"] is not None and shows[0]["ended"] is None
    assert [s["instants"] for s in shows] == [60, 120]


def test_an_alert_before_the_first_final_snapshot_belongs_to_the_show(tmp_path):
    # Alerts run on live values, which lead the final snapshots by the lateness.
    store = RecordingStore(tmp_path)
    show = SyntheticShow(rooms=("room-a",))
    store.write(records=show.outage("room-a", "cdn-a", show.start + 1))
    record(store, show, 20)
    [listed] = store.shows()
    assert listed["key"] == "room-a.evening" and listed["alerts"] == 1


def test_retention_drops_old_shows_only(tmp_path):
    store = RecordingStore(tmp_path, retention_days=7)
    old, new = SyntheticShow(rooms=("room-old",)), SyntheticShow(rooms=("room-new",))
    day = 86400
    for i in range(10):
        store.write(snapshots=old.step(old.start + i)["final"], records=[], wall=1_800_000_000 - 8 * day)
        store.write(snapshots=new.step(new.start + i)["final"], wall=1_800_000_000 - 1 * day)
    store.write(records=old.outage("room-old", "cdn-a", old.start + 5), wall=1_800_000_000 - 8 * day)
    assert store.purge(wall=1_800_000_000) == 1
    store.close()
    store = RecordingStore(tmp_path, retention_days=7)    # and the space is really freed of it
    assert [s["room_id"] for s in store.shows()] == ["room-new"]
    assert store.timeline("room-old.evening") == [] and store.records("room-old.evening") == []


def test_find_show_by_key_room_or_prefix(tmp_path):
    store = RecordingStore(tmp_path)
    record(store, SyntheticShow(rooms=("room-a", "room-b")), 5)
    assert store.find_show("room-a.evening")["room_id"] == "room-a"
    assert store.find_show("room-b")["key"] == "room-b.evening"
    assert store.find_show("room-") is None        # ambiguous
    assert store.find_show("nothing") is None


def many_shows(store, n):
    """n recorded shows, written straight into the file (fast), newest start = highest i."""
    with store._db:
        store._db.executemany("INSERT INTO shows VALUES (?,?,?,?,?,?,NULL,?)",
                              [(f"room-{i:05d}.s", f"room-{i:05d}", "s", None, 1_700_000_000.0 + i,
                                1_700_000_000.0 + i, 1_800_000_000.0) for i in range(n)])


def test_a_show_is_found_through_an_index_among_many(tmp_path):
    store = RecordingStore(tmp_path)
    many_shows(store, 20_000)
    statements = []
    store._db.set_trace_callback(statements.append)
    for name in ("room-19999.s", "room-00007", "room-0001", "no-such-show", "room-"):
        statements.clear()
        started = time.perf_counter()
        found = store.find_show(name)
        assert time.perf_counter() - started < 0.2, name
        assert (found or {}).get("key") == {"room-19999.s": "room-19999.s", "room-00007": "room-00007.s"}.get(name)
        for sql in statements:
            plan = " ".join(row[3] for row in store._db.execute("EXPLAIN QUERY PLAN " + sql))
            assert "SCAN" not in plan and "SEARCH s USING" in plan, (name, plan)


def test_shows_are_listed_a_page_at_a_time(tmp_path):
    store = RecordingStore(tmp_path)
    many_shows(store, 250)
    first = store.shows_page(100)
    assert first["total"] == 250 and len(first["shows"]) == 100
    assert first["shows"][0]["key"] == "room-00249.s" and first["shows"][-1]["key"] == "room-00150.s"
    last = store.shows_page(100, 200)
    assert [s["key"] for s in last["shows"]] == [f"room-{i:05d}.s" for i in range(49, -1, -1)]
    assert store.shows_page(100, 300) == {"shows": [], "total": 250}


def test_the_shows_api_is_paged(control_room):
    show = SyntheticShow()
    for i in range(3):
        control_room.feed_step(show.step(show.start + 10 + i))
    base = control_room.url + "/api/shows"
    everything = requests.get(base, timeout=5).json()
    assert everything["total"] == 4 and everything["limit"] == 100 and len(everything["shows"]) == 4
    page = requests.get(base + "?limit=2&offset=1", timeout=5).json()
    assert page["total"] == 4 and [s["key"] for s in page["shows"]] == [s["key"] for s in everything["shows"][1:3]]


def quiet_room(room_id, ts, viewers, show=None):
    snap = {"ts": ts, "room_id": room_id, "metrics": {"online": viewers, "viewers": viewers}, "cdn": {}}
    if show:
        snap["show"] = show
    return snap


def test_rooms_without_a_show_are_recorded_from_their_start_once_they_have_an_audience(tmp_path):
    store = RecordingStore(tmp_path)
    hub = ControlRoomHub(recorder=store)
    start = 1_700_000_000.0
    for i in range(RECORD_AFTER + 20):
        ts = start + i
        finals = [quiet_room(f"junk-{i}-{n}", ts, 1, {"id": f"junk-{i}-{n}-{int(ts)}", "start": ts})
                  for n in range(50)]                                  # one-off ids: one viewer, engine show
        finals.append(quiet_room("lonely", ts, 1))                     # a single viewer the whole time
        finals.append(quiet_room("small", ts, 3, {"id": f"small-{int(start)}", "start": start}))
        finals.append(quiet_room("launch", ts, 0, {"id": "launch-night", "start": start}))   # a producer show
        finals.append(quiet_room("titled", ts, 0, {"id": f"titled-{int(start)}", "start": start, "title": "Sale"}))
        hub.feed_step({"worker": "w", "now": ts + 5, "live": [], "final": finals})
    shows = {s["room_id"]: s for s in store.shows()}
    assert set(shows) == {"small", "launch", "titled"}
    assert shows["launch"]["instants"] == shows["titled"]["instants"] == RECORD_AFTER + 20   # from the first
    assert shows["small"]["instants"] == RECORD_AFTER + 20                # held back, then from the first
    # A restarted hub carries on with a show the recording holds open, from the first snapshot.
    again = ControlRoomHub(recorder=store)
    again.feed_step({"worker": "w", "now": start + 60, "live": [], "final": [quiet_room("small", start + 55, 1)]})
    assert {s["room_id"]: s for s in store.shows()}["small"]["instants"] == RECORD_AFTER + 21
