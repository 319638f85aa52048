"""Consumer lag seen from outside the workers: `livemon lag-exporter` reads the broker's committed
and end offsets, so the lag shows (and its alert's expression holds) when every worker is dead.

Real parts: the embedded broker, a real worker committing in its group, the exporter as a
process, Prometheus scraping it with the shipped rule files.

Tansu 0.6 answers ListOffsets(latest) with the last record batch's base offset + 1, so the events
here go one record per batch (as real Kafka would count any batching): the expected lag is exact.
"""

from __future__ import annotations

import json
import time

import pytest
import yaml
from kafka import KafkaProducer
from livemon.broker import free_port
from livemon.dashboards.queries import RULE_DIR, rule_files
from livemon.kafka_connection import KafkaConnection
from livemon.lag import LagExporter
from livemon.processes import LivemonProcess

GROUP = "lag-outside"
ROOM = "lag-room-1"


def send_one_by_one(bootstrap: str, count: int, start: int) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=0)
    now = time.time()
    for i in range(start, start + count):
        event = {"type": "view", "room_id": ROOM, "user_id": f"u{i}", "ts": now, "action": "enter"}
        producer.send("liveroom.views", json.dumps(event).encode(), key=ROOM.encode()).get(10)
    producer.close()


def views_end(bootstrap: str) -> int:
    """The end offsets of every partition of liveroom.views, summed, as the broker reports them."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap)
    try:
        parts = [TopicPartition("liveroom.views", p) for p in consumer.partitions_for_topic("liveroom.views")]
        return sum(consumer.end_offsets(parts).values())
    finally:
        consumer.close()


def exporter_metrics(port: int) -> dict[tuple, float]:
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        body = response.read().decode()
    return {(sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(body) for sample in family.samples}


def group_total(metrics: dict, name: str, aggregate=sum) -> float:
    values = [v for (n, labels), v in metrics.items() if n == name and dict(labels).get("group") == GROUP]
    return aggregate(values) if values else float("nan")


def wait_until(predicate, timeout: float, what: str, log=lambda: ""):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}\n{log()}")
        time.sleep(0.3)


def test_lag_shows_from_the_broker_when_every_worker_is_dead(make_broker, start_worker, prometheus_server,
                                                             tmp_path):
    bootstrap = make_broker(partitions=2)
    worker = start_worker(bootstrap, "--no-alerts", "--no-web-page", "--checkpoint-interval", "0.5", group=GROUP)
    port = free_port()
    exporter = LivemonProcess(["lag-exporter", "--broker", f"127.0.0.1:{free_port()},{bootstrap}",
                               "--groups", GROUP, "--web-port", str(port), "--interval", "0.5"],
                              str(tmp_path / "exporter.log"))
    try:
        prometheus = prometheus_server([f"127.0.0.1:{port}"], rule_files=rule_files())
        send_one_by_one(bootstrap, 12, 0)

        # The worker reads the 12 and commits them: no lag, seen from the broker.
        def caught_up():
            try:
                metrics = exporter_metrics(port)
            except OSError:
                return False
            return group_total(metrics, "livemon_group_lag_messages") == 0 and \
                worker.value("livemon_events_total", type="view") == 12
        wait_until(caught_up, 60, "the worker did not commit its reads", exporter.log_tail)
        committed = views_end(bootstrap)  # what the group committed: it lags by nothing

        worker.kill()  # SIGKILL: no worker is left, and with it its own lag gauge
        send_one_by_one(bootstrap, 7, 12)
        # 7 records, as the broker counts them (a produce retried under load may store one twice).
        expected = views_end(bootstrap) - committed
        assert expected >= 7
        metrics = wait_until(lambda: (m := exporter_metrics(port)) and
                             group_total(m, "livemon_group_lag_messages") == expected and m,
                             30, "the lag of the dead group did not show", exporter.log_tail)
        lag_partitions = {dict(labels)["partition"] for (name, labels), value in metrics.items()
                          if name == "livemon_group_lag_messages" and value == expected}
        assert len(lag_partitions) == 1  # one room: one partition waits
        first_age = group_total(metrics, "livemon_group_commit_age_seconds", max)
        time.sleep(1.5)
        later = exporter_metrics(port)
        assert group_total(later, "livemon_group_commit_age_seconds", max) >= first_age + 1
        assert later[("livemon_lag_exporter_up", frozenset())] == 1

        # Prometheus scrapes it; the shipped alert's expression, its threshold lowered to a
        # second, names the group (its real threshold is proven by the promtool unit test).
        rule = next(r for g in yaml.safe_load((RULE_DIR / "alerts.yml").read_text())["groups"]
                    for r in g["rules"] if r.get("alert") == "LivemonGroupLagOutside")
        expr = rule["expr"].replace("> 120", "> 1")
        assert expr != rule["expr"]
        prometheus.wait(lambda: any(r["metric"].get("group") == GROUP for r in prometheus.query(expr)),
                        30, "Prometheus did not evaluate the outside-lag alert's expression to the group")
        lag = prometheus.query(f'sum by (group) (livemon_group_lag_messages{{group="{GROUP}"}})')
        assert float(lag[0]["value"][1]) == expected
    finally:
        exporter.stop()
    assert "Traceback" not in exporter.log_tail()


def test_a_broker_that_goes_away_is_reported_not_raised(make_broker):
    """The exporter survives the broker: `up` goes to 0 with the cause, and back to 1."""
    bootstrap = make_broker(partitions=1)
    exporter = LagExporter(KafkaConnection.of(bootstrap), (GROUP,), ("liveroom.views",), interval=1.0)
    assert exporter.poll() == {(GROUP, "liveroom.views", 0): 0}
    exporter.connection = KafkaConnection.of(f"127.0.0.1:{free_port()}")
    exporter._failed("forced reconnect")  # drop the client so the next poll connects anew
    assert exporter.poll() == {} and exporter.error
    from prometheus_client import generate_latest
    assert b"livemon_lag_exporter_up 0.0" in generate_latest(exporter.registry)
    exporter.connection = KafkaConnection.of(bootstrap)
    assert exporter.poll() == {(GROUP, "liveroom.views", 0): 0} and exporter.error is None
    exporter.stop()


def test_bad_options_are_clear_errors():
    from click.testing import CliRunner
    from livemon.lag import lag_exporter

    result = CliRunner().invoke(lag_exporter, ["--broker", "a:9092,b", "--groups", "g"])
    assert result.exit_code == 2 and "HOST:PORT" in result.output
    result = CliRunner().invoke(lag_exporter, ["--broker", "a:9092", "--groups", " , "])
    assert result.exit_code == 2 and "--groups" in result.output


@pytest.mark.parametrize("name", ["livemon_group_lag_messages", "livemon_group_commit_age_seconds"])
def test_the_metrics_are_documented(name):
    from pathlib import Path

    assert name in (Path(__file__).parents[1] / "docs" / "PRODUCTION.md").read_text()
