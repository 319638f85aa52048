"""The embedded broker trimmed (Tansu's memory storage has no retention and no DeleteRecords): what
nothing may still read is dropped and its memory given back, every offset stays where it was, and
producers, consumers and a real worker go on as if nothing happened."""

import asyncio
import time

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from livemon.broker import (CHECKPOINT_TOPIC, DEADLETTER_TOPIC, EVENT_TOPICS, SNAPSHOTS_TOPIC, EmbeddedBroker,
                            _batches, _Wire)
from tests.fixtures.worker import mismatches, read_events, replay_at, simulate, snapshot_instants, wait_caught_up


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:")) / 1024


def offsets(bootstrap: str, topic: str, partition: int = 0) -> tuple[int, int]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap)
    try:
        tp = TopicPartition(topic, partition)
        return consumer.beginning_offsets([tp])[tp], consumer.end_offsets([tp])[tp]
    finally:
        consumer.close()


def read_all(bootstrap: str, topic: str, partition: int = 0, start: int | None = None) -> list[tuple]:
    """Every record a kafka-python consumer reads from `start` (default: the beginning):
    (offset, key, value, timestamp, headers)."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, consumer_timeout_ms=1000)
    try:
        tp = TopicPartition(topic, partition)
        consumer.assign([tp])
        if start is None:
            consumer.seek_to_beginning(tp)
        else:
            consumer.seek(tp, start)
        return [(m.offset, m.key, m.value, m.timestamp, list(m.headers)) for m in consumer]
    finally:
        consumer.close()


def read_all_aiokafka(bootstrap: str, topic: str, partition: int = 0) -> list[tuple]:
    from aiokafka import AIOKafkaConsumer
    from aiokafka import TopicPartition as Part

    async def read():
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
        await consumer.start()
        try:
            tp = Part(topic, partition)
            consumer.assign([tp])
            await consumer.seek_to_beginning(tp)
            out = []
            while True:
                got = await consumer.getmany(tp, timeout_ms=1500)
                if not got:
                    return out
                out += [(m.offset, m.key, m.value) for m in got[tp]]
        finally:
            await consumer.stop()
    return asyncio.run(read())


def stored_records(broker: EmbeddedBroker, topic: str, partition: int) -> tuple[int, int]:
    """(records the broker holds for a partition, not the trimmer's padding; its end offset)."""
    wire = _Wire(broker.host, broker.private_port)
    try:
        held, offset = 0, 0
        while True:
            high, data = wire.fetch(topic, partition, offset)
            start = offset
            for batch in _batches(data):
                if batch.base >= offset:  # (an answer may repeat a batch: see Trimmer._read)
                    held += 0 if batch.control else batch.next - batch.base
                    offset = batch.next
            if offset >= high or offset == start:
                return held, high
    finally:
        wire.close()


def test_a_trim_drops_old_records_frees_memory_and_keeps_every_offset():
    with EmbeddedBroker(partitions=2, trim_every=3600, min_trim_bytes=1) as broker:
        producer = KafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=0, acks="all", enable_idempotence=True)
        before = rss_mib(broker.process.pid)
        for _ in range(40):
            producer.send(DEADLETTER_TOPIC, b"x" * 500_000, partition=0)
        producer.flush(120)
        full = rss_mib(broker.process.pid)
        assert full - before > 15  # the broker holds the 20 MB it was sent
        time.sleep(0.5)
        between = time.time()  # the trim keeps what is newer than this
        time.sleep(0.5)
        for i in range(5):  # recent: kept
            producer.send(DEADLETTER_TOPIC, f"recent-{i}".encode(), key=b"k", headers=[("h", b"v")],
                          partition=0).get(timeout=15)
        kept_before = read_all(broker.bootstrap, DEADLETTER_TOPIC, start=40)
        assert len(kept_before) == 5

        broker.trimmer.horizon = time.time() - between
        round_ = broker.trim_now()
        assert round_.dropped_records == {DEADLETTER_TOPIC: 40}
        assert rss_mib(broker.process.pid) < before + 8  # the memory is given back
        # The kept records are where they were, byte for byte; the offsets did not move.
        assert offsets(broker.bootstrap, DEADLETTER_TOPIC)[1] == 45
        assert read_all(broker.bootstrap, DEADLETTER_TOPIC) == kept_before
        assert [r[0] for r in read_all_aiokafka(broker.bootstrap, DEADLETTER_TOPIC)] == [40, 41, 42, 43, 44]
        # The same idempotent producer writes on, at the next offset.
        assert producer.send(DEADLETTER_TOPIC, b"after", partition=0).get(timeout=15).offset == 45
        assert stored_records(broker, DEADLETTER_TOPIC, 0) == (6, 46)
        producer.close()
        # Nothing else was touched, and a trim with nothing worth dropping changes nothing.
        assert offsets(broker.bootstrap, SNAPSHOTS_TOPIC) == (0, 0)
        broker.trimmer.horizon = 3600
        assert broker.trim_now().dropped_records == {}
        assert broker.trims == 1


