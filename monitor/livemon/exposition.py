"""Prometheus exposition of the live room snapshots (SPEC §7) and of the worker's own health.

Room metrics come from a custom collector that builds its metric families straight from the
latest live snapshots at scrape time: no Gauge child object per room and label set to keep in
step with rooms coming and going, and nothing to clean up when a room is forgotten. The text is
rendered at most once per step (snapshots change once per step), so scrapes stay cheap with
thousands of rooms.

Null metrics are omitted rather than exported as NaN: "no data" is an absent series, which is
what PromQL alerting expects.
"""

from __future__ import annotations

import threading
import time
from typing import NamedTuple

from livemon import catalogue
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector

# `*_created` samples double the counters' lines and no dashboard or rule of ours reads them.
disable_created_metrics()

class Layout(NamedTuple):
    """The room metrics' families as the collector walks them, from the catalogue (read at each
    render: a metric added to the catalogue is exposed at once)."""

    gauges: tuple  # plain room gauges: (exposed name, snapshot metric, help)
    labelled: tuple  # room gauges with one more label: (name, label, ((label value, metric, scale), ...), help)
    cdn: tuple  # per-CDN gauges: (name, cdn metric, scale, extra labels, help)
    counters: tuple  # room counters: (name without _total, snapshot metric, help)


def layout() -> Layout:
    room = catalogue.families("room")
    return Layout(
        gauges=tuple((name, metrics[0].name, text) for name, kind, text, metrics in room
                     if kind == "gauge" and not metrics[0].labels),
        labelled=tuple((name, metrics[0].labels[0][0], tuple((m.labels[0][1], m.name, m.scale) for m in metrics), text)
                       for name, kind, text, metrics in room if kind == "gauge" and metrics[0].labels),
        cdn=tuple((name, metric.name, metric.scale, metric.labels, text)
                  for name, kind, text, metrics in catalogue.families("cdn") for metric in metrics),
        counters=tuple((metrics[0].exposed, metrics[0].name, text) for name, kind, text, metrics in room
                       if kind == "counter"))


def _per_room(family, metrics, key):
    """One sample per room whose snapshot has `key` (null values are left out, not NaN)."""
    add = family.add_metric
    for room, m in metrics:
        value = m.get(key)
        if value is not None:
            add((room,), value)
    return family

class RoomCollector(Collector):
    """Metric families of SPEC §7 built from the latest live snapshots {room_id: snapshot}."""

    def __init__(self):
        self._live: dict = {}
        self._version = 0
        self._rendered: tuple[int, bytes] = (-1, b"")
        self._lock = threading.Lock()

    def update(self, live: dict) -> None:
        """Replace the live snapshots (called once per step by the worker)."""
        self._live = live
        self._version += 1

    @property
    def rooms(self) -> int:
        return len(self._live)

    def collect(self):
        snapshots = list(self._live.values())
        metrics = [(s["room_id"], s.get("metrics") or {}) for s in snapshots]
        shape = layout()
        for name, key, text in shape.gauges:
            yield _per_room(GaugeMetricFamily(name, text, labels=("room",)), metrics, key)
        for name, label, parts, text in shape.labelled:
            family = GaugeMetricFamily(name, text, labels=("room", label))
            add = family.add_metric
            for room, m in metrics:
                for label_value, key, scale in parts:
                    value = m.get(key)
                    if value is not None:
                        add((room, label_value), value * scale)
            yield family
        for name, key, scale, extra, text in shape.cdn:
            family = GaugeMetricFamily(name, text, labels=("room", "cdn", *(k for k, _ in extra)))
            add = family.add_metric
            extra_values = tuple(v for _, v in extra)
            for snapshot in snapshots:
                room = snapshot["room_id"]
                for cdn, m in (snapshot.get("cdn") or {}).items():
                    value = m.get(key)
                    if value is not None:
                        add((room, cdn, *extra_values), value * scale)
            yield family
        for name, key, text in shape.counters:
            yield _per_room(CounterMetricFamily(name, text, labels=("room",)), metrics, key)
        family = GaugeMetricFamily("livemon_room_snapshot_timestamp_seconds",
                                   "Event-time instant of the room's live snapshot.", labels=("room",))
        for snapshot in snapshots:
            family.add_metric((snapshot["room_id"],), snapshot["ts"])
        yield family

    def render(self) -> bytes:
        """The exposition text of the room families, rendered once per update.

        Same text as `generate_latest` over `collect()` would give (a test checks it), written
        directly: with 10,000 rooms that is ~300,000 samples, and the generic path formats each
        through several Python objects (seconds per scrape); this path is a few string joins.
        """
        with self._lock:
            version, text = self._rendered
            if version != self._version:
                version = self._version
                text = _render(list(self._live.values()))
                self._rendered = (version, text)
            return text


def _num(value) -> str:
    if type(value) is int:
        return f"{value}.0"
    value = float(value)
    if value != value:
        return "NaN"
    if value in (float("inf"), float("-inf")):
        return "+Inf" if value > 0 else "-Inf"
    return repr(value)


