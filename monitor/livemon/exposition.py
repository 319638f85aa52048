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
from collections.abc import Iterable
from itertools import chain, compress, repeat
from operator import add, is_not, itemgetter
from typing import NamedTuple

import orjson

from livemon import catalogue
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector, disable_created_metrics
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
    by: tuple  # per (room, dimension value) gauges: (name, dimension, metric, scale, help), SPEC §8
    product: tuple  # per (room, top product) gauges: (name, metric, scale, value when absent, help), SPEC §9
    show: tuple  # the current show's gauges: (name, show key, scale, help)
    info: tuple  # the current show's info gauges: (name, show key, label, help): 1 labelled by the value


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
                       if kind == "counter"),
        by=tuple((name, dimension, metrics[0].name, metrics[0].scale, text)
                 for dimension in catalogue.EXPOSED_VALUES
                 for name, kind, text, metrics in catalogue.families(dimension)),
        product=tuple((name, metrics[0].name, metrics[0].scale, metrics[0].absent, text)
                      for name, kind, text, metrics in catalogue.families("product")),
        show=tuple((name, metrics[0].name, metrics[0].scale, text)
                   for name, kind, text, metrics in catalogue.families("show") if not metrics[0].as_label),
        info=tuple((name, metrics[0].name, metrics[0].as_label, text)
                   for name, kind, text, metrics in catalogue.families("show") if metrics[0].as_label))


def _per_room(family, metrics, key):
    """One sample per room whose snapshot has `key` (null values are left out, not NaN)."""
    add = family.add_metric
    for room, m in metrics:
        value = m.get(key)
        if value is not None:
            add((room,), value)
    return family


def _breakdown(snapshot: dict, dimension: str, allowed) -> list:
    """(value, figures) of one SPEC §8 dimension of a snapshot, for the values that may be exposed
    (the event contract's and "unknown": bounded whatever the traffic)."""
    values = (snapshot.get("by") or {}).get(dimension) or {}
    return [(value, m) for value, m in values.items() if value in allowed]


def _top_products(snapshot: dict) -> list:
    """(product_id, window figures or None) of the show's top products (SPEC §7: at most
    TOP_PRODUCTS, ranked by the engine); None: the product has no entry in the window."""
    show = snapshot.get("show")
    top = show.get("top_products") if show else None
    if not top:
        return []
    products = snapshot.get("products") or {}
    return [(pid, products.get(pid)) for pid in top[:catalogue.TOP_PRODUCTS]]


def _product_value(m, key, absent):
    return absent if m is None else m.get(key)


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
        for name, dimension, key, scale, text in shape.by:
            family = GaugeMetricFamily(name, text, labels=("room", dimension))
            allowed = catalogue.EXPOSED_VALUES[dimension]
            for snapshot in snapshots:
                for value, m in _breakdown(snapshot, dimension, allowed):
                    if m.get(key) is not None:
                        family.add_metric((snapshot["room_id"], value), m[key] * scale)
            yield family
        for name, key, scale, absent, text in shape.product:
            family = GaugeMetricFamily(name, text, labels=("room", "product"))
            for snapshot in snapshots:
                for pid, m in _top_products(snapshot):
                    value = _product_value(m, key, absent)
                    if value is not None:
                        family.add_metric((snapshot["room_id"], pid), value * scale)
            yield family
        for name, key, scale, text in shape.show:
            family = GaugeMetricFamily(name, text, labels=("room",))
            for snapshot in snapshots:
                value = (snapshot.get("show") or {}).get(key)
                if value is not None:
                    family.add_metric((snapshot["room_id"],), value * scale)
            yield family
        for name, key, label, text in shape.info:
            family = GaugeMetricFamily(name, text, labels=("room", label))
            for snapshot in snapshots:
                value = (snapshot.get("show") or {}).get(key)
                if value is not None:
                    family.add_metric((snapshot["room_id"], str(value)), 1)
            yield family
        family = GaugeMetricFamily("livemon_room_snapshot_timestamp_seconds",
                                   "Event-time instant of the room's live snapshot.", labels=("room",))
        for snapshot in snapshots:
            family.add_metric((snapshot["room_id"],), snapshot["ts"])
        yield family

    def render(self) -> bytes:
        """The exposition text of the room families, rendered once per update.

        Same samples as `generate_latest` over `collect()` would give (a test checks it), written
        directly: with 10,000 rooms that is over a million samples, and the generic path formats
        each through several Python objects (seconds per scrape); this path is a few string joins.
        """
        with self._lock:
            version, text = self._rendered
            if version != self._version:
                version = self._version
                text = _render(list(self._live.values()))
                self._rendered = (version, text)
            return text

    def render_rooms(self, room_ids) -> bytes:
        """The room families of these rooms only (`/metrics?room=R`): a look at one room without
        rendering, sending and parsing every room's (over a megabyte at 300 busy rooms)."""
        live = self._live
        return _render([live[room_id] for room_id in dict.fromkeys(room_ids) if room_id in live])


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


