"""A worker SIGKILLed mid-show: the recorded timelines come out exactly right.

`test_worker_durability.py` proves that the live counters (GMV, orders, every metric on /metrics)
are exact after a SIGKILL. This test complements it with the record: the surviving worker's
recording (fed by every worker's final snapshots on `liveroom.snapshots`) holds, for every room,
every instant once, with no gap, and each equal to `livemon replay` of what was sent, although the
killed worker's partitions were replayed from its last checkpoint (and so published twice).
"""

import time

from livemon.recording.store import RecordingStore
from tests.fixtures.worker import read_events, simulate, wait_caught_up

ARGS = ("--no-alerts", "--checkpoint-interval", "2")


def recorded(recording_dir) -> dict[str, dict[float, dict]]:
    store = RecordingStore(recording_dir)
    try:
        lines: dict[str, dict[float, dict]] = {}
        for show in store.shows():
            for line in store.timeline(show["key"]):
                assert line["ts"] not in lines.setdefault(line["room_id"], {}), "an instant recorded twice"
                lines[line["room_id"]][line["ts"]] = line
        return lines
    finally:
        store.close()


def replay_lines(events_path: str, until: float, out: str) -> dict[tuple, dict]:
    import json
    import subprocess
    import sys

    subprocess.run([sys.executable, "-m", "livemon", "replay", events_path, "--out", out, "--until", repr(until)],
                   check=True, capture_output=True)
    with open(out) as timeline:
        return {(r["room_id"], r["ts"]): r for r in map(json.loads, timeline)}


def test_sigkill_keeps_recorded_timelines_exact(make_broker, start_worker, tmp_path):
    bootstrap = make_broker()
    first = start_worker(bootstrap, *ARGS, "--recording-dir", str(tmp_path / "rec-1"), wait=False)
    second = start_worker(bootstrap, *ARGS, "--recording-dir", str(tmp_path / "rec-2"), wait=False)
    first.wait_ready()
    second.wait_ready()
    out = str(tmp_path / "events.jsonl")
    simulator = simulate(bootstrap, out, "--scenario", "normal,surge", "--rooms", "4", "--rate", "300",
                         "--duration", "45", "--speed", "3", "--seed", "8")
    time.sleep(8)
    assert first.value("livemon_rooms") > 0
    first.kill()
    third = start_worker(bootstrap, *ARGS, "--recording-dir", str(tmp_path / "rec-3"))
    assert simulator.wait(timeout=90) == 0, simulator.stdout.read()
    events = read_events(out)
    wait_caught_up([second, third], events)
    newest = max(event["ts"] for event in events)
    deadline = time.monotonic() + 30
    while True:  # the finals of the last seconds come once the watermark has passed them
        lines = recorded(tmp_path / "rec-2")
        rooms = {event["room_id"] for event in events}
        if set(lines) == rooms and all(max(lines[room]) >= newest - 10 for room in rooms):
            break
        assert time.monotonic() < deadline, {room: max(lines.get(room, {0: 0})) for room in rooms}
        time.sleep(1)

    until = max(ts for room in lines.values() for ts in room)
    replay = replay_lines(out, until, str(tmp_path / "timeline.jsonl"))
    for room, by_ts in lines.items():
        instants = sorted(by_ts)
        # No gap: from the room's first replayed instant to the last recorded one, every instant.
        want = sorted(ts for (r, ts) in replay if r == room and ts <= instants[-1])
        assert instants == want, room
        for ts in instants:
            expected = replay[(room, ts)]
            got = by_ts[ts]
            bad = [name for name, value in expected["metrics"].items()
                   if (value is None) != (got["metrics"].get(name) is None)
                   or (value is not None and abs(value - got["metrics"][name]) > 1e-9 * max(1.0, abs(value)))]
            assert not bad, (room, ts, bad)
            assert got["cdn"] == expected["cdn"] or _close(got["cdn"], expected["cdn"]), (room, ts)
    assert sum(worker.value("livemon_checkpoints_restored_total") or 0 for worker in (second, third)) > 0


def _close(a: dict, b: dict) -> bool:
    if a.keys() != b.keys():
        return False
    return all((x is None) == (y is None) and (x is None or abs(x - y) <= 1e-9 * max(1.0, abs(x)))
               for cdn in a for x, y in ((a[cdn][k], b[cdn].get(k)) for k in a[cdn]))
