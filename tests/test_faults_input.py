"""A hot room holding most of the traffic, bad input at 10% of it, and clients with skewed clocks.

Valid events are still counted exactly (every metric equals `livemon replay` of the simulator's
`--out` file); each bad one is rejected with its reason, counted by reason and dead-lettered;
events from beyond the worker's future bound are rejected as `future`, those within it count.
"""

import json
import time
from collections import Counter

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from livemon.ingest.events import DEADLETTER_TOPIC, Order, Show, encode
from tests.fixtures.worker import (merged_metrics, mismatches, read_events, replay_at, simulate, snapshot_instants,
                                   wait_caught_up)

SKEW_ROOM = "skewed-clock"


def send_skewed(bootstrap: str) -> None:
    """Orders from a client whose clock runs ahead: 2 minutes (inside the 300 s bound: accepted)
    and 20 minutes (beyond it: rejected as future)."""
    producer = KafkaProducer(bootstrap_servers=bootstrap)
    now = time.time()
    # The show starts (a room is admitted at its show start), on the same skewed clock.
    producer.send("liveroom.shows", encode(Show(SKEW_ROOM, round(now + 119, 3), "start")), key=SKEW_ROOM.encode())
    for i, ahead in enumerate((120, 120, 1200, 1200, 1200)):
        order = Order(SKEW_ROOM, f"u{i}", round(now + ahead, 3), f"skew-{i}", "sku", 7.0, "paid")
        producer.send("liveroom.orders", encode(order), key=SKEW_ROOM.encode())
    producer.close()


def dead_letters(bootstrap: str, expected: int, timeout: float = 30.0) -> list[dict]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None)
    tp = TopicPartition(DEADLETTER_TOPIC, 0)
    consumer.assign([tp])
    consumer.seek_to_beginning(tp)
    records, deadline = [], time.monotonic() + timeout
    while len(records) < expected and time.monotonic() < deadline:
        for batch in consumer.poll(timeout_ms=500).values():
            records += [json.loads(message.value) for message in batch]
    consumer.close()
    return records


def test_hot_room_bad_input_and_clock_skew(make_broker, start_worker, tmp_path):
    bootstrap = make_broker()
    worker = start_worker(bootstrap, "--no-alerts", "--no-web-page")
    out = str(tmp_path / "events.jsonl")
    simulator = simulate(bootstrap, out, "--scenario", "normal,bad-input", "--bad-fraction", "0.1",
                         "--rooms", "4", "--rate", "600", "--duration", "45", "--speed", "3", "--seed", "17")
    send_skewed(bootstrap)
    assert simulator.wait(timeout=90) == 0, simulator.stdout.read()

    events = read_events(out)
    with open(out + ".rejected") as lines:
        bad = [json.loads(line) for line in lines]
    rooms = Counter(event["room_id"] for event in events)
    assert rooms["room-001"] > 0.5 * len(events)  # the hot room holds most of the traffic
    assert 0.08 * len(events) <= len(bad) <= 0.12 * len(events)  # bad input: ~10% of the traffic

    metrics = wait_caught_up([worker], events)
    # Valid events: counted exactly, by type (plus the two skewed orders within the bound).
    by_type = Counter(event["type"] for event in events) + Counter({"order": 2, "show": 1})
    # The skewed room's events are not among those `wait_caught_up` waits for: give them the
    # merge's longest hold (3 s) and a step to be counted.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(
            metrics.get(("livemon_events_total", frozenset({"type": kind}.items()))) != count
            for kind, count in by_type.items()):
        time.sleep(0.5)
        metrics = merged_metrics([worker])
    for kind, count in by_type.items():
        assert metrics[("livemon_events_total", frozenset({"type": kind}.items()))] == count, kind
    assert metrics[("livemon_room_orders_total", frozenset({"room": SKEW_ROOM}.items()))] == 2
    # Bad input: rejected, counted by reason (the three far-future orders as `future`).
    reasons = Counter(record["reason"] for record in bad) + Counter({"future": 3})
    rejected = {dict(labels)["reason"]: value for (name, labels), value in metrics.items()
                if name == "livemon_events_rejected_total"}
    assert {reason: n for reason, n in rejected.items() if n} == dict(reasons)
    # ... and dead-lettered, with the reason.
    letters = dead_letters(bootstrap, sum(reasons.values()))
    assert Counter(letter["reason"] for letter in letters) == reasons
    assert all(letter["raw"] for letter in letters)
    # Every metric of every simulated room equals the replay of what was sent.
    instants = snapshot_instants(metrics)
    records = replay_at(out, {room: instants[room] for room in rooms}, str(tmp_path / "timeline.jsonl"))
    assert set(records) == set(rooms)
    assert mismatches(metrics, records) == []