def _label(value: str) -> str:
    # Room and CDN ids are restricted by the event contract; escape anyway so no input can break
    # the exposition format.
    if "\\" in value or '"' in value or "\n" in value:
        value = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return value


def _render(snapshots: list) -> bytes:
    out: list[str] = []
    put = out.append
    rooms = [(_label(s["room_id"]), s.get("metrics") or {}) for s in snapshots]

    def head(name: str, text: str, kind: str) -> None:
        put(f"# HELP {name} {text}\n# TYPE {name} {kind}\n")

    shape = layout()
    for name, key, text in shape.gauges:
        head(name, text, "gauge")
        put("".join([f'{name}{{room="{room}"}} {_num(v)}\n'
                     for room, m in rooms if (v := m.get(key)) is not None]))
    for name, label, parts, text in shape.labelled:
        head(name, text, "gauge")
        for label_value, key, scale in parts:
            put("".join([f'{name}{{room="{room}",{label}="{label_value}"}} {_num(v * scale)}\n'
                         for room, m in rooms if (v := m.get(key)) is not None]))
    for name, key, scale, extra, text in shape.cdn:
        head(name, text, "gauge")
        tail = "".join(f',{k}="{v}"' for k, v in extra)
        put("".join([f'{name}{{room="{_label(s["room_id"])}",cdn="{_label(cdn)}"{tail}}} {_num(v * scale)}\n'
                     for s in snapshots for cdn, m in (s.get("cdn") or {}).items()
                     if (v := m.get(key)) is not None]))
    for name, key, text in shape.counters:
        head(f"{name}_total", text, "counter")
        put("".join([f'{name}_total{{room="{room}"}} {_num(v)}\n'
                     for room, m in rooms if (v := m.get(key)) is not None]))
    name = "livemon_room_snapshot_timestamp_seconds"
    head(name, "Event-time instant of the room's live snapshot.", "gauge")
    put("".join([f'{name}{{room="{_label(s["room_id"])}"}} {_num(s["ts"])}\n' for s in snapshots]))
    return "".join(out).encode()


class WorkerMetrics:
    """The worker's own health: throughput, rejections, lag, rebalances, processing latency."""

    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.events = Counter("livemon_events", "Valid events ingested, by type.", ("type",), registry=r)
        self.rejected = Counter("livemon_events_rejected", "Rejected events, by reason.", ("reason",),
                                registry=r)
        self.events_rate = Gauge("livemon_events_per_second", "Valid events per second over the last step, by type.",
                                 ("type",), registry=r)
        self.messages = Counter("livemon_messages", "Kafka messages consumed (an envelope is one message).",
                                registry=r)
        self.batches_rejected = Counter("livemon_batches_rejected",
                                        "Record batches skipped because they cannot be read, by reason "
                                        "(codec, crc, corrupt); their offsets go to the dead-letter topic.",
                                        ("reason",), registry=r)
        self.rerouted = Counter("livemon_events_rerouted",
                                "Events that arrived on another room's partition and were forwarded to "
                                "their own, by the topic they arrived on.", ("topic",), registry=r)
        self.records_rejected = Counter("livemon_records_rejected",
                                        "Records of the product's own topics (repartition, checkpoints, "
                                        "operator actions) that could not be used, by topic.",
                                        ("topic",), registry=r)
        self.lag = Gauge("livemon_consumer_lag_messages", "Messages not yet processed, per assigned partition.",
                         ("topic", "partition"), registry=r)
        self.rebalances = Counter("livemon_rebalances", "Consumer group rebalances seen.", registry=r)
        self.partitions = Gauge("livemon_assigned_partitions", "Event partitions owned by this worker.",
                                registry=r)
        self.rooms = Gauge("livemon_rooms", "Rooms held by this worker.", registry=r)
        self.batch_seconds = Histogram("livemon_batch_processing_seconds",
                                       "Time to decode and ingest one drained batch.", registry=r,
                                       buckets=(.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1))
        self.event_delay = Gauge("livemon_event_delay_seconds",
                                 "Wall clock minus the newest event time of the last batch.", registry=r)
        self.step_seconds = Gauge("livemon_step_duration_seconds", "Duration of the last step.", registry=r)
        self.last_step = Gauge("livemon_last_step_timestamp_seconds", "Wall-clock time of the last step.",
                               registry=r)
        self.checkpoints = Counter("livemon_checkpoints", "Partition checkpoints written.", registry=r)
        self.restored = Counter("livemon_checkpoints_restored", "Partitions resumed from a checkpoint.",
                                registry=r)
        self.checkpoint_bytes = Gauge("livemon_checkpoint_bytes", "Size of the last checkpoint, per partition.",
                                      ("partition",), registry=r)
        self.last_checkpoint = Gauge("livemon_last_checkpoint_timestamp_seconds",
                                     "Wall-clock time of the last checkpoint round.", registry=r)
        self.broker_up = Gauge("livemon_broker_up", "1 while the broker answers, 0 during an outage.",
                               registry=r)
        self.started = Gauge("livemon_worker_start_timestamp_seconds", "When the worker started.",
                             registry=r)
        self.started.set(time.time())
        self.broker_up.set(1)

    def render(self) -> bytes:
        return generate_latest(self.registry)
