"""`livemon lag-exporter`: consumer lag seen from outside the workers.

A worker reports its own lag (`livemon_consumer_lag_messages`) only while it runs: when every
worker is dead, the gauge is gone with them. This exporter asks the broker instead, over the same
Kafka connection options as every other command: each poll reads the consumer group's committed
offsets (OffsetFetch) and the partitions' end offsets (ListOffsets) and serves on /metrics

    livemon_group_lag_messages{group, topic, partition}        end offset - committed offset
    livemon_group_commit_age_seconds{group, topic, partition}  how long messages have waited on a
                                                              partition whose committed offset has
                                                              not moved (0 while it has none waiting)
    livemon_lag_exporter_up                                    1 if the last poll of the broker worked

A partition the group never committed counts from its earliest offset (the workers start a new
group at the beginning). Only what the broker holds is read: the exporter joins no group and
never moves an offset. The state is one entry per partition of the watched topics.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

import click
from livemon.kafka_connection import KafkaConnection, KafkaSecurity, describe_error
from livemon.settings import build, config_option, options, setting
from livemon.topics import INPUT_TOPICS

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LagSettings:
    bootstrap: str = setting("127.0.0.1:9092", "Kafka bootstrap servers, HOST:PORT[,HOST:PORT...].",
                             flag="--broker", envvar="LIVEMON_BROKER")
    groups: str = setting("livemon", "Consumer groups to watch, comma-separated (the workers' --group).",
                          envvar="LIVEMON_LAG_GROUPS")
    topics: str = setting(",".join(INPUT_TOPICS), "Topics whose lag counts, comma-separated.",
                          envvar="LIVEMON_LAG_TOPICS")
    web_host: str = setting("127.0.0.1", "Address of /metrics.", envvar="LIVEMON_LAG_HOST")
    web_port: int = setting(9309, "Port of /metrics.", minimum=0, maximum=65535, envvar="LIVEMON_LAG_PORT")
    interval: float = setting(10.0, "Seconds between polls of the broker.", minimum=0.2,
                              envvar="LIVEMON_LAG_INTERVAL")
    kafka: KafkaSecurity = setting(default_factory=KafkaSecurity)

    def __post_init__(self):
        if not self.group_list or not self.topic_list:
            raise ValueError("--groups and --topics each need at least one name")

    @property
    def group_list(self) -> tuple[str, ...]:
        return tuple(name.strip() for name in self.groups.split(",") if name.strip())

    @property
    def topic_list(self) -> tuple[str, ...]:
        return tuple(name.strip() for name in self.topics.split(",") if name.strip())


class LagExporter:
    """Polls the broker; `poll()` once, or `start()` a thread that polls every `interval`."""

    def __init__(self, connection: KafkaConnection, groups: tuple[str, ...], topics: tuple[str, ...],
                 interval: float = 10.0, clock=time.time):
        from prometheus_client import CollectorRegistry, Gauge

        self.connection, self.groups, self.topics = connection, groups, topics
        self.interval, self.clock = interval, clock
        self.registry = CollectorRegistry()
        labels = ("group", "topic", "partition")
        self.lag = Gauge("livemon_group_lag_messages", "Messages of the partition not yet committed by the "
                         "consumer group, from the broker's offsets.", labels, registry=self.registry)
        self.age = Gauge("livemon_group_commit_age_seconds", "Seconds the group's committed offset of the "
                         "partition has not moved while messages wait (0 when none wait).", labels,
                         registry=self.registry)
        self.up = Gauge("livemon_lag_exporter_up", "1 if the last poll of the broker worked.",
                        registry=self.registry)
        self.last_poll = Gauge("livemon_lag_exporter_last_poll_timestamp_seconds",
                               "When the broker was last polled successfully.", registry=self.registry)
        self.error: str | None = None
        # (group, topic, partition) -> (committed offset, since when it has been that while lagging)
        self._seen: dict[tuple[str, str, int], tuple[int, float]] = {}
        self._admin = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def poll(self) -> dict[tuple[str, str, int], int]:
        """Read the offsets once and update the gauges; return {(group, topic, partition): lag}."""
        from kafka import TopicPartition
        from kafka.admin import OffsetSpec
        from kafka.errors import KafkaError

        try:
            if self._admin is None:
                self._admin = self.connection.admin(timeout=max(5.0, self.interval))
            partitions = [TopicPartition(topic, p) for topic in self.topics
                          for p in sorted(self._partitions(topic))]
            ends = self._admin.list_partition_offsets({tp: OffsetSpec.LATEST for tp in partitions})
            starts = self._admin.list_partition_offsets({tp: OffsetSpec.EARLIEST for tp in partitions})
            committed = self._admin.list_group_offsets({group: None for group in self.groups})
        except KafkaError as error:
            self._failed(describe_error(error, self.connection))
            return {}
        except OSError as error:
            self._failed(f"{type(error).__name__}: {error}")
            return {}
        now = self.clock()
        lags: dict[tuple[str, str, int], int] = {}
        for group in self.groups:
            offsets = committed.get(group) or {}
            for tp in partitions:
                end = ends[tp].offset
                mark = offsets.get(tp)
                position = mark.offset if mark is not None and mark.offset >= 0 else starts[tp].offset
                lag = max(0, end - position)
                key = (group, tp.topic, tp.partition)
                lags[key] = lag
                before = self._seen.get(key)
                since = now if lag == 0 or before is None or before[0] != position else before[1]
                self._seen[key] = (position, since)
                labels = (group, tp.topic, str(tp.partition))
                self.lag.labels(*labels).set(lag)
                self.age.labels(*labels).set(0 if lag == 0 else now - since)
        for key in set(self._seen) - set(lags):   # a deleted topic or partition
            del self._seen[key]
            self.lag.remove(key[0], key[1], str(key[2]))
            self.age.remove(key[0], key[1], str(key[2]))
        self.up.set(1)
        self.last_poll.set(now)
        self.error = None
        return lags

    def _partitions(self, topic: str) -> set[int]:
        described = self._admin.describe_topics([topic])
        return {p["partition"] if "partition" in p else p["partition_index"]
                for d in described if not d.get("error_code") for p in d.get("partitions", ())}

    def _failed(self, cause: str) -> None:
        if cause != self.error:
            log.warning("cannot read offsets from %s: %s", self.connection.bootstrap, cause)
        self.error = cause
        self.up.set(0)
        if self._admin is not None:
            try:
                self._admin.close()
            except Exception:  # noqa: BLE001 - a broken client is dropped either way
                pass
            self._admin = None

    def start(self) -> LagExporter:
        self._thread = threading.Thread(target=self._run, name="lag-exporter", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll()
            except Exception as error:  # noqa: BLE001 - an odd answer must not end the exporter
                self._failed(f"{type(error).__name__}: {error}")
            self._stop.wait(self.interval)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.interval + 10)
        if self._admin is not None:
            self._admin.close()
            self._admin = None


@click.command("lag-exporter")
@config_option("lag-exporter")
@options(LagSettings)
def lag_exporter(**values):
    """Serve the consumer groups' lag read from the broker's committed offsets on /metrics."""
    from wsgiref.simple_server import WSGIRequestHandler, make_server

    from livemon.kafka_connection import KafkaConnectionError
    from prometheus_client import make_wsgi_app

    try:
        settings = build(LagSettings, values)
        connection = KafkaConnection.of(settings.bootstrap, settings.kafka)
    except ValueError as error:
        raise click.UsageError(str(error)) from None
    try:
        connection.check(timeout=10)
    except KafkaConnectionError as error:
        raise click.ClickException(str(error)) from None
    exporter = LagExporter(connection, settings.group_list, settings.topic_list, settings.interval)

    class Quiet(WSGIRequestHandler):
        def log_message(self, *args):
            pass
    try:
        server = make_server(settings.web_host, settings.web_port, make_wsgi_app(exporter.registry),
                             handler_class=Quiet)
    except OSError as error:
        raise click.ClickException(f"cannot listen on {settings.web_host}:{settings.web_port}: "
                                   f"{error.strerror}") from None
    exporter.start()
    click.echo(f"livemon lag-exporter: broker {connection.describe()}, groups {', '.join(settings.group_list)}, "
               f"metrics http://{settings.web_host}:{server.server_port}/metrics", err=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        exporter.stop()
        server.server_close()
