"""A worker applies a big drained batch in slices (`APPLY_SLICE` messages, the loop answering
scrapes and stepping between them): slices give the same state, offsets and merge order as one go."""

import math
from livemon.agents.partition import Applied, Partition, Record
from livemon.engine import Engine
from livemon.ingest.events import encode
from livemon.ingest.routing import Partitioner
from livemon.simulator.core import Simulation


def _backlog() -> list[Record]:
    offsets: dict[str, int] = {}
    messages = []
    sim = Simulation(frozenset({"normal", "surge"}), rooms=3, seed=4, duration=40, rate=300)
    for m in sim.messages():
        offset = offsets[m.topic] = offsets.get(m.topic, -1) + 1
        messages.append(Record(m.topic, 0, offset, sim.now, m.key.encode(), encode(list(m.events))))
    return messages


def test_slices_give_the_state_of_one_go():
    messages = _backlog()
    home = Partitioner(1)
    whole, sliced = Partition(0, Engine()), Partition(0, Engine())
    for partition in (whole, sliced):
        for sequence, message in enumerate(messages):
            partition.receive(message, sequence, 0.0)
    now = messages[-1].timestamp + 1
    whole.apply_due(math.inf, home, now, Applied(), {})
    slices = 0
    while sliced.pending:
        before = len(sliced.pending)
        applied = Applied()
        sliced.apply_due(math.inf, home, now, applied, {}, limit=50)
        assert before - len(sliced.pending) == min(50, before)  # at most a slice, in merge order
        slices += 1
    assert slices > 10
    assert sliced.offsets == whole.offsets
    assert sliced.engine.export_rooms(sorted(sliced.engine.rooms)) == whole.engine.export_rooms(sorted(whole.engine.rooms))
    assert sliced.engine.finish() == whole.engine.finish()


def test_a_backlog_read_whole_keeps_the_partition_behind_until_it_is_applied():
    # A worker whose consumer was stuck reads a backlog at once, then applies it a slice at a
    # time, stepping between slices: the broker has nothing more (received == high watermark), yet
    # the partition must stay behind, or the rest of the backlog would be late on the wall clock.
    import time

    messages = _backlog()
    age = time.time() - messages[-1].timestamp + 20  # the whole show, 20 s ago
    partition, home = Partition(0, Engine()), Partitioner(1)
    highs = {}
    for message in messages:
        highs[message.topic] = message.offset + 1
    highwater = lambda topic, number: highs.get(topic, 0)  # noqa: E731
    partition.check_behind(highwater)  # messages wait before any is read: behind at once
    assert partition.behind
    for sequence, message in enumerate(messages):
        partition.receive(message._replace(timestamp=message.timestamp + age), sequence, time.time())
    partition.apply_due(math.inf, home, time.time(), Applied(), {}, limit=50)
    partition.check_behind(highwater)  # a step between two slices: nothing waits at the broker
    assert partition.behind and partition.pending
    while partition.pending:
        partition.apply_due(math.inf, home, time.time(), Applied(), {}, limit=50)
    partition.check_behind(highwater)
    assert not partition.behind
