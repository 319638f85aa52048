"""`livemon web`, the control room on its own: the page and the one recording, from the step records
of workers that neither record nor serve a page, on a real broker."""

import json
import os
import signal

import pytest

from livemon.processes import ProcessFailed, WorkerProcess
from livemon.recording.store import RecordingStore
from tests.fixtures.worker import read_events, simulate, wait_caught_up


def test_the_page_and_the_recording_of_workers_that_only_compute(make_broker, start_worker, tmp_path):
    bootstrap = make_broker()
    recordings = tmp_path / "recording"
    web = WorkerProcess(bootstrap, ["--recording-dir", str(recordings)], str(tmp_path / "web.log"), command="web",
                        env={**os.environ, "LIVEMON_TOKEN": "t" * 40}).wait_healthy(60)
    try:
        worker = start_worker(bootstrap, "--no-recording", "--no-web-page", "--no-alerts")
        out = str(tmp_path / "events.jsonl")
        simulator = simulate(bootstrap, out, "--rooms", "3", "--rate", "150", "--duration", "20", "--seed", "5")
        assert simulator.wait(timeout=60) == 0, simulator.stdout.read()
        events = read_events(out)
        metrics = wait_caught_up([worker], events)
        assert worker.get("/")[0] == 404  # the worker serves no page

        rooms = {event["room_id"] for event in events}
        status, body = web.get("/api/rooms")
        assert status == 200
        shown = {tile["room_id"]: tile for tile in json.loads(body)["rooms"]}
        assert set(shown) == rooms
        hot = max(rooms, key=lambda room: metrics.get(("livemon_room_online", frozenset({("room_id", room)})), 0))
        status, body = web.get(f"/api/rooms/{hot}")
        view = json.loads(body)
        assert status == 200 and view["latest"]["metrics"]["online"] > 0
        assert view["sales"]["by"]["source"], "the breakdowns come with the step records"
        status, body = web.get("/healthz")
        assert status == 200 and json.loads(body)["rooms"] == len(rooms)
        status, body = web.get("/metrics")  # Prometheus scrapes it with the workers (job livemon)
        assert status == 200 and f"livemon_web_rooms {len(rooms)}.0" in body.decode()
        assert "livemon_broker_up 1.0" in body.decode() and "process_resident_memory_bytes" in body.decode()
    finally:
        web.process.send_signal(signal.SIGTERM)
        assert web.wait(30) == 0, web.log_tail()
    # What the page showed is recorded, once, by it alone: each room's show with its instants.
    listed = {show["room_id"]: show for show in RecordingStore(recordings).shows()}
    assert set(listed) == rooms
    assert all(show["instants"] >= 5 for show in listed.values())


def test_the_web_role_refuses_to_run_with_nothing_to_do(make_broker, tmp_path):
    web = WorkerProcess(make_broker(), ["--no-web-page", "--no-recording"], str(tmp_path / "web.log"), command="web")
    with pytest.raises(ProcessFailed, match="exited with 2"):
        web.wait_healthy(30)
    assert "leaves the control room nothing to do" in web.log_tail()
