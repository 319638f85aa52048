"""The traffic generator core: determinism, contract-valid output, bad input, and the player model."""

from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner

from livemon.ingest import events as ev
from livemon.simulator import Simulation, TraceError, generate, load_traces
from livemon.simulator.cli import simulate

TRACES = Path("/work/shared/data/bandwidth-traces")
START = 1_700_000_000.0


def run(scenario="normal", **options):
    options = {"rooms": 3, "seed": 7, "start": START, "duration": 60, "rate": 500, **options}
    return list(generate(scenario, **options))


def all_events(messages):
    return [event for message in messages for event in message.events]


def health_stats(events, room=None, cdn=None, since=0.0, until=1e18):
    """(stall ratio, error rate, beacons) over the matching beacons: the SPEC §5 definitions."""
    beacons = [e for e in events if isinstance(e, ev.Health) and (room is None or e.room_id == room)
               and (cdn is None or e.cdn == cdn) and since <= e.ts - START < until]
    played = sum(e.play_ms + e.stall_ms for e in beacons)
    stall = sum(e.stall_ms for e in beacons) / played if played else None
    errors = sum(e.error is not None for e in beacons) / len(beacons) if beacons else None
    return stall, errors, len(beacons)


def test_same_seed_same_bytes_other_seed_other_show():
    first = [(m.topic, m.key, m.value) for m in run("normal,bad-input,cdn-outage", duration=20)]
    again = [(m.topic, m.key, m.value) for m in run("normal,bad-input,cdn-outage", duration=20)]
    other = [(m.topic, m.key, m.value) for m in run("normal,bad-input,cdn-outage", duration=20, seed=8)]
    assert first == again
    assert first != other


def test_every_message_decodes_to_exactly_its_events_on_its_topic():
    late_or_future = (ev.LATE, ev.FUTURE)
    for message in run("normal,bad-input,surge", duration=40):
        decoded, rejections = ev.decode(message.value, message.topic)
        # decode accepts late and future events: only the engine, knowing the clock, rejects them
        out_of_time = {raw for reason, raw in message.rejected if reason in late_or_future}
        in_time = [e for e in decoded if ev.encode(e) not in out_of_time]
        assert [ev.encode(e) for e in in_time] == [ev.encode(e) for e in message.events]
        assert Counter(r.reason for r in rejections) == Counter(
            reason for reason, _ in message.rejected if reason not in late_or_future)
        for event in message.events:
            assert ev.TOPIC_OF_TYPE[ev.event_type(event)] == message.topic
            assert event.room_id == message.key


def test_envelopes_hold_at_most_the_envelope_size_and_size_one_sends_objects():
    for message in run(duration=15, envelope=7):
        assert 1 <= len(message.events) <= 7
        assert message.value.startswith(b"[")
    for message in run(duration=15, envelope=1):
        assert message.value.startswith(b"{") and len(message.events) == 1


def test_bad_input_gives_every_rejection_reason_and_late_events_are_late():
    messages = run("normal,bad-input", duration=40)
    reasons = Counter(reason for m in messages for reason, _ in m.rejected)
    assert set(reasons) == set(ev.REJECT_REASONS)
    # Some bad events ride inside envelopes that also carry good events.
    assert any(m.events and m.rejected for m in messages)
    newest: dict[str, float] = {}
    for message in messages:
        for reason, raw in message.rejected:
            if reason in (ev.LATE, ev.FUTURE):
                (event,), _ = ev.decode(raw)
                if reason == ev.LATE:
                    assert event.ts < newest[event.room_id] - 5.0  # older than the watermark
                else:
                    assert event.ts > newest[event.room_id] + 600
        for event in message.events:
            newest[event.room_id] = max(newest.get(event.room_id, 0.0), event.ts)
    # Without the scenario, nothing is bad.
    assert not any(m.rejected for m in run(duration=20))


def test_a_show_has_the_traffic_of_a_live_room():
    events = all_events(run(duration=200, rooms=4, rate=400))
    kinds = Counter(ev.event_type(e) for e in events)
    assert set(kinds) == set(ev.EVENT_TYPES)
    views = Counter(e.action for e in events if isinstance(e, ev.View))
    assert views["enter"] > views["leave"] > 0 and views["heartbeat"] > views["enter"]
    # Some viewers vanish without a leave: presence has to time out for them.
    entered = {(e.room_id, e.user_id) for e in events if isinstance(e, ev.View) and e.action == "enter"}
    left = {(e.room_id, e.user_id) for e in events if isinstance(e, ev.View) and e.action == "leave"}
    assert 0.05 < len(entered - left) / len(entered) < 0.3
    # The hot room holds the largest audience.
    per_room = Counter(e.room_id for e in events)
    assert per_room.most_common(1)[0][0] == "room-001"
    # Orders: created then paid, some paid twice (retried callbacks), amounts >= 0.
    orders = [e for e in events if isinstance(e, ev.Order)]
    paid = Counter(e.order_id for e in orders if e.status == "paid")
    created = {e.order_id for e in orders if e.status == "created"}
    assert paid and set(paid) <= created
    assert any(count > 1 for count in paid.values())
    clicks = [e for e in events if isinstance(e, ev.Click)]
    assert {c.target for c in clicks} == {"product", "cart", "like", "share", "follow"}
    shows = [(e.room_id, e.action) for e in events if isinstance(e, ev.Show)]
    assert sorted(shows) == sorted((f"room-00{i}", a) for i in range(1, 5) for a in ("start", "end"))
    # In arrival order, within the one-second tick the generator works in.
    stamps = [e.ts for e in events]
    assert all(b > a - 1.0 for a, b in zip(stamps, stamps[1:]))


