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


def test_a_message_a_second_ahead_of_a_lagging_topic_is_applied_not_held_for_it():
    # Producers send one-second envelopes: some topic of a partition is usually a second behind,
    # with messages unread. A lone order a second ahead of it goes in now (within the slack); one
    # further ahead than the slack still waits for the lagging topic (a backlog's merge).
    from livemon.agents.partition import MERGE_SLACK
    from livemon.ingest.events import Order, View

    import time

    t = 1_000_000.0
    partition, home = Partition(0, Engine()), Partitioner(1)
    partition.loaded_at = time.monotonic() - 60  # assigned a minute ago: the other topics are quiet
    highs = {"liveroom.views": 5, "liveroom.orders": 2}  # views: 4 more written, not read yet
    highwater = lambda topic, number: highs.get(topic, 0)  # noqa: E731
    view = View("room-1", "u1", t - 0.5, "enter")
    partition.receive(Record("liveroom.views", 0, 0, t, b"room-1", encode([view])), 0, t)
    soon = Order("room-1", "u1", t + 1.0, "o-1", "sku-1", 9.9, "paid")
    late = Order("room-1", "u1", t + MERGE_SLACK + 0.5, "o-2", "sku-1", 9.9, "paid")
    partition.receive(Record("liveroom.orders", 0, 0, t + 1.0, b"room-1", encode([soon])), 1, t)
    partition.receive(Record("liveroom.orders", 0, 1, t + MERGE_SLACK + 0.5, b"room-1", encode([late])), 2, t)
    bound = partition.release_bound(highwater)
    assert bound == t + MERGE_SLACK
    applied = Applied()
    partition.apply_due(bound, home, t + 1.1, applied, {})
    assert partition.offsets == {"liveroom.views": 1, "liveroom.orders": 1}  # the order a second ahead is in
    assert [message.offset for _, _, message in partition.pending] == [1]  # the one beyond the slack waits
    assert applied.counts["order"] == 1


def test_a_topic_with_messages_unread_at_the_broker_is_waited_for_past_the_silence_hold():
    # A backlog's biggest topic can go seconds without a fetch (the others' records fill them).
    # It is slow, not silent: the other topics' newer messages wait for it, or its events, once
    # read, would be late for rooms the others moved on. A topic with nothing unread that went
    # quiet holds nothing back after HOLD_SECONDS; a slow one is given up on after
    # UNREAD_HOLD_SECONDS.
    import time

    from livemon.agents.partition import HOLD_SECONDS, MERGE_SLACK, UNREAD_HOLD_SECONDS
    from livemon.ingest.events import Order, View

    t = 1_000_000.0
    now = time.monotonic()
    partition = Partition(0, Engine())
    partition.loaded_at = now - 600
    view = View("room-1", "u1", t, "enter")
    order = Order("room-1", "u1", t + 10, "o-1", "sku-1", 9.9, "paid")
    partition.receive(Record("liveroom.views", 0, 0, t, b"room-1", encode([view])), 0, t)
    partition.receive(Record("liveroom.orders", 0, 0, t + 10, b"room-1", encode([order])), 1, t)
    highs = {"liveroom.views": 1, "liveroom.orders": 1}
    highwater = lambda topic, number: highs.get(topic, 0)  # noqa: E731

    partition.heard["liveroom.views"] = now - HOLD_SECONDS - 5  # quiet for 8 s, everything read
    assert partition.release_bound(highwater) == math.inf
    highs["liveroom.views"] = 50  # the same quiet, with 49 messages unread at the broker
    assert partition.release_bound(highwater) == t + MERGE_SLACK  # the order waits for the views
    partition.heard["liveroom.views"] = now - UNREAD_HOLD_SECONDS - 1
    assert partition.release_bound(highwater) == math.inf  # given up on: its fetches fail
