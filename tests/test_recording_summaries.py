"""Show summaries (SPEC §10) in the recording and on the web API, without a broker: the store keeps
one per room and show start (the latest wins) with the recorded show and gives it back with the
show's alerts and failovers as `incidents`; the hub records the workers' `summaries` records and
keeps the latest `provisional` one per room; the worker cuts its records by size.
(`test_worker_summaries.py` runs the whole path with real workers and a SIGKILL.)"""

import json

import orjson
import pytest
import requests

from livemon.agents.runtime import MAX_SUMMARY_BYTES, SUMMARY_RECORD_BYTES, summary_records
from livemon.ingest.events import encode
from livemon.recording.store import RecordingStore
from livemon.replay import replay_lines
from livemon.simulator import generate
from tests.fixtures.browser import SyntheticShow

START = 1_700_000_000.0


@pytest.fixture(scope="module")
def engine_summary() -> dict:
    """A real summary: the engine's, of a short simulated show."""
    lines = [encode(event) for message in generate("normal", rooms=1, rate=60, duration=20, seed=4, start=START)
             for event in message.events]
    shows: list[dict] = []
    for _ in replay_lines(lines, shows=shows):
        pass
    [summary] = shows
    return summary


def as_room(summary: dict, room: str, show_id=None, start=START, **changes) -> dict:
    return {**summary, "room_id": room, "show_id": show_id, "start": start, **changes}


def test_store_keeps_one_summary_per_show_with_its_incidents(tmp_path, engine_summary):
    store = RecordingStore(tmp_path)
    show = SyntheticShow(rooms=("room-a",), start=START)
    store.write(snapshots=[show.snapshot("room-a", START + i) for i in range(1, 30)])
    [recorded] = store.shows()
    assert store.summary(recorded["key"]) is None  # not over yet
    outage = show.outage("room-a", "cdn-a", START + 20)
    store.write(records=outage + [{"kind": "incident", "id": 1, "room_id": "room-a", "ts": START + 21}])

    summary = as_room(engine_summary, "room-a", "evening")
    assert store.write_summary(summary) == recorded["key"]  # the recorded show of that room and start
    assert store.write_summary({**summary, "title": "again"}) == recorded["key"]  # the latest wins
    got = store.summary(recorded["key"])
    assert got.pop("incidents") == outage  # the alert and the failover, not the incident record
    assert got == {**summary, "title": "again"}
    assert store.shows()[0]["ended"] == summary["end"]  # over at its end

    # Another room's show the store has never seen: opened for it when asked to, else left out.
    assert store.write_summary(as_room(engine_summary, "room-b", start=START + 5), open_show=False) is None
    key = store.write_summary(as_room(engine_summary, "room-b", "late-night", START + 5))
    assert key == "room-b.late-night" and store.summary(key)["start"] == START + 5
    assert {s["key"] for s in store.shows()} == {recorded["key"], key}
    store.close()

    reopened = RecordingStore(tmp_path)  # survives a restart; and goes with its show at retention
    assert reopened.summary(key)["show_id"] == "late-night"
    assert reopened.purge(wall=START + 10**9) == 2
    assert reopened.summary(key) is None
    reopened.close()


def test_hub_records_summaries_and_the_api_serves_them(control_room, engine_summary):
    show = SyntheticShow(rooms=("room-a", "room-b"), start=START)
    for i in range(1, 40):
        control_room.feed_step(show.step(START + i))
    for record in show.outage("room-a", "cdn-a", START + 30):
        control_room.feed_alert(record)
    url = control_room.url
    assert requests.get(url + "/api/rooms/room-a/summary", timeout=5).status_code == 404

    provisional = as_room(engine_summary, "room-a", "evening", provisional=True)
    control_room.feed_step({"worker": "w1", "now": START + 40, "provisional": [provisional]})
    answer = requests.get(url + "/api/rooms/room-a/summary", timeout=5)
    assert answer.status_code == 200 and answer.json() == provisional
    answer = requests.get(url + "/api/rooms/room-b/summary", timeout=5)
    assert answer.status_code == 404 and "no show going on" in answer.json()["error"]
    assert requests.get(url + "/api/rooms/no%20such/summary", timeout=5).status_code == 404

    [listed] = [s for s in requests.get(url + "/api/shows", timeout=5).json()["shows"] if s["room_id"] == "room-a"]
    answer = requests.get(url + f"/api/shows/{listed['key']}/summary", timeout=5)
    assert answer.status_code == 404 and "not over" in answer.json()["error"]

    final = as_room(engine_summary, "room-a", "evening")
    control_room.feed_step({"worker": "w1", "now": START + 41, "summaries": [final]})
    # The show is over: no provisional summary any more, not even a late one of that show.
    control_room.feed_step({"worker": "w2", "now": START + 41, "provisional": [provisional]})
    assert requests.get(url + "/api/rooms/room-a/summary", timeout=5).status_code == 404
    for name in (listed["key"], "room-a"):  # its key, or the room id for its newest show
        body = requests.get(url + f"/api/shows/{name}/summary", timeout=5).json()
        assert body.pop("show_key") == listed["key"]
        assert [r["kind"] for r in body.pop("incidents")] == ["alert", "failover"]
        assert body == final
    answer = requests.get(url + "/api/shows/nowhere/summary", timeout=5)
    assert answer.status_code == 404 and answer.json() == {"error": "no such show"}
    # A summary of a show of an unrecorded room without a producer's show id opens no show.
    control_room.feed_step({"worker": "w1", "now": START + 42, "summaries": [as_room(engine_summary, "junk-1")]})
    assert all(s["room_id"] != "junk-1" for s in requests.get(url + "/api/shows", timeout=5).json()["shows"])


def test_summary_records_are_cut_by_size(engine_summary):
    size = len(orjson.dumps(engine_summary))
    many = [as_room(engine_summary, f"room-{i}") for i in range(2 * SUMMARY_RECORD_BYTES // size + 5)]
    huge = as_room(engine_summary, "room-huge", products={f"p{i}": {"title": "x" * 100} for i in range(20000)})
    assert len(orjson.dumps(huge)) > MAX_SUMMARY_BYTES
    records = summary_records("w1", START, "summaries", [*many[:3], huge, *many[3:]])
    assert len(records) >= 3
    out = []
    for value in records:
        record = json.loads(value)
        assert record["worker"] == "w1" and record["now"] == START
        assert len(value) <= SUMMARY_RECORD_BYTES + size + 100
        out += record["summaries"]
    assert out == many  # each once, in order; the one too large to send is left out
    assert summary_records("w1", START, "provisional", []) == []
