"""The embedded broker and topic creation, and clear errors when no broker answers."""

import subprocess
import sys
import time

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from livemon.broker import (ALL_TOPICS, CHECKPOINT_TOPIC, BrokerUnavailable, EmbeddedBroker, ensure_topics,
                            free_port, wait_for_broker)
from livemon.ingest.events import EVENT_TOPICS


def test_embedded_broker_creates_the_topics_and_carries_messages(broker):
    counts = ensure_topics(broker, partitions=8)  # idempotent on existing topics
    assert set(ALL_TOPICS) <= set(counts)
    assert {counts[topic] for topic in (*EVENT_TOPICS, CHECKPOINT_TOPIC)} == {8}
    producer = KafkaProducer(bootstrap_servers=broker)
    metadata = producer.send("liveroom.views", b'{"x": 1}', key=b"broker-test-room").get(timeout=10)
    producer.close()
    consumer = KafkaConsumer(bootstrap_servers=broker, consumer_timeout_ms=5000)
    tp = TopicPartition("liveroom.views", metadata.partition)
    consumer.assign([tp])
    consumer.seek(tp, metadata.offset)
    assert next(iter(consumer)).value == b'{"x": 1}'
    consumer.close()


def test_stop_ends_the_broker_process():
    embedded = EmbeddedBroker(partitions=2).start()
    process = embedded.process
    embedded.stop()
    assert process.poll() is not None


def test_unreachable_broker_is_a_clear_error():
    started = time.monotonic()
    with pytest.raises(BrokerUnavailable, match="cannot reach a Kafka broker"):
        wait_for_broker(f"127.0.0.1:{free_port()}", timeout=1.0)
    assert time.monotonic() - started < 5


def run_cli(*args, timeout=60):
    return subprocess.run([sys.executable, "-m", "livemon", *args], capture_output=True, text=True,
                          timeout=timeout)


def test_worker_with_unreachable_broker_exits_without_traceback():
    result = run_cli("worker", "--broker", f"127.0.0.1:{free_port()}", "--web-port", str(free_port()),
                     "--connect-timeout", "1")
    assert result.returncode != 0
    assert "cannot reach a Kafka broker" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("args, message", [
    (("--broker", "no-port-here"), "HOST:PORT"),
    (("--broker", "127.0.0.1:9092", "--step", "-1"), "--step"),
    (("--broker", "127.0.0.1:9092", "--window", "61", "--step", "2"), "multiple of the step"),
])
def test_worker_bad_options_exit_without_traceback(args, message):
    result = run_cli("worker", "--web-port", str(free_port()), *args)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_worker_busy_web_port_is_a_clear_error(broker):
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        result = run_cli("worker", "--broker", broker, "--web-port", str(sock.getsockname()[1]))
    assert result.returncode == 1
    assert "already in use" in result.stderr
    assert "Traceback" not in result.stderr
