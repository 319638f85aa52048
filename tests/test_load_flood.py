"""Hostile load on a real worker (loopback, bounded in time): a flood of one-off room ids, and the
page's live stream under many readers and readers that never read.

The default suite floods 20,000 one-off rooms and checks the bounds at once; `-m slow` also waits
for every candidate to be forgotten, and loads the event stream (docs/RELIABILITY.md)."""

from __future__ import annotations

import json
import socket
import time

import pytest
from kafka import KafkaProducer

from tests.fixtures.browser import TOKEN
from tests.fixtures.worker import mismatches, replay_at, snapshot_instants, wait_caught_up

FLOOD = 20_000
REAL = "flood-real-room"


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/statm") as statm:
        return int(statm.read().split()[1]) * 4096 / 2**20


def real_show(t0: float) -> list[dict]:
    events = [{"type": "show", "room_id": REAL, "ts": t0, "action": "start"}]
    for i in range(30):
        events.append({"type": "view", "room_id": REAL, "user_id": f"u{i}", "ts": t0 + i * 0.1, "action": "enter"})
        if i % 3 == 0:
            events.append({"type": "order", "room_id": REAL, "user_id": f"u{i}", "ts": t0 + i * 0.1 + 0.05,
                           "order_id": f"o{i}", "product_id": "p", "amount": 9.9, "status": "paid"})
    return events


def flood(bootstrap: str, t0: float, events_path) -> list[dict]:
    """20,000 `enter` events of distinct one-off rooms (about 2 MB), around a real show."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, batch_size=1 << 20)
    real = real_show(t0)
    for event in real:
        producer.send("liveroom.shows" if event["type"] == "show" else f"liveroom.{event['type']}s",
                      json.dumps(event).encode(), key=REAL.encode())
    for i in range(FLOOD):
        room = f"junk-{i:05d}"
        producer.send("liveroom.views", json.dumps({"type": "view", "room_id": room, "user_id": "x",
                                                     "ts": t0 + 1, "action": "enter"}).encode(), key=room.encode())
    producer.flush()
    producer.close()
    with open(events_path, "w") as out:
        out.write("".join(json.dumps(event) + "\n" for event in real))
    return real


def run_flood(broker_factory, start_worker, tmp_path):
    bootstrap = broker_factory(partitions=4)
    worker = start_worker(bootstrap, "--no-alerts", "--token", TOKEN, group="flood")
    time.sleep(2)
    before = rss_mib(worker.process.pid)
    real = flood(bootstrap, time.time(), tmp_path / "real.jsonl")
    metrics = wait_caught_up([worker], real, timeout=60)
    return worker, bootstrap, before, metrics, real


def assert_bounds(worker, before, metrics, tmp_path):
    assert worker.get("/healthz")[0] == 200 and worker.get("/livez")[0] == 200
    assert metrics[("livemon_rooms", frozenset())] == 1                          # only the real room
    assert len(worker.get("/metrics")[1]) < 100_000                              # was 8.5 MB
    assert rss_mib(worker.process.pid) - before < 150                           # was +1.9 GB
    status, body = worker.get("/api/rooms", timeout=5)
    assert status in (200, 401) and len(body) < 100_000
    assert metrics[("livemon_step_duration_seconds", frozenset())] < 0.5
    # The real room is exact.
    instants = snapshot_instants(metrics)
    records = replay_at(str(tmp_path / "real.jsonl"), {REAL: instants[REAL]}, str(tmp_path / "timeline.jsonl"))
    assert mismatches(metrics, records) == []


def test_a_flood_of_one_off_rooms_stays_bounded_and_real_rooms_exact(make_broker, start_worker, tmp_path):
    worker, _, before, metrics, _ = run_flood(make_broker, start_worker, tmp_path)
    assert_bounds(worker, before, metrics, tmp_path)


@pytest.mark.slow
def test_flood_candidates_are_forgotten_within_a_minute_and_dead_lettered(make_broker, start_worker, tmp_path):
    worker, _, before, metrics, _ = run_flood(make_broker, start_worker, tmp_path)
    assert_bounds(worker, before, metrics, tmp_path)
    deadline = time.monotonic() + 90
    while worker.value("livemon_events_rejected_total", reason="room_unadmitted") != FLOOD:
        assert time.monotonic() < deadline, worker.value("livemon_events_rejected_total", reason="room_unadmitted")
        time.sleep(2)
    assert worker.get("/healthz")[0] == 200


def _stream_clients(port: int, n: int, read: bool) -> list[socket.socket]:
    clients = []
    for _ in range(n):
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        sock.sendall(b"GET /api/stream HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n")
        if not read:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        clients.append(sock)
    return clients


@pytest.mark.slow
def test_many_stream_readers_and_readers_that_never_read_stay_bounded(make_broker, start_worker, tmp_path):
    worker, _, before, metrics, _ = run_flood(make_broker, start_worker, tmp_path)
    readers = _stream_clients(worker.port, 300, read=True)
    stalled = _stream_clients(worker.port, 50, read=False)
    try:
        end = time.monotonic() + 30
        while time.monotonic() < end:
            for sock in readers:
                sock.setblocking(False)
                try:
                    sock.recv(65536)
                except (BlockingIOError, OSError):
                    pass
            assert worker.get("/healthz", timeout=5)[0] == 200
            time.sleep(0.5)
        assert rss_mib(worker.process.pid) - before < 300
    finally:
        for sock in readers + stalled:
            sock.close()
