"""A real worker process on a real broker: events in, correct gauges and rejections out."""

import json
import math
import subprocess
import sys
import time

import pytest

from kafka import KafkaConsumer, KafkaProducer

ROOM = "wk-room-1"
OTHER = "wk-room-2"


def produce(bootstrap, now):
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)

    def send(topic, value, key=ROOM):
        producer.send(topic, value if isinstance(value, bytes) else json.dumps(value).encode(),
                      key=key.encode())

    t = now - 3
    # 30 viewers enter in one envelope; 5 of them leave again.
    send("liveroom.views", [{"type": "view", "room_id": ROOM, "user_id": f"u{i}", "ts": t, "action": "enter"}
                            for i in range(30)])
    for i in range(5):
        send("liveroom.views", {"type": "view", "room_id": ROOM, "user_id": f"u{i}", "ts": t + 0.5,
                                "action": "leave"})
    # 4 distinct paid orders, one of them sent twice: GMV 65.5, 4 orders.
    for i, amount in enumerate([10, 20.5, 30, 5]):
        send("liveroom.orders", {"type": "order", "room_id": ROOM, "user_id": f"u{10 + i}", "ts": t + 1,
                                 "order_id": f"o{i}", "product_id": "p1", "amount": amount, "status": "paid"})
    send("liveroom.orders", {"type": "order", "room_id": ROOM, "user_id": "u10", "ts": t + 1.2,
                             "order_id": "o0", "product_id": "p1", "amount": 10, "status": "paid"})
    # Health: 1 s of stall in 10 s of playback on cdn-a, latency 2 s.
    send("liveroom.health", {"type": "health", "room_id": ROOM, "user_id": "u20", "ts": t + 1, "cdn": "cdn-a",
                             "play_ms": 9000, "stall_ms": 1000, "stall_count": 2, "latency_ms": 2000})
    # A room is tracked from its show start (or its third event): one viewer, announced.
    send("liveroom.shows", {"type": "show", "room_id": OTHER, "ts": t, "action": "start"}, key=OTHER)
    send("liveroom.views", {"type": "view", "room_id": OTHER, "user_id": "x", "ts": t, "action": "enter"},
         key=OTHER)
    # Bad input: each is rejected on its own, the valid neighbours still count.
    send("liveroom.views", b"{not json")
    send("liveroom.views", [{"type": "view", "room_id": ROOM, "user_id": "u30", "ts": t, "action": "enter"},
                            {"type": "view", "room_id": ROOM, "ts": t, "action": "enter"}])
    send("liveroom.orders", {"type": "view", "room_id": ROOM, "user_id": "u31", "ts": t, "action": "enter"})
    send("liveroom.clicks", json.dumps({"type": "danmaku", "room_id": ROOM, "user_id": "u1", "ts": t,
                                        "text": "x" * 70_000}).encode())
    send("liveroom.views", {"type": "view", "room_id": ROOM, "user_id": "u32", "ts": t - 3600,
                            "action": "enter"})
    producer.flush()
    producer.close()
    return t + 1.2  # newest event time


