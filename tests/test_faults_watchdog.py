"""A consumer that stops making progress while messages wait is caught by the worker's own watchdog.

The stall is real: with `LIVEMON_FAULT_STALL_FILE` set, the worker's agent blocks on its next
batch while that file exists (agents/watchdog.py), so nothing is consumed, as with a stuck
Faust consumer. Lag builds up; the watchdog logs it, sets the metric and /livez answers 503.
"""

import json
import time

from kafka import KafkaProducer

from livemon.ingest.events import Order, encode


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.3)
    return value


def test_stuck_consumer_is_reported_and_livez_says_restart(broker, start_worker, tmp_path, monkeypatch):
    stall = tmp_path / "stall"
    monkeypatch.setenv("LIVEMON_FAULT_STALL_FILE", str(stall))
    worker = start_worker(broker, "--no-alerts", "--stall-after", "3", group="watchdog")
    assert worker.get("/livez")[0] == 200

    stall.touch()
    producer = KafkaProducer(bootstrap_servers=broker)
    for i in range(50):
        order = Order("stuck-room", f"u{i}", round(time.time(), 3), f"stuck-{i}", "sku", 5.0, "paid")
        producer.send("liveroom.orders", encode(order), key=b"stuck-room")
    producer.flush()

    wait_for(lambda: worker.get("/livez")[0] == 503, 30, "/livez to report the stuck consumer")
    status, body = worker.get("/healthz")
    assert status == 503 and json.loads(body)["consumer_stuck"] is True
    assert worker.value("livemon_consumer_stalled") == 1
    assert worker.value("livemon_consumer_stalls_total") == 1
    assert sum(v for (name, _), v in worker.metrics().items() if name == "livemon_consumer_lag_messages") > 0
    assert "consumer stuck" in worker.log()
    assert worker.value("livemon_room_orders_total", room="stuck-room") is None  # really stuck

    stall.unlink()  # the consumer moves again: healthy, nothing lost
    wait_for(lambda: worker.value("livemon_room_orders_total", room="stuck-room") == 50, 30, "the orders")
    wait_for(lambda: worker.get("/livez")[0] == 200, 10, "/livez to recover")
    assert worker.value("livemon_consumer_stalled") == 0
    producer.close()
