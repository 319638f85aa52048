"""A worker killed with SIGKILL mid-show: the others take over its partitions from its last
checkpoint, and GMV and order counters come out exactly right (no double count, no gap)."""

import json
import time

import pytest

from tests.fixtures.worker import mismatches, read_events, replay_at, simulate, snapshot_instants, wait_caught_up

WORKER_ARGS = ("--no-alerts", "--no-web-page", "--checkpoint-interval", "2")


def paid_totals(events):
    """(GMV, orders) per room: each order_id counts once, at its first `paid`."""
    seen, totals = set(), {}
    for event in events:
        if event["type"] == "order" and event["status"] == "paid" and event["order_id"] not in seen:
            seen.add(event["order_id"])
            gmv, orders = totals.get(event["room_id"], (0.0, 0))
            totals[event["room_id"]] = (gmv + event["amount"], orders + 1)
    return totals


def test_sigkill_mid_show_keeps_gmv_and_orders_exact(make_broker, start_worker, tmp_path):
    bootstrap = make_broker()
    first = start_worker(bootstrap, *WORKER_ARGS, wait=False)
    second = start_worker(bootstrap, *WORKER_ARGS, wait=False)
    first.wait_ready()
    second.wait_ready()
    out = str(tmp_path / "events.jsonl")
    simulator = simulate(bootstrap, out, "--scenario", "normal,surge", "--rooms", "4", "--rate", "400",
                         "--duration", "60", "--speed", "3", "--seed", "3")
    time.sleep(10)
    # Both hold partitions and the first has state worth losing.
    owned = json.loads(first.get("/healthz")[1])["partitions"]
    assert owned and json.loads(second.get("/healthz")[1])["partitions"]
    assert first.value("livemon_rooms") > 0
    first.kill()
    third = start_worker(bootstrap, *WORKER_ARGS)
    assert simulator.wait(timeout=90) == 0, simulator.stdout.read()
    events = read_events(out)
    metrics = wait_caught_up([second, third], events)

    # Nothing of the backlog replayed after the takeover was mistaken for late input.
    late = [worker.value("livemon_events_rejected_total", reason="late") for worker in (second, third)]
    assert not any(late), late

    totals = paid_totals(events)
    assert sum(orders for _, orders in totals.values()) > 20  # the show sold something
    for room, (gmv, orders) in totals.items():
        labels = frozenset({"room": room}.items())
        assert metrics[("livemon_room_orders_total", labels)] == orders, room
        assert metrics[("livemon_room_gmv_total", labels)] == pytest.approx(gmv, rel=1e-9), room
    # And every metric of every room equals the replay of what was sent.
    instants = snapshot_instants(metrics)
    records = replay_at(out, {room: instants[room] for room in totals}, str(tmp_path / "timeline.jsonl"))
    assert set(records) == set(totals)
    assert mismatches(metrics, records) == []
    # The killed worker's partitions were resumed from its checkpoints, not from scratch.
    assert sum(worker.value("livemon_checkpoints_restored_total") or 0 for worker in (second, third)) > 0