def wait_for(worker, predicate, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        metrics = worker.metrics()
        if predicate(metrics):
            return metrics
        time.sleep(0.3)
    raise AssertionError(f"condition not met; worker log:\n{worker.log()}")


def test_events_become_gauges_and_bad_input_is_dead_lettered(make_broker, start_worker):
    bootstrap = make_broker()
    worker = start_worker(bootstrap, "--no-alerts", "--no-web-page")
    newest = produce(bootstrap, time.time())

    def key(name, **labels):
        return (name, frozenset({"room": ROOM, **labels}.items()))

    metrics = wait_for(worker, lambda m: m.get(key("livemon_room_snapshot_timestamp_seconds"), 0)
                       >= math.ceil(newest) and m.get(key("livemon_room_orders_total")) == 4)
    assert metrics[key("livemon_room_online")] == 26  # 30 + u30 - 5 leaves
    assert metrics[key("livemon_room_leaves")] == 5
    assert metrics[key("livemon_room_gmv_total")] == 65.5
    assert metrics[key("livemon_room_gmv_window")] == 65.5
    assert metrics[key("livemon_room_stall_ratio")] == 0.1
    # Percentiles may come from a sketch within 2% (SPEC §5); exposed in seconds.
    assert metrics[key("livemon_room_latency_seconds", quantile="0.95")] == pytest.approx(2.0, rel=0.02)
    assert metrics[key("livemon_cdn_stall_ratio", cdn="cdn-a")] == 0.1
    assert metrics[key("livemon_cdn_viewers", cdn="cdn-a")] == 1
    assert metrics[("livemon_room_online", frozenset({"room": OTHER}.items()))] == 1
    # One room's families alone (`?room=`): its lines of the whole exposition, no other room's.
    status, body = worker.get(f"/metrics?room={OTHER}")
    assert status == 200 and b'livemon_room_online{room="%s"} 1' % OTHER.encode() in body
    assert ROOM.encode() not in body and b"livemon_events_total" not in body

    def rejected(reason):
        return metrics.get(("livemon_events_rejected_total", frozenset({"reason": reason}.items())))
    assert {reason: rejected(reason) for reason in ("invalid_json", "missing_field", "wrong_topic",
                                                    "too_large", "late")} == \
        {"invalid_json": 1, "missing_field": 1, "wrong_topic": 1, "too_large": 1, "late": 1}
    assert metrics[("livemon_events_total", frozenset({"type": "view"}.items()))] == 30 + 5 + 1 + 1
    assert metrics[("livemon_events_total", frozenset({"type": "order"}.items()))] == 5

    consumer = KafkaConsumer("liveroom.deadletter", bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                             consumer_timeout_ms=3000)
    records = [json.loads(message.value) for message in consumer]
    consumer.close()
    assert sorted(r["reason"] for r in records) == ["invalid_json", "late", "missing_field", "too_large",
                                                    "wrong_topic"]
    by_reason = {r["reason"]: r for r in records}
    assert by_reason["invalid_json"]["raw"] == "{not json"
    assert by_reason["invalid_json"]["topic"] == "liveroom.views"
    assert json.loads(by_reason["missing_field"]["raw"]) == {"type": "view", "room_id": ROOM, "ts": newest - 1.2,
                                                            "action": "enter"}
    assert json.loads(by_reason["wrong_topic"]["raw"])["user_id"] == "u31"
    assert json.loads(by_reason["late"]["raw"])["user_id"] == "u32"

    status, body = worker.get("/healthz")
    assert status == 200 and json.loads(body)["partitions"] == list(range(8))
    assert worker.stop() == 0  # SIGTERM: a clean exit


_LOGGING_PROBE = """
import logging, sys
import faust
from livemon.agents.worker import faust_worker

app = faust.App("probe", broker="kafka://127.0.0.1:1", autodiscover=False)
worker = faust_worker(app, sys.argv[1])
worker._setup_logging()  # as the worker's start does it
made = []
logging.setLogRecordFactory(lambda *args, **kw: made.append(args[0]) or logging.LogRecord(*args, **kw))
logging.getLogger("aiokafka.producer.producer").debug("a debug line of every produce")
logging.getLogger("livemon").warning("a warning")
print(",".join(made))
"""


@pytest.mark.parametrize("level, made", [("warning", "livemon"),
                                         ("debug", "aiokafka.producer.producer,livemon")])
def test_the_worker_makes_log_records_at_its_level_only(level, made):
    """Faust's terminal spinner set the root logger to DEBUG whatever the level: every debug line
    of aiokafka (one per produce) was made into a record, 4 % of a busy worker."""
    result = subprocess.run([sys.executable, "-c", _LOGGING_PROBE, level], capture_output=True, text=True,
                            timeout=60, check=True)
    assert result.stdout.strip() == made