def _columns(figures: list, keys: tuple) -> dict:
    """{key: [value of each figures dict]}: one C-level pass over the dicts (every key of a scope is
    in every snapshot dict the engine makes), else one `dict.get` pass per key."""
    if not figures or not keys:
        return {key: [] for key in keys}
    try:
        if len(keys) == 1:
            return {keys[0]: list(map(itemgetter(keys[0]), figures))}
        return dict(zip(keys, map(list, zip(*map(itemgetter(*keys), figures)))))
    except KeyError:
        return {key: [m.get(key) for m in figures] for key in keys}


def _each_line(pre: str, labels: list, values: list) -> str:
    """`_lines` a line at a time, each number by `_num`: for what orjson cannot write as the text
    format reads it (NaN, the infinities, ints beyond 64 bits)."""
    return "".join([f"{pre}{label}{_num(v)}\n" for label, v in zip(labels, values) if v is not None])


def _lines(pre: str, labels: list, figures: list, key: str, scale: float = 1.0, values: list | None = None) -> str:
    """The lines `pre + label + value` of one family, for the figures whose `key` is not null.

    `labels[i]` ends a line's label set (`room-1"} `, `room-1",source="paid"} `); `figures[i]` is
    the dict holding its value. The numbers of a family are formatted in one `orjson.dumps` call
    (shortest round-trip form, as `repr`; `120` for an int, what the text format reads) and the
    lines joined in one call: per-sample Python work is one `dict.get`, the rest runs in C. This
    keeps a million samples (10,000 rooms with their breakdowns and products) at the cost the 280,000
    samples of the room and CDN families alone had with a `repr` per sample."""
    if values is None:
        values = [m.get(key) for m in figures]
    if scale != 1:
        values = [None if v is None else v * scale for v in values]
    try:
        numbers = orjson.dumps(values)
    except TypeError:  # an int beyond 64 bits
        return _each_line(pre, labels, values)
    # orjson writes None, NaN and the infinities as null: only a family with a null needs its
    # values counted (in a snapshot a null is a None; NaN and the infinities never are).
    written = numbers.count(b"null")
    nulls = written and values.count(None)
    if nulls == len(values):
        return ""
    if written != nulls:  # NaN or the infinities
        return _each_line(pre, labels, values)
    texts: Iterable[str] = numbers[1:-1].decode().split(",")
    if nulls:
        keep = list(map(is_not, values, repeat(None)))
        labels, texts = compress(labels, keep), compress(texts, keep)  # type: ignore[assignment]
    return pre + "".join(chain.from_iterable(zip(labels, texts, repeat("\n" + pre))))[:-len(pre)]


