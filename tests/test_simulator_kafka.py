"""`livemon simulate` against a real broker (Tansu): what it sends is what it wrote, it follows
failover commands from liveroom.control, and Ctrl-C stops it cleanly."""

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter

from click.testing import CliRunner
from kafka import KafkaConsumer, KafkaProducer

from livemon.ingest import events as ev
from livemon.simulator.cli import simulate


def consume_all(bootstrap, topics):
    consumer = KafkaConsumer(*topics, bootstrap_servers=bootstrap, group_id=None,
                             auto_offset_reset="earliest", consumer_timeout_ms=3000)
    try:
        return list(consumer)
    finally:
        consumer.close()


def read_events(path):
    with open(path, "rb") as file:
        return [ev.decode(line)[0][0] for line in file]


def wait_for_show_seconds(path, room, seconds, process, timeout=60):
    """Until the out file holds `seconds` of `room`'s beacons (complete lines only: it is being written)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()[1].decode()
        data = path.read_bytes() if path.exists() else b""
        lines = data[:data.rfind(b"\n") + 1].splitlines()
        beacons = [e for e in (ev.decode(line)[0][0] for line in lines)
                   if isinstance(e, ev.Health) and e.room_id == room]
        if beacons and beacons[-1].ts - beacons[0].ts >= seconds:
            return
        time.sleep(0.5)
    raise AssertionError(f"the simulator wrote less than {seconds} s of {room}'s beacons in {timeout} s")


def test_what_is_sent_is_what_the_out_file_says(make_broker, tmp_path):
    bootstrap = make_broker(partitions=2)
    out = tmp_path / "sent.jsonl"
    result = CliRunner().invoke(simulate, [
        "--broker", bootstrap, "--scenario", "normal,bad-input", "--rooms", "3", "--rate", "400",
        "--duration", "20", "--speed", "0", "--seed", "5", "--out", str(out)])
    assert result.exit_code == 0, result.output
    records = consume_all(bootstrap, ev.EVENT_TOPICS)
    received, rejections = [], []
    show_actions = Counter()
    for record in records:
        assert record.key.decode().startswith("room-")
        events, rejected = ev.decode(record.value, record.topic)
        received += events
        rejections += rejected
        for event in events:
            if isinstance(event, ev.Show):  # the show's own events, keyed by their room too
                assert record.topic == "liveroom.shows" and record.key.decode() == event.room_id
                show_actions[event.action] += 1
    assert {"start", "product", "pin", "end"} <= set(show_actions) and show_actions["product"] >= 3 * 20
    written = [ev.encode(e) for e in read_events(out)]
    rejected_file = [json.loads(line) for line in (tmp_path / "sent.jsonl.rejected").open()]
    late_or_future = [r for r in rejected_file if r["reason"] in (ev.LATE, ev.FUTURE)]
    # Every valid event sent arrived once; decode also passes the late and future ones, which
    # only the engine's clock rejects.
    assert len(written) > 3000
    assert Counter(ev.encode(e) for e in received) == Counter(written) + Counter(
        r["raw"].encode() for r in late_or_future)
    assert Counter(r.reason for r in rejections) == Counter(
        r["reason"] for r in rejected_file if r["reason"] not in (ev.LATE, ev.FUTURE))
    assert {r["reason"] for r in rejected_file} == set(ev.REJECT_REASONS)


def test_viewers_follow_a_failover_command_and_ctrl_c_stops_cleanly(make_broker, tmp_path):
    bootstrap = make_broker(partitions=2)
    out = tmp_path / "live.jsonl"
    process = subprocess.Popen(
        [sys.executable, "-m", "livemon", "simulate", "--broker", bootstrap,
         "--scenario", "normal,cdn-outage", "--rooms", "2", "--rate", "300", "--duration", "0",
         "--fault-at", "0", "--fault-for", "600", "--beacon-interval", "2", "--out", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        # At least 12 s of the show before the command, however slowly the simulator started on a
        # loaded machine: the outage shows on cdn-a once the first viewers' startup buffers ran dry.
        wait_for_show_seconds(out, "room-001", 12, process)
        producer = KafkaProducer(bootstrap_servers=bootstrap)
        command = {"room_id": "room-001", "from_cdn": "cdn-a", "to_cdn": "cdn-b",
                   "reason": "cdn_stall_ratio", "ts": time.time(), "command_id": "test-1"}
        for _ in range(2):  # delivered twice, as at-least-once delivery may: followed once
            producer.send(ev.CONTROL_TOPIC, key=b"room-001", value=json.dumps(command).encode())
        producer.flush()
        producer.close()
        sent_at = time.time()
        time.sleep(6)
    except BaseException:
        process.kill()
        raise
    stderr = ctrl_c(process, timeout=20)
    assert b"failovers followed: 1 (stopped)" in stderr
    beacons = [e for e in read_events(out) if isinstance(e, ev.Health) and e.room_id == "room-001"]
    before = [e for e in beacons if e.ts < sent_at - 1]
    after = [e for e in beacons if e.ts > sent_at + 2]
    assert {e.cdn for e in before} >= {"cdn-a", "cdn-b"}
    assert after and {e.cdn for e in after} <= {"cdn-b", "cdn-c"}
    stall = lambda bs: sum(b.stall_ms for b in bs) / sum(b.play_ms + b.stall_ms for b in bs)
    # Once the first viewers' startup buffers ran dry, the outage shows on cdn-a only.
    settled = [e for e in before if e.ts > before[0].ts + 5]
    assert stall([e for e in settled if e.cdn == "cdn-a"]) > 0.1
    assert stall([e for e in settled if e.cdn == "cdn-b"]) < 0.05
    assert stall(after) < 0.05
    # The file ends with complete lines: it was flushed and closed.
    assert out.read_bytes().endswith(b"\n")


def test_ctrl_c_stops_a_command_started_with_sigint_ignored(make_broker, tmp_path):
    """A background job of a script (or a test runner's worker) starts its children with SIGINT
    ignored; Python then installs no KeyboardInterrupt handler. Ctrl-C still stops livemon."""
    bootstrap = make_broker(partitions=2)
    out = tmp_path / "events.jsonl"
    process = subprocess.Popen(
        [sys.executable, "-m", "livemon", "simulate", "--broker", bootstrap, "--rooms", "1", "--rate", "50",
         "--duration", "0", "--out", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    try:
        deadline = time.monotonic() + 30
        while not (out.exists() and out.stat().st_size) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert out.stat().st_size, "the simulator sent nothing"
    except BaseException:
        process.kill()
        raise
    stderr = ctrl_c(process, timeout=15)
    assert b"(stopped)" in stderr


def ctrl_c(process: subprocess.Popen, timeout: float) -> bytes:
    """Stop a command as Ctrl-C does; it must end cleanly within `timeout` (else it is killed).
    Returns its standard error."""
    try:
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=timeout)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, stderr.decode()
    assert b"Traceback" not in stderr
    return stderr
