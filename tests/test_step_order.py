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
