"""A worker that falls behind (saturated, or its consumer stuck for a while) catches up exactly.

While messages wait unread at the broker, a room whose next events are in that backlog is not
silent: its clock must not run on with the wall clock, or the backlog would be rejected as late
once the worker gets to it (and a busy show would vanish from the page exactly when the worker is
under load). The consumer is really held for 15 s (three times the lateness) in the middle of a
show, with `LIVEMON_FAULT_STALL_FILE` (agents/watchdog.py); once it is released the worker
applies the backlog with no `late` rejection and ends with every metric equal to the replay of
what was sent.
"""

import time

from tests.fixtures.worker import mismatches, read_events, replay_at, simulate, snapshot_instants, wait_caught_up


def test_a_backlog_longer_than_the_lateness_is_applied_not_rejected(make_broker, start_worker, tmp_path,
                                                                     monkeypatch):
    stall = tmp_path / "stall"
    monkeypatch.setenv("LIVEMON_FAULT_STALL_FILE", str(stall))
    bootstrap = make_broker()
    worker = start_worker(bootstrap, "--no-alerts", "--no-web-page", "--stall-after", "120")
    out = str(tmp_path / "events.jsonl")
    simulator = simulate(bootstrap, out, "--scenario", "normal", "--rooms", "4", "--rate", "300",
                         "--duration", "45", "--seed", "5", "--no-end-show")
    time.sleep(10)
    assert worker.value("livemon_rooms") > 0
    stall.touch()
    time.sleep(15)
    lag = sum(v for (name, _), v in worker.metrics().items() if name == "livemon_consumer_lag_messages")
    assert lag > 0  # the backlog is real
    stall.unlink()
    assert simulator.wait(timeout=90) == 0, simulator.stdout.read()
    events = read_events(out)
    metrics = wait_caught_up([worker], events)
    assert not worker.value("livemon_events_rejected_total", reason="late")
    instants = snapshot_instants(metrics)
    rooms = {event["room_id"] for event in events}
    records = replay_at(out, {room: instants[room] for room in rooms}, str(tmp_path / "timeline.jsonl"))
    assert set(records) == rooms
    assert mismatches(metrics, records) == []
