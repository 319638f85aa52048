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


def test_a_workers_own_step_records_are_read_in_process_not_again_from_the_topic(make_broker, tmp_path):
    """A worker's hub gets its step records in process (at once, even with the broker down): on the
    topic it skips those of its own worker after that, and reads every other record."""
    import requests

    bootstrap = make_broker(partitions=2)
    producer = KafkaProducer(bootstrap_servers=bootstrap)
    step = [("livemon-record", b"step")]
    show = SyntheticShow(rooms=("room-old", "room-a1", "room-a2", "room-b1"))

    def one(record: dict, room_id: str) -> dict:
        return {**record, "live": [s for s in record["live"] if s["room_id"] == room_id],
                "final": [s for s in record["final"] if s["room_id"] == room_id]}

    first = show.step(show.start, worker="w1")
    # Written by an earlier run under the same worker id: read from the topic.
    producer.send("liveroom.snapshots", json.dumps(one(first, "room-old")).encode(), key=b"w1", headers=step)
    producer.flush()
    time.sleep(0.05)
    room = ControlRoomServer(tmp_path / "data", bootstrap_servers=bootstrap)
    try:
        room.call(_async(room.hub.read_locally, "w1"))
        time.sleep(0.05)

        def rooms():
            return {r["room_id"] for r in requests.get(room.url + "/api/rooms", timeout=5).json()["rooms"]}
        for i in range(1, 4):
            record = show.step(show.start + i, worker="w1")
            producer.send("liveroom.snapshots", json.dumps(one(record, "room-a1")).encode(), key=b"w1", headers=step)
            # Not a step record (e.g. an older worker's, without the header), another worker's.
            producer.send("liveroom.snapshots", json.dumps(one(record, "room-a2")).encode(), key=b"w1")
            producer.send("liveroom.snapshots", json.dumps({**one(record, "room-b1"), "worker": "w2"}).encode(),
                          key=b"w2", headers=step)
        producer.flush()
        wait_for(lambda: {"room-old", "room-a2", "room-b1"} <= rooms())
        time.sleep(1.0)  # the hub reads in order: room-a1's records came before room-a2's last
        assert "room-a1" not in rooms()
        room.feed_step(one(show.step(show.start + 4, worker="w1"), "room-a1"))
        assert "room-a1" in rooms()
    finally:
        room.close()
        producer.close()


async def _async(function, *args):
    return function(*args)