def test_rate_sets_the_traffic():
    events = all_events(run(duration=90, rooms=5, rate=600))
    steady = [e for e in events if 40 <= e.ts - START < 90]
    assert 480 <= len(steady) / 50 <= 720


def test_surge_and_danmaku_flood_raise_their_traffic():
    base = all_events(run(duration=80, rate=300))
    surge = all_events(run("normal,surge", duration=80, rate=300))
    flood = all_events(run("normal,danmaku-flood", duration=80, rate=300))

    def count(events, kind, value=None):  # during the fault window, 24..56 s
        return sum(1 for e in events if ev.event_type(e) == kind and 24 <= e.ts - START < 56
                   and value in (None, getattr(e, "target", None), getattr(e, "action", None)))

    assert count(surge, "click", "product") > 3 * count(base, "click", "product")
    assert count(surge, "view", "enter") > 2.5 * count(base, "view", "enter")
    assert count(flood, "danmaku") > 10 * count(base, "danmaku")


def test_measured_3g_traces_stall_more_than_the_builtin_network():
    builtin, _, _ = health_stats(all_events(run(duration=120, rate=300)))
    traces = load_traces(TRACES / "hsdpa-3g")
    mobile, _, beacons = health_stats(all_events(run(duration=120, rate=300, traces=traces)))
    assert beacons > 1000
    assert mobile > 2 * builtin


def test_cdn_outage_degrades_that_cdn_and_failover_recovers_the_room():
    # Outage of the hot room's primary CDN from 30 s on; the viewers are failed over at 70 s.
    sim = Simulation("normal,cdn-outage", rooms=2, seed=3, start=START, duration=130, rate=400,
                     fault_at=30, fault_for=100)
    messages = []
    for message in sim.messages():
        if sim.now - START == 70 and not sim.failovers:
            assert sim.apply_failover("room-001", "cdn-b", from_cdn="cdn-a")
        messages.append(message)
    events = all_events(messages)
    before, before_errors, _ = health_stats(events, "room-001", "cdn-a", 0, 30)
    during, during_errors, _ = health_stats(events, "room-001", "cdn-a", 45, 70)
    assert during > 0.05 > before and during_errors > 0.1 > before_errors
    # The other room and the other CDNs of the hot room are unaffected.
    assert health_stats(events, "room-002", None, 45, 70)[0] < 0.02
    assert health_stats(events, "room-001", "cdn-b", 45, 70)[0] < 0.02
    # After the failover nobody plays on cdn-a any more, and the room's stall ratio recovers.
    assert health_stats(events, "room-001", "cdn-a", 71, 130)[2] == 0
    after, _, beacons = health_stats(events, "room-001", None, 80, 130)
    assert beacons > 500 and after < 0.02
    # An unknown room's command is not ours.
    assert not Simulation(rooms=1).apply_failover("room-999", "cdn-b")


def test_stall_storm_raises_stalls_everywhere():
    events = all_events(run("normal,stall-storm", duration=100, rate=400))
    for room in ("room-001", "room-002"):
        assert health_stats(events, room, None, 40, 70)[0] > 3 * health_stats(events, room, None, 0, 30)[0]


def test_trace_errors_name_the_folder_file_and_line(tmp_path):
    with pytest.raises(TraceError, match="does not exist"):
        load_traces(tmp_path / "missing")
    with pytest.raises(TraceError, match="holds no trace files"):
        load_traces(tmp_path)
    (tmp_path / "a.tsv").write_text("0.0\t1.5\n0.5\tfast\n")
    with pytest.raises(TraceError, match=r"a\.tsv, line 2"):
        load_traces(tmp_path)
    (tmp_path / "a.tsv").write_text("0.0\t1.5\n")
    with pytest.raises(TraceError, match="at least two lines"):
        load_traces(tmp_path)
    (tmp_path / "a.tsv").write_text("0.0\t1.5\n1.0\t2.5\n")
    (trace,) = load_traces(tmp_path)
    assert trace.at(0.7) == 2.5 and trace.at(1.7) == 2.5  # it loops


def test_cli_errors_are_clear_and_without_traceback(tmp_path):
    runner = CliRunner()
    result = runner.invoke(simulate, ["--scenario", "normal,party"])
    assert result.exit_code == 2 and "unknown scenario party" in result.output
    result = runner.invoke(simulate, ["--traces", str(tmp_path)])
    assert result.exit_code == 1 and "holds no trace files" in result.output
    result = runner.invoke(simulate, ["--broker", "127.0.0.1:1", "--connect-timeout", "1"])
    assert result.exit_code == 1 and "cannot reach a Kafka broker at 127.0.0.1:1" in result.output
    assert "Traceback" not in result.output
