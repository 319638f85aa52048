"""The simulator's show (normal + CDN outage + bad-input mix) through a real broker and a real
worker: the gauges on /metrics equal `livemon replay` of exactly the events that were sent, and
every bad event is counted and dead-lettered with its reason."""

import collections
import json

from kafka import KafkaConsumer

from tests.fixtures.worker import mismatches, read_events, replay_at, simulate, snapshot_instants, wait_caught_up


def test_metrics_equal_replay_of_what_was_sent(make_broker, start_worker, tmp_path):
    bootstrap = make_broker()
    worker = start_worker(bootstrap, "--no-alerts", "--no-web-page")
    out = str(tmp_path / "events.jsonl")
    simulator = simulate(bootstrap, out, "--scenario", "normal,cdn-outage,bad-input", "--rooms", "4",
                         "--rate", "400", "--duration", "45", "--speed", "3", "--seed", "11")
    assert simulator.wait(timeout=90) == 0, simulator.stdout.read()
    events = read_events(out)
    metrics = wait_caught_up([worker], events)

    instants = snapshot_instants(metrics)
    rooms = {event["room_id"] for event in events}
    records = replay_at(out, {room: instants[room] for room in rooms}, str(tmp_path / "timeline.jsonl"))
    assert set(records) == rooms
    assert mismatches(metrics, records) == []
    # The show had the parts the comparison is meant to cover.
    assert any(r["metrics"]["online"] for r in records.values())
    assert any(len(r["cdn"]) > 1 for r in records.values())

    # (d) Every bad event the simulator sent is counted by reason and dead-lettered with its bytes.
    with open(out + ".rejected") as lines:
        sent_bad = [json.loads(line) for line in lines]
    by_reason = collections.Counter(bad["reason"] for bad in sent_bad)
    assert len(by_reason) >= 6
    counted = {dict(labels)["reason"]: value for (name, labels), value in metrics.items()
               if name == "livemon_events_rejected_total"}
    assert counted == by_reason
    consumer = KafkaConsumer("liveroom.deadletter", bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                             consumer_timeout_ms=3000)
    letters = [json.loads(message.value) for message in consumer]
    consumer.close()
    assert collections.Counter(letter["reason"] for letter in letters) == by_reason
    raws = {letter["raw"] for letter in letters if not letter.get("raw_b64")}
    assert sum(bad["raw"] in raws for bad in sent_bad if bad["reason"] not in ("late", "future", "too_large")) \
        == sum(1 for bad in sent_bad if bad["reason"] not in ("late", "future", "too_large"))
