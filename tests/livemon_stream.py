"""Helpers shared by the stream tests: run the simulator, wait for workers, compare with replay."""

from __future__ import annotations

import json
import subprocess
import sys
import time

from livemon.exposition import CDN_GAUGES, ROOM_COUNTERS, ROOM_GAUGES, ROOM_LABELLED


def simulate(bootstrap: str, out: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "livemon", "simulate", "--broker", bootstrap, "--out", out,
                             "--quiet", *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)


def read_events(path: str) -> list[dict]:
    with open(path) as lines:
        return [json.loads(line) for line in lines if line.strip()]


def newest_ts_by_room(events: list[dict]) -> dict[str, float]:
    newest: dict[str, float] = {}
    for event in events:
        newest[event["room_id"]] = max(newest.get(event["room_id"], event["ts"]), event["ts"])
    return newest


def merged_metrics(workers) -> dict:
    merged = {}
    for worker in workers:
        merged.update(worker.metrics())
    return merged


def snapshot_instants(metrics: dict) -> dict[str, float]:
    return {dict(labels)["room"]: value for (name, labels), value in metrics.items()
            if name == "livemon_room_snapshot_timestamp_seconds"}


def wait_caught_up(workers, events: list[dict], timeout: float = 60.0) -> dict:
    """Wait until every room of `events` has a live snapshot at or past its newest event and no
    worker has lag; return the merged metrics read then."""
    newest = newest_ts_by_room(events)
    deadline = time.monotonic() + timeout
    while True:
        metrics = merged_metrics(workers)
        instants = snapshot_instants(metrics)
        lag = sum(v for (name, _), v in metrics.items() if name == "livemon_consumer_lag_messages")
        if lag == 0 and all(instants.get(room, 0) >= ts for room, ts in newest.items()):
            return metrics
        if time.monotonic() > deadline:
            missing = {room: (instants.get(room), ts) for room, ts in newest.items()
                       if instants.get(room, 0) < ts}
            raise AssertionError(f"workers did not catch up: lag {lag}, rooms behind {missing}")
        time.sleep(0.5)


def replay_at(events_path: str, instants: dict[str, float], out: str) -> dict[str, dict]:
    """`livemon replay` of the event file, evaluated up to the newest instant; the line of each
    room at its own instant."""
    subprocess.run([sys.executable, "-m", "livemon", "replay", events_path, "--out", out,
                    "--until", repr(max(instants.values()))], check=True, capture_output=True)
    lines = {}
    with open(out) as timeline:
        for line in timeline:
            record = json.loads(line)
            if instants.get(record["room_id"]) == record["ts"]:
                lines[record["room_id"]] = record
    return lines


def expected_samples(record: dict) -> dict:
    """The SPEC §7 samples a replay line stands for (None where the metric is null)."""
    room, m = record["room_id"], record["metrics"]
    expected = {}

    def put(name, value, scale=1.0, **labels):
        expected[(name, frozenset({"room": room, **labels}.items()))] = None if value is None else value * scale
    for name, key, _ in ROOM_GAUGES:
        put(name, m[key])
    for name, label, parts, _ in ROOM_LABELLED:
        for label_value, key, scale in parts:
            put(name, m[key], scale, **{label: label_value})
    for name, key, scale, extra, _ in CDN_GAUGES:
        for cdn, cm in record["cdn"].items():
            put(name, cm[key], scale, cdn=cdn, **dict(extra))
    for name, key, _ in ROOM_COUNTERS:
        put(f"{name}_total", m[key])
    return expected


def mismatches(metrics: dict, records: dict[str, dict]) -> list:
    bad = []
    for record in records.values():
        for key, want in expected_samples(record).items():
            got = metrics.get(key)
            if (want is None) != (got is None) or (
                    want is not None and abs(want - got) > 1e-9 * max(1.0, abs(want))):
                bad.append((key, want, got))
    return bad
