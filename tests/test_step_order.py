"""A worker's step makes the live snapshots before the final ones (so /metrics has them first):
the same live and final snapshots as the other order, on every step of a show."""

import orjson

from livemon.agents.partition import Partition
from livemon.engine import Engine
from livemon.ingest.events import decode
from livemon.simulator.core import Simulation


def test_live_snapshots_first_change_neither_live_nor_final_ones():
    sim = Simulation(frozenset({"normal", "surge"}), rooms=4, seed=11, duration=150, rate=400)
    first, last = Partition(0, Engine()), Partition(0, Engine())
    steps = finals = 0
    previous = None
    for message in sim.messages():
        events, _ = decode(message.value, message.topic)
        for partition in (first, last):
            partition.engine.ingest(list(events), sim.now)
        if sim.now == previous:
            continue
        previous = sim.now
        # Live first (the worker's order), then the finals ...
        clock, live_a = first.live_step(sim.now, lambda topic, number: None)
        finals_a = first.final_step(clock, [])
        # ... and the finals first, then live.
        finals_b = last.final_step(last.step_clock(sim.now), [])
        live_b = last.engine.live_snapshots(last.step_clock(sim.now))
        assert live_a == live_b, sim.now  # (JSON objects: the order of keys is not a difference)
        assert [(ts, orjson.loads(blob)) for ts, blob in finals_a] == [(ts, orjson.loads(blob)) for ts, blob in finals_b]
        steps += 1
        finals += len(finals_a)
    assert steps > 100 and finals > 300


def test_a_workers_finals_are_the_replays_lines_without_breakdowns_and_products(monkeypatch):
    # The worker's finals go only to the recording: lean, whether read back from the live
    # snapshot kept for them or made again because an event of their instant came after it.
    from livemon.engine import room as room_module

    made, made_whole = [], []  # snapshots made, and those made with their breakdowns and products
    lean_snapshot, parts = room_module.Room._lean_snapshot, room_module.Room._parts
    monkeypatch.setattr(room_module.Room, "_lean_snapshot", lambda self, t: (
        made.append(t), lean_snapshot(self, t))[1])
    monkeypatch.setattr(room_module.Room, "_parts", lambda self, t, *rest: (
        made_whole.append(t), parts(self, t, *rest))[1])
    sim = Simulation(frozenset({"normal", "surge"}), rooms=3, seed=5, duration=90, rate=300,
                     start=1_764_000_000.5)  # ticks across the instants, as producers send
    worker, replay = Partition(0, Engine()), Engine()
    lean, whole = {}, {}
    for n, message in enumerate(sim.messages()):
        events, _ = decode(message.value, message.topic)
        replay.ingest(list(events), sim.now)
        worker.engine.ingest(list(events), sim.now)
        if n % 3 == 0:  # a step between the envelopes of a tick: those after it bring events of
            # instants it showed, and some kept snapshots no longer hold (as in a worker)
            clock, _ = worker.live_step(sim.now, lambda topic, number: None)
            lean.update(((line["room_id"], ts), line) for ts, line in
                        ((ts, orjson.loads(blob)) for ts, blob in worker.final_step(clock, [])))
            whole.update(((line["room_id"], line["ts"]), line) for line in replay.advance(sim.now))
    common = lean.keys() & whole.keys()
    assert len(common) > 150
    for key in common:
        assert lean[key] == {k: v for k, v in whole[key].items() if k not in ("by", "products")}, key
    assert any(line["by"]["source"] for line in whole.values()) and any(line["products"] for line in whole.values())
    assert len(made) > len(made_whole)  # some made again, lean ...
    assert len(made_whole) > len(lean)  # ... the live ones whole (read back for the others)


def test_headline_figures_first_then_the_breakdowns_make_the_same_live_snapshots():
    # A worker shows a step's headline figures before it makes the breakdowns and products (half
    # the live work): meanwhile a snapshot carries those of the step before; completed, it is the
    # snapshot a whole live step makes, parts in the same order.
    sim = Simulation(frozenset({"normal", "surge"}), rooms=3, seed=7, duration=120, rate=300,
                     start=1_764_000_000.5)
    deferred, whole = Partition(0, Engine()), Partition(0, Engine())
    shown: dict = {}
    checked = carried = 0
    for n, message in enumerate(sim.messages()):
        events, _ = decode(message.value, message.topic)
        for partition in (deferred, whole):
            partition.engine.ingest(list(events), sim.now)
        if n % 4:
            continue
        clock, first = deferred.live_step(sim.now, lambda topic, number: None, deferred=True)
        _, expected = whole.live_step(sim.now, lambda topic, number: None)
        assert first.keys() == expected.keys()
        for room, snapshot in first.items():
            assert {k: v for k, v in snapshot.items() if k not in ("by", "products")} == \
                {k: v for k, v in expected[room].items() if k not in ("by", "products")}
            before = shown.get(room)
            if before is not None and snapshot is not before:  # made now: the parts shown before
                assert snapshot["by"] is before["by"] and snapshot["products"] is before["products"]
                carried += snapshot["by"] != expected[room]["by"]
        deferred.complete_live()
        for room, snapshot in first.items():
            assert list(snapshot) == list(expected[room]) and snapshot == expected[room]
            checked += bool(snapshot["by"]["source"])
        shown = first
        assert deferred.final_step(clock, []) == whole.final_step(clock, [])
    assert checked > 50 and carried > 10