def old_and_recent_dead_letters(broker: EmbeddedBroker) -> tuple[float, list]:
    """20 dead letters, then 5 a second later: (a time between them, the 5 as read)."""
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=0, acks="all")
    for _ in range(20):
        producer.send(DEADLETTER_TOPIC, b"x" * 100_000, partition=0)
    producer.flush(60)
    time.sleep(0.5)
    between = time.time()
    time.sleep(0.5)
    for i in range(5):
        producer.send(DEADLETTER_TOPIC, f"recent-{i}".encode(), partition=0).get(timeout=15)
    producer.close()
    return between, read_all(broker.bootstrap, DEADLETTER_TOPIC, start=20)


def test_a_log_read_with_a_batch_missing_is_read_again_before_it_is_cut(monkeypatch):
    # Read while producers write, a partition may show a later batch before an earlier one: the
    # trim reads it again with the clients held, and cuts only what it read whole.
    with EmbeddedBroker(partitions=1, trim_every=3600, min_trim_bytes=1) as broker:
        between, kept_before = old_and_recent_dead_letters(broker)
        trimmer, read, missed = broker.trimmer, broker.trimmer._read, []

        def read_missing_one(wire, topic, partition, start=0):
            high, batches = read(wire, topic, partition, start)
            if topic == DEADLETTER_TOPIC and start == 0 and not missed:
                missed.append(batches.pop(22))  # one of the recent batches, kept by the trim
            return high, batches

        monkeypatch.setattr(trimmer, "_read", read_missing_one)
        trimmer.horizon = time.time() - between
        assert broker.trim_now().dropped_records == {DEADLETTER_TOPIC: 20}
        assert missed and read_all(broker.bootstrap, DEADLETTER_TOPIC) == kept_before
        assert stored_records(broker, DEADLETTER_TOPIC, 0) == (5, 25)


def test_a_batch_repeated_in_a_fetch_answer_is_read_once(monkeypatch):
    # Tansu, waiting for more at a partition's end, may repeat a batch in one answer (seen under
    # load: a 6-record batch 78 times); the trim reads each batch once and cuts the log whole.
    import livemon.broker

    with EmbeddedBroker(partitions=1, trim_every=3600, min_trim_bytes=1) as broker:
        between, kept_before = old_and_recent_dead_letters(broker)
        split, repeated = livemon.broker._batches, []

        def with_repeats(data):
            batches = split(data)
            repeated.extend(batches[-1:])
            return batches + batches[-1:] * 3

        monkeypatch.setattr(livemon.broker, "_batches", with_repeats)
        broker.trimmer.horizon = time.time() - between
        assert broker.trim_now().dropped_records == {DEADLETTER_TOPIC: 20}
        assert repeated
        monkeypatch.undo()
        assert read_all(broker.bootstrap, DEADLETTER_TOPIC) == kept_before
        assert stored_records(broker, DEADLETTER_TOPIC, 0) == (5, 25)


def test_clients_wait_for_a_trim_and_lose_nothing():
    """A producer sending all along: the trim holds its requests and every record it sent is there,
    in order, at consecutive offsets."""
    import threading

    with EmbeddedBroker(partitions=2, trim_every=3600, horizon=0, min_trim_bytes=1) as broker:
        producer = KafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=0, acks="all", enable_idempotence=True)
        sent, stop = [], threading.Event()

        def send():
            i = 0
            while not stop.is_set():
                sent.append(producer.send(DEADLETTER_TOPIC, f"{i}".encode(), partition=0))
                i += 1
                time.sleep(0.001)
        sender = threading.Thread(target=send)
        sender.start()
        trims = []
        try:
            for _ in range(3):
                time.sleep(0.5)
                trims.append(broker.trim_now())
        finally:
            stop.set()
            sender.join()
        offsets_sent = [future.get(timeout=15).offset for future in sent]
        producer.close()
    assert sum(t.dropped_records.get(DEADLETTER_TOPIC, 0) for t in trims if t) > 100
    assert offsets_sent == list(range(len(sent)))  # every send acknowledged, none lost or reordered


def test_requests_that_get_no_answer_do_not_keep_a_trim_waiting():
    """A Produce with acks=0 is never answered: the gate must not wait for its answer."""
    with EmbeddedBroker(partitions=2, trim_every=3600, horizon=0, min_trim_bytes=1) as broker:
        producer = KafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=0, acks=0)
        for i in range(50):
            producer.send(DEADLETTER_TOPIC, f"{i}".encode(), partition=0)
        producer.flush(15)
        deadline = time.monotonic() + 15
        while offsets(broker.bootstrap, DEADLETTER_TOPIC)[1] < 50 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert broker.gate.in_flight == 0  # nothing owed: acks=0 sends are not counted
        round_ = broker.trim_now()  # None if the gate had waited in vain for an answer
        assert round_ is not None and round_.dropped_records == {DEADLETTER_TOPIC: 50}
        producer.close()


