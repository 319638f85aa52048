"""The Prometheus exposition of live snapshots: every SPEC §7 name and label, nulls omitted."""

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from livemon.engine import CDN_METRIC_NAMES, METRIC_NAMES
from livemon.exposition import RoomCollector, WorkerMetrics


def snapshot(room, ts=1_700_000_100.0, **overrides):
    metrics = {name: 0.5 for name in METRIC_NAMES}
    metrics.update(online=120, viewers=300, entries=40, leaves=12, gmv_total=1999.5, orders_total=7,
                   latency_p50_ms=800.0, latency_p95_ms=2500.0)
    metrics.update(overrides)
    return {"ts": ts, "room_id": room, "metrics": metrics,
            "cdn": {"cdn-a": {"viewers": 200, "stall_ratio": 0.02, "latency_p95_ms": 1500.0, "error_rate": 0.0},
                    "cdn-b": {"viewers": 100, "stall_ratio": None, "latency_p95_ms": None, "error_rate": None}},
            "show": {"id": "s1", "start": ts - 100}}


def samples(text: bytes) -> dict:
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text.decode()) for s in family.samples}


def test_every_spec_name_and_label_from_snapshots():
    collector = RoomCollector()
    collector.update({"r1": snapshot("r1"), "r2": snapshot("r2", retention_180s=None, conversion_rate=None)})
    got = samples(collector.render())

    def value(name, **labels):
        return got.get((name, frozenset({"room": "r1", **labels}.items())))

    for name in ("online", "viewers", "entries", "leaves", "danmaku_per_minute", "orders_per_minute",
                 "avg_watch_seconds", "interaction_ratio", "product_ctr_ratio", "conversion_ratio",
                 "gmv_window", "gpm", "uv_value", "stall_ratio", "stalls_per_minute", "error_ratio"):
        assert value(f"livemon_room_{name}") is not None, name
    assert value("livemon_room_online") == 120
    for horizon in ("30s", "60s", "180s"):
        assert value("livemon_room_retention_ratio", horizon=horizon) == 0.5
    # Latency is exposed in seconds.
    assert value("livemon_room_latency_seconds", quantile="0.5") == 0.8
    assert value("livemon_room_latency_seconds", quantile="0.95") == 2.5
    assert value("livemon_cdn_latency_seconds", cdn="cdn-a", quantile="0.95") == 1.5
    assert value("livemon_cdn_stall_ratio", cdn="cdn-a") == 0.02
    assert value("livemon_cdn_error_ratio", cdn="cdn-a") == 0.0
    assert value("livemon_cdn_viewers", cdn="cdn-b") == 100
    assert value("livemon_room_gmv_total") == 1999.5
    assert value("livemon_room_orders_total") == 7
    assert value("livemon_room_snapshot_timestamp_seconds") == 1_700_000_100.0
    # Null values are absent series, not NaN.
    assert value("livemon_cdn_stall_ratio", cdn="cdn-b") is None
    assert ("livemon_room_retention_ratio", frozenset({"room": "r2", "horizon": "180s"}.items())) not in got
    assert ("livemon_room_conversion_ratio", frozenset({"room": "r2"}.items())) not in got
    assert all(v == v for v in got.values())


def test_fast_rendering_matches_the_generic_one():
    collector = RoomCollector()
    collector.update({f"r{i}": snapshot(f"r{i}", online=i, gmv=i * 1.25) for i in range(30)})
    registry = CollectorRegistry()
    registry.register(collector)
    generic = text_string_to_metric_families(generate_latest(registry).decode())
    fast = text_string_to_metric_families(collector.render().decode())

    def normal(families):
        return {f.name: (f.type, f.documentation, sorted((s.name, sorted(s.labels.items()), s.value)
                                                         for s in f.samples)) for f in families}
    assert normal(fast) == normal(generic)


def test_rooms_leave_the_exposition_with_their_snapshots():
    collector = RoomCollector()
    collector.update({"r1": snapshot("r1"), "r2": snapshot("r2")})
    assert collector.render().count(b'room="r2"') > 0
    collector.update({"r1": snapshot("r1")})
    assert collector.render().count(b'room="r2"') == 0


def test_ten_thousand_rooms_render():
    collector = RoomCollector()
    collector.update({f"room-{i}": snapshot(f"room-{i}") for i in range(10_000)})
    text = collector.render()
    assert text.count(b"livemon_room_online{") == 10_000
    assert collector.render() is text  # rendered once per update, not once per scrape


def test_worker_health_metrics_render():
    metrics = WorkerMetrics()
    metrics.events.labels("view").inc(3)
    metrics.rejected.labels("invalid_json").inc()
    metrics.lag.labels("liveroom.views", "0").set(5)
    got = samples(metrics.render())
    assert got[("livemon_events_total", frozenset({"type": "view"}.items()))] == 3
    assert got[("livemon_events_rejected_total", frozenset({"reason": "invalid_json"}.items()))] == 1
    assert got[("livemon_consumer_lag_messages",
                frozenset({"topic": "liveroom.views", "partition": "0"}.items()))] == 5
