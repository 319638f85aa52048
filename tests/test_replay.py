"""`livemon replay`, the real command in a subprocess: a 10-minute multi-room show agrees with the
straightforward computation of every SPEC definition (tests/reference.py) on every line and every
metric; bad input lines are counted, not fatal; user errors exit non-zero with a message and no
traceback."""

import os
import random
import shutil
import subprocess
import sys

import msgspec
import orjson
import pytest

from tests.reference import accept, assert_matches, timeline

T0 = 1_700_000_000.0
SHOW_SECONDS = 600


def livemon(*args, timeout=120):
    exe = shutil.which("livemon")
    command = [exe] if exe else [sys.executable, "-m", "livemon"]
    return subprocess.run([*command, *map(str, args)], capture_output=True, text=True, timeout=timeout)


def read_timeline(path):
    return {(s["room_id"], s["ts"]): s for s in map(orjson.loads, path.read_bytes().splitlines())}


def show_events():
    """A 10-minute show in 3 rooms with a CDN outage, in arrival order: each event arrives up to 3 s
    after its ts (out of order within the 5 s lateness), and a few arrive 10-40 s late."""
    from livemon.simulator import generate  # a pure generator: no broker, no clock
    messages = generate("normal,cdn-outage", rooms=3, seed=11, start=T0, duration=SHOW_SECONDS, rate=40)
    events = [msgspec.to_builtins(event) for message in messages for event in message.events]
    rng = random.Random(11)
    arrival = []
    for event in events:
        delay = rng.uniform(0, 3)
        if event["type"] != "show" and rng.random() < 0.002:
            delay += rng.uniform(10, 40)
        arrival.append((event["ts"] + delay, event))
    arrival.sort(key=lambda pair: pair[0])
    return [event for _, event in arrival]


def test_ten_minute_multi_room_show_agrees_with_the_reference(tmp_path):
    events = show_events()
    source, out = tmp_path / "events.jsonl", tmp_path / "timeline.jsonl"
    source.write_bytes(b"".join(orjson.dumps(event) + b"\n" for event in events))
    result = livemon("replay", source, "--out", out)
    assert result.returncode == 0, result.stderr
    late = len(events) - len(accept(events))
    assert late > 0  # the late ones are rejected by both
    assert f"{len(events)} events, {late} rejected (late: {late})" in result.stderr
    got = read_timeline(out)
    want = timeline(events)
    assert set(got) == set(want), f"lines differ: {sorted(set(got) ^ set(want))[:5]}"
    for key in sorted(want):
        assert_matches(got[key], want[key], where=str(key))
        assert set(got[key]["metrics"]) >= set(want[key]["metrics"])
    # Not a vacuous show: several rooms for the whole show, viewers, sales, an outage on a CDN.
    assert len({room for room, _ in got}) == 3
    assert max(t for _, t in got) - min(t for _, t in got) >= SHOW_SECONDS
    assert max(s["metrics"]["online"] for s in got.values()) >= 20
    assert max(s["metrics"]["gmv_total"] for s in got.values()) > 0
    assert max(s["metrics"]["retention_180s"] or 0 for s in got.values()) > 0
    assert max(cdn["error_rate"] or 0 for s in got.values() for cdn in s["cdn"].values()) > 0.1


def test_bad_lines_are_counted_and_the_rest_replayed(tmp_path):
    good = [{"type": "view", "room_id": "r1", "user_id": "u1", "ts": T0, "action": "enter"},
            {"type": "order", "room_id": "r1", "user_id": "u1", "ts": T0 + 2, "order_id": "o1", "product_id": "p",
             "amount": 12.5, "status": "paid"}]
    source, out = tmp_path / "events.jsonl", tmp_path / "timeline.jsonl"
    source.write_bytes(orjson.dumps(good[0]) + b"\n\xff\xfe not json\n"
                       + b'{"type": "view", "room_id": "r1", "ts": 1700000001, "action": "enter"}\n'
                       + b"\n" + orjson.dumps(good[1]) + b"\n")
    result = livemon("replay", source, "--out", out)
    assert result.returncode == 0, result.stderr
    assert "4 lines, 2 events, 2 rejected (invalid_json: 1, missing_field: 1)" in result.stderr
    lines = read_timeline(out)
    assert sorted(t for _, t in lines) == [T0, T0 + 1, T0 + 2]
    assert lines[("r1", T0 + 2)]["metrics"]["gmv_total"] == 12.5
    assert lines[("r1", T0 + 2)]["metrics"]["online"] == 1


def test_replay_to_standard_output(tmp_path):
    source = tmp_path / "events.jsonl"
    source.write_bytes(orjson.dumps({"type": "view", "room_id": "r1", "user_id": "u1", "ts": T0, "action": "enter"}))
    result = livemon("replay", source, "--out", "-", "--until", T0 + 2)
    assert result.returncode == 0, result.stderr
    lines = [orjson.loads(line) for line in result.stdout.splitlines()]
    assert [line["ts"] for line in lines] == [T0, T0 + 1, T0 + 2]
    assert all(line["metrics"]["online"] == 1 for line in lines)


def assert_user_error(result, *words):
    assert result.returncode != 0
    assert "Traceback" not in result.stderr + result.stdout
    assert "Error" in result.stderr
    for word in words:
        assert word in result.stderr, result.stderr


@pytest.fixture
def events_file(tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_bytes(orjson.dumps({"type": "view", "room_id": "r1", "user_id": "u1", "ts": T0, "action": "enter"}))
    return path


def test_missing_events_file(tmp_path):
    assert_user_error(livemon("replay", tmp_path / "nope.jsonl", "--out", tmp_path / "o.jsonl"),
                      "nope.jsonl", "does not exist")


def test_events_file_is_a_directory(tmp_path):
    assert_user_error(livemon("replay", tmp_path, "--out", tmp_path / "o.jsonl"), "is a directory")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_unreadable_events_file(events_file, tmp_path):
    events_file.chmod(0)
    assert_user_error(livemon("replay", events_file, "--out", tmp_path / "o.jsonl"), "events.jsonl")


def test_output_that_cannot_be_written(events_file, tmp_path):
    assert_user_error(livemon("replay", events_file, "--out", tmp_path / "no" / "such" / "dir.jsonl"),
                      "cannot open", "dir.jsonl")


@pytest.mark.parametrize("options, words", [
    (["--step", "0"], ["step"]),
    (["--step", "abc"], ["--step", "abc"]),
    (["--step", "inf"], ["step"]),
    (["--window", "61", "--step", "2"], ["window", "multiple"]),
    (["--window", "inf"], ["window"]),
    (["--lateness", "-1"], ["lateness"]),
    (["--presence-timeout", "nan"], ["presence"]),
    (["--bogus"], ["--bogus"]),
    ([], ["--out"]),  # --out is required
])
def test_bad_options(events_file, tmp_path, options, words):
    out = tmp_path / "o.jsonl"
    args = ["replay", events_file, *(["--out", out] if options else []), *options]
    assert_user_error(livemon(*args), *words)
    assert not out.exists() or out.read_bytes() == b""