def test_a_broker_without_trimming_has_no_gate_and_bad_settings_are_errors():
    with pytest.raises(ValueError, match="trim_every"):
        EmbeddedBroker(trim_every=0)
    with EmbeddedBroker(partitions=2) as broker:
        assert broker.gate is None
        with pytest.raises(RuntimeError, match="without trimming"):
            broker.trim_now()


WORKER_ARGS = ("--no-alerts", "--no-web-page", "--checkpoint-interval", "1")


def test_a_worker_killed_after_trims_resumes_exactly(start_worker, tmp_path):
    """Trims during a show drop what the workers' checkpoints no longer need; a worker killed after
    them is replaced by one that loads the kept checkpoints and reads on from the kept input, and
    every metric equals the replay of everything that was sent."""
    with EmbeddedBroker(partitions=4, trim_every=3600, horizon=5, min_trim_bytes=1) as broker:
        first = start_worker(broker.bootstrap, *WORKER_ARGS)
        out = str(tmp_path / "events.jsonl")
        simulator = simulate(broker.bootstrap, out, "--scenario", "normal", "--rooms", "4", "--rate", "300",
                             "--duration", "60", "--speed", "3", "--seed", "5")
        dropped = {}
        # Trims every 4 s while the show runs (at least 3), until one has had checkpoints to drop:
        # a loaded machine may take longer to write the 4 a partition needs (3 are kept).
        rounds, deadline = 0, time.monotonic() + 60
        while rounds < 3 or (not dropped.get(CHECKPOINT_TOPIC) and time.monotonic() < deadline):
            time.sleep(4)
            rounds += 1
            for topic, n in broker.trim_now().dropped_records.items():
                dropped[topic] = dropped.get(topic, 0) + n
        assert sum(dropped.get(topic, 0) for topic in EVENT_TOPICS) > 100, dropped
        assert dropped.get(CHECKPOINT_TOPIC, 0) > 0, dropped
        first.kill()
        second = start_worker(broker.bootstrap, *WORKER_ARGS)
        assert simulator.wait(timeout=90) == 0, simulator.stdout.read()
        events = read_events(out)
        metrics = wait_caught_up([second], events)
        assert (second.value("livemon_checkpoints_restored_total") or 0) > 0
        assert not second.value("livemon_partition_log_resets_total")
        instants = snapshot_instants(metrics)
        rooms = {event["room_id"] for event in events}
        records = replay_at(out, {room: instants[room] for room in rooms}, str(tmp_path / "timeline.jsonl"))
        assert set(records) == rooms
        assert mismatches(metrics, records) == []
        # What the broker holds: only what the newest checkpoints resume from, less than was sent.
        broker.trim_now()
        stored = [stored_records(broker, topic, p) for topic in EVENT_TOPICS for p in range(4)]
        held, sent = sum(s[0] for s in stored), sum(s[1] for s in stored)
        assert held < sent - 100, (held, sent)


def test_a_trim_holds_only_the_requests_on_the_topics_it_cuts():
    """While the gate holds the snapshots topic, events flow on: a Produce and a Fetch of an input
    topic (kafka-python's producer, the worker's aiokafka consumer) pass; a Produce to the held
    topic waits until the gate opens. (Requests of one connection stay in order: a client's
    request on another topic waits behind its held one; an events producer writes no snapshots.)"""
    from aiokafka import AIOKafkaConsumer
    from aiokafka.structs import TopicPartition as AioPartition

    views = EVENT_TOPICS[0]
    with EmbeddedBroker(partitions=1, trim_every=3600) as broker:
        producer, steps = (KafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=0, acks=1) for _ in "ab")
        producer.send(views, b"before", partition=0).get(timeout=15)  # metadata known before the gate closes
        steps.send(SNAPSHOTS_TOPIC, b"before", partition=0).get(timeout=15)

        async def consume_while_closed() -> list[bytes]:
            consumer = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap, fetch_max_wait_ms=100)
            await consumer.start()
            try:
                consumer.assign([AioPartition(views, 0)])
                consumer.seek(AioPartition(views, 0), 1)
                await consumer.getmany(timeout_ms=300)  # connected and fetching
                assert broker.gate.close([SNAPSHOTS_TOPIC], timeout=5)
                try:
                    held = steps.send(SNAPSHOTS_TOPIC, b"held", partition=0)
                    passed = producer.send(views, b"during", partition=0).get(timeout=5)
                    assert passed.offset == 1
                    got = await consumer.getmany(timeout_ms=3000)
                    await asyncio.sleep(0.5)
                    assert not held.is_done  # still waiting at the gate
                finally:
                    broker.gate.open()
                assert held.get(timeout=15).offset == 1
                return [record.value for records in got.values() for record in records]
            finally:
                await consumer.stop()

        assert asyncio.run(consume_while_closed()) == [b"during"]
        assert broker.gate.held >= 1
        producer.close()
        steps.close()
