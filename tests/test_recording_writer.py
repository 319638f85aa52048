"""The recording written from a thread of its own: the worker's loop never waits on SQLite or
its fsync, nothing queued is lost on a clean stop, and the result is what writing in place gives."""

import logging

from livemon.recording.store import RecordingStore
from livemon.recording.writer import RecordingWriter

from tests.fixtures.browser import SyntheticShow


def _feed(recorder, show, seconds):
    for i in range(seconds):
        recorder.write(snapshots=show.step(show.start + i)["final"])
    recorder.write(records=show.outage("room-a", "cdn-a", show.start + 40))
    recorder.close_idle(show.start + 10_000)


def test_the_thread_records_what_writing_in_place_records(tmp_path):
    in_place = RecordingStore(tmp_path / "in-place")
    _feed(in_place, SyntheticShow(rooms=("room-a",)), 60)
    writer = RecordingWriter(RecordingStore(tmp_path / "thread"))
    _feed(writer, SyntheticShow(rooms=("room-a",)), 60)
    writer.flush()
    assert writer.pending == 0 and writer.failed == 0
    assert writer.shows() == in_place.shows()  # reads go to the store
    [show] = in_place.shows()
    assert show["instants"] == 60 and show["alerts"] == 1 and show["ended"] is not None
    assert writer.timeline(show["key"]) == in_place.timeline(show["key"])


def test_a_write_returns_while_the_store_is_busy_and_lands_once_it_is_free(tmp_path):
    store = RecordingStore(tmp_path)
    writer = RecordingWriter(store)
    show = SyntheticShow(rooms=("room-a",))
    with store._lock:  # a long transaction (a slow fsync) holds the store
        # In place, this write would wait for the lock: here (same thread) it would never return.
        writer.write(snapshots=show.step(show.start)["final"])
        writer.write(snapshots=show.step(show.start + 1)["final"])
        assert writer.pending >= 1
    writer.flush()
    [listed] = store.shows()
    assert listed["instants"] == 2


def test_a_failing_write_is_logged_and_the_next_ones_still_land(tmp_path, caplog):
    writer = RecordingWriter(RecordingStore(tmp_path))
    show = SyntheticShow(rooms=("room-a",))
    with caplog.at_level(logging.ERROR, logger="livemon.recording.writer"):
        writer.write(snapshots=[{"no": "room id"}])
        writer.write(snapshots=show.step(show.start)["final"])
        writer.flush()
    assert writer.failed == 1 and "recording: write failed" in caplog.text
    assert writer.shows()[0]["instants"] == 1


def test_closing_applies_what_is_queued_and_later_writes_land_directly(tmp_path):
    store = RecordingStore(tmp_path)
    writer = RecordingWriter(store)
    show = SyntheticShow(rooms=("room-a",))
    for i in range(30):
        writer.write(snapshots=show.step(show.start + i)["final"])
    writer.close_writer()
    assert store.shows()[0]["instants"] == 30
    writer.write(snapshots=show.step(show.start + 30)["final"])  # a last step fed while stopping
    assert store.shows()[0]["instants"] == 31
