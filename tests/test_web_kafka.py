"""The hub on a real broker: every worker's step records reach every page, actions reach the
operator topic, and a restarted recorder fills the gap it was down for."""

import json
import time

from kafka import KafkaConsumer, KafkaProducer

from tests.fixtures.browser import TOKEN, ControlRoomServer, SyntheticShow


def wait_for(condition, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


def test_hub_shows_rooms_of_every_worker_and_publishes_actions(make_broker, tmp_path):
    import requests

    bootstrap = make_broker(partitions=2)
    producer = KafkaProducer(bootstrap_servers=bootstrap)
    room = ControlRoomServer(tmp_path / "data", bootstrap_servers=bootstrap)
    try:
        a = SyntheticShow(rooms=("room-a1", "room-a2"))
        b = SyntheticShow(rooms=("room-b1",), seed=3)
        wait_for(lambda: room.hub.broker_error is None and room.hub._consumer is not None
                 and room.hub._consumer.assignment())
        for i in range(10):
            producer.send("liveroom.snapshots", json.dumps(a.step(a.start + i, worker="w1")).encode(), key=b"w1")
            producer.send("liveroom.snapshots", json.dumps(b.step(b.start + i, worker="w2")).encode(), key=b"w2")
        producer.send("liveroom.alerts", json.dumps(b.outage("room-b1", "cdn-a", b.start + 9)).encode(), key=b"room-b1")
        producer.flush()
        wait_for(lambda: len(requests.get(room.url + "/api/rooms", timeout=5).json()["rooms"]) == 3)
        grid = requests.get(room.url + "/api/rooms", timeout=5).json()
        assert grid["workers"] == ["w1", "w2"]
        wait_for(lambda: requests.get(room.url + "/api/rooms/room-b1", timeout=5).json()["alert"] == "critical")

        consumer = KafkaConsumer("liveroom.operator", bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                 consumer_timeout_ms=15000)
        sent = requests.post(room.url + "/api/actions", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=15,
                             json={"action": "cancel_failover", "room_id": "room-b1", "cdn": "cdn-b"})
        assert sent.status_code == 202, sent.text
        message = next(iter(consumer))
        assert message.key == b"room-b1"
        assert {k: v for k, v in json.loads(message.value).items() if k in ("action", "room_id", "cdn")} == {
            "action": "cancel_failover", "room_id": "room-b1", "cdn": "cdn-b"}
        consumer.close()
        wait_for(lambda: any(s["room_id"] == "room-b1" and s["alerts"] == 1 for s in room.store.shows()))
    finally:
        room.close()

    # Down for a while: what the workers published meanwhile is recorded after the restart.
    for i in range(10, 20):
        producer.send("liveroom.snapshots", json.dumps(a.step(a.start + i, worker="w1")).encode(), key=b"w1")
    producer.flush()
    again = ControlRoomServer(tmp_path / "data", bootstrap_servers=bootstrap)
    try:
        wait_for(lambda: len(again.store.timeline("room-a1.evening")) == 20)
    finally:
        again.close()
        producer.close()