def _render(snapshots: list) -> bytes:
    """The text format, family by family, each family's lines made by `_lines` over label texts
    built once per room (per room and CDN, per room and breakdown value, per room and top product)
    and shared by the families of that scope."""
    out: list[str] = []
    put = out.append
    names = [_label(s["room_id"]) for s in snapshots]
    metrics = [s.get("metrics") or {} for s in snapshots]
    room_labels = [f'{room}"}} ' for room in names]

    def head(name: str, text: str, kind: str) -> None:
        put(f"# HELP {name} {text}\n# TYPE {name} {kind}\n")

    shape = layout()
    # Every room metric's values in one C-level pass over the snapshots' dicts, not one per family.
    room_keys = tuple(dict.fromkeys([key for _, key, _ in shape.gauges] + [key for _, key, _ in shape.counters]
                                    + [key for _, _, parts, _ in shape.labelled for _, key, _ in parts]))
    room_columns = _columns(metrics, room_keys)
    for name, key, text in shape.gauges:
        head(name, text, "gauge")
        put(_lines(f'{name}{{room="', room_labels, metrics, key, values=room_columns[key]))
    for name, label, parts, text in shape.labelled:
        head(name, text, "gauge")
        for label_value, key, scale in parts:
            labels = list(map(add, names, repeat(f'",{label}="{label_value}"}} ')))
            put(_lines(f'{name}{{room="', labels, metrics, key, scale, room_columns[key]))
    if shape.cdn:
        cdn_rooms, cdn_figures = [], []
        for room, s in zip(names, snapshots):
            for cdn, m in (s.get("cdn") or {}).items():
                cdn_rooms.append(f'{room}",cdn="{_label(cdn)}')
                cdn_figures.append(m)
        cdn_columns = _columns(cdn_figures, tuple(dict.fromkeys(key for _, key, _, _, _ in shape.cdn)))
        for name, key, scale, extra, text in shape.cdn:
            head(name, text, "gauge")
            tail = '"' + "".join(f',{k}="{v}"' for k, v in extra) + "} "
            put(_lines(f'{name}{{room="', list(map(add, cdn_rooms, repeat(tail))), cdn_figures, key, scale,
                       cdn_columns[key]))
    for name, key, text in shape.counters:
        head(f"{name}_total", text, "counter")
        put(_lines(f'{name}_total{{room="', room_labels, metrics, key, values=room_columns[key]))
    # SPEC §8 breakdowns: the (room, value) labels of a dimension, built once for all its families;
    # only the values the catalogue allows (bounded whatever the traffic).
    rows: dict[str, tuple[list, list, dict]] = {}
    for name, dimension, key, scale, text in shape.by:
        if dimension not in rows:
            allowed = frozenset(catalogue.EXPOSED_VALUES[dimension])
            labels, figures = [], []
            for room, s in zip(names, snapshots):
                by = s.get("by")
                for value, m in ((by.get(dimension) or {}) if by else {}).items():
                    if value in allowed:
                        labels.append(f'{room}",{dimension}="{value}"}} ')
                        figures.append(m)
            keys = tuple(k for _, d, k, _, _ in shape.by if d == dimension)
            rows[dimension] = labels, figures, _columns(figures, keys)
        head(name, text, "gauge")
        labels, figures, columns = rows[dimension]
        put(_lines(f'{name}{{room="', labels, figures, key, scale, columns[key]))
    # SPEC §9: the show's top products; one quiet in the window has its `absent` values.
    if shape.product:
        absent = {key: value for _, key, _, value, _ in shape.product if value is not None}
        labels, figures = [], []
        for room, s in zip(names, snapshots):
            for pid, m in _top_products(s):
                labels.append(f'{room}",product="{_label(pid)}"}} ')
                figures.append(absent if m is None else m)
        columns = _columns(figures, tuple(key for _, key, _, _, _ in shape.product))
        for name, key, scale, _, text in shape.product:
            head(name, text, "gauge")
            put(_lines(f'{name}{{room="', labels, figures, key, scale, columns[key]))
    shows = [(label, s["show"]) for label, s in zip(room_labels, snapshots) if s.get("show")]
    show_labels, show_figures = [label for label, _ in shows], [show for _, show in shows]
    for name, key, scale, text in shape.show:
        head(name, text, "gauge")
        put(_lines(f'{name}{{room="', show_labels, show_figures, key, scale))
    for name, key, label, text in shape.info:
        head(name, text, "gauge")
        put("".join([f'{name}{{room="{room}",{label}="{_label(str(v))}"}} 1.0\n' for room, s in zip(names, snapshots)
                     if (show := s.get("show")) and (v := show.get(key)) is not None]))
    name = "livemon_room_snapshot_timestamp_seconds"
    head(name, "Event-time instant of the room's live snapshot.", "gauge")
    put(_lines(f'{name}{{room="', room_labels, snapshots, "ts"))
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
        # process_cpu_seconds_total and memory: a worker's loop is one thread, so its CPU near a
        # whole core is the capacity warning (LivemonWorkerAtCapacity), before steps are missed.
        ProcessCollector(registry=r)

    def render(self) -> bytes:
        return generate_latest(self.registry)
