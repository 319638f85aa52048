"""What the memory-only embedded broker holds: topics that only people read are rotated (deleted and
re-created empty), which gives their memory back; the topics the product reads back are not."""

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from livemon.broker import CHECKPOINT_TOPIC, DEADLETTER_TOPIC, SNAPSHOTS_TOPIC, EmbeddedBroker


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:")) / 1024


def end_offset(bootstrap: str, topic: str) -> int:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap)
    try:
        tp = TopicPartition(topic, 0)
        return consumer.end_offsets([tp])[tp]
    finally:
        consumer.close()


def test_rotating_the_dead_letters_frees_the_memory_and_the_topic_takes_writes_again():
    with EmbeddedBroker(partitions=2, rotate=(DEADLETTER_TOPIC,), rotate_every=3600) as broker:
        producer = KafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=0)
        before = rss_mib(broker.process.pid)
        for _ in range(100):
            producer.send(DEADLETTER_TOPIC, b"x" * 500_000)
        producer.flush(30)
        full = rss_mib(broker.process.pid)
        assert full - before > 40  # the broker holds the 50 MB it was sent
        assert end_offset(broker.bootstrap, DEADLETTER_TOPIC) >= 100

        broker.rotate_now()
        assert rss_mib(broker.process.pid) < before + 15
        assert end_offset(broker.bootstrap, DEADLETTER_TOPIC) == 0
        producer.send(DEADLETTER_TOPIC, b'{"reason": "late"}').get(timeout=15)  # writable again
        assert end_offset(broker.bootstrap, DEADLETTER_TOPIC) == 1
        producer.close()
        assert broker.rotations == 1
        # the other topics are untouched
        assert end_offset(broker.bootstrap, SNAPSHOTS_TOPIC) == 0


def test_the_rotation_runs_on_its_own_and_stops_with_the_broker():
    broker = EmbeddedBroker(partitions=2, rotate=(DEADLETTER_TOPIC,), rotate_every=0.5).start()
    try:
        producer = KafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=0)
        producer.send(DEADLETTER_TOPIC, b"old").get(timeout=15)
        producer.close()
        import time

        deadline = time.monotonic() + 15
        while broker.rotations < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert broker.rotations >= 2
        assert end_offset(broker.bootstrap, DEADLETTER_TOPIC) == 0
        rotator = broker._rotator
    finally:
        broker.stop()
    assert not rotator.is_alive()


@pytest.mark.parametrize("topic", [SNAPSHOTS_TOPIC, CHECKPOINT_TOPIC, "liveroom.orders"])
def test_topics_the_product_reads_back_are_never_rotated(topic):
    with pytest.raises(ValueError, match="cannot rotate"):
        EmbeddedBroker(rotate=(topic,))
