"""The Prometheus exposition of live snapshots: every SPEC §7 name and label, nulls omitted, the
breakdown, product and show series bounded whatever the snapshot holds."""

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
            "cdn": {"cdn-a": {"viewers": 200, "stall_ratio": 0.02, "latency_p95_ms": 1500.0, "error_rate": 0.0,
                              "startup_p50_ms": 900.0, "fast_start_ratio": 0.75, "slow_start_ratio": 0.125},
                    "cdn-b": {"viewers": 100, "stall_ratio": None, "latency_p95_ms": None, "error_rate": None,
                              "startup_p50_ms": None, "fast_start_ratio": None, "slow_start_ratio": None}},
            "show": {"id": "s1", "start": ts - 100}}


def figures(viewers, **overrides):
    """One value's SPEC §8 figures, as the engine's snapshot carries them under `by`."""
    return {"viewers": viewers, "entries": viewers // 2, "avg_watch_seconds": 95.5, "interaction_rate": 0.25,
            "product_ctr": 0.1, "conversion_rate": 0.5, "orders": 3, "gmv": 297.0, "uv_value": 297.0 / viewers,
            **overrides}


def sales_snapshot(room, products=12, regions=30, top=None, pinned="p3", **overrides):
    """A snapshot with SPEC §8 breakdowns, §9 products and the §10 show figures."""
    snap = snapshot(room, startup_p50_ms=1200.0, fast_start_ratio=0.6, slow_start_ratio=0.1, **overrides)
    snap["by"] = {"source": {"organic": figures(40), "paid": figures(20, avg_watch_seconds=None, conversion_rate=None),
                             "unknown": figures(2)},
                  "device": {"mobile": figures(50), "pc": figures(10, avg_watch_seconds=None)},
                  "region": {f"region-{i}": figures(1) for i in range(regions)},
                  "age_band": {"18-23": figures(5)}, "gender": {"female": figures(7)}, "follower": {"yes": figures(9)}}
    snap["products"] = {f"p{i}": {"clickers": i + 1, "carts": 1, "orders": i % 3, "gmv": 99.5 * (i % 3),
                                  "ctr": 0.01, "conversion_rate": (i % 3) / (i + 1)} for i in range(products)}
    snap["show"].update(title=None, ended_at=None, pinned=pinned, gmv=5000.0, spend_total=1000.0, refund_rate=0.05,
                        top10_share=0.8, roi=5.0,
                        top_products=[f"p{i}" for i in range(min(products, 10))] if top is None else top)
    return snap


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
    live = {f"r{i}": snapshot(f"r{i}", online=i, gmv=i * 1.25) for i in range(30)}
    live.update({f"s{i}": sales_snapshot(f"s{i}", gmv_total=10**30, top=["p1", "gone", "p2"]) for i in range(5)})
    live["s0"]["show"] = None
    live["s1"]["metrics"]["uv_value"] = float("nan")  # never in a snapshot; written as the text format says
    collector.update(live)
    registry = CollectorRegistry()
    registry.register(collector)
    generic = text_string_to_metric_families(generate_latest(registry).decode())
    fast = text_string_to_metric_families(collector.render().decode())

    def normal(families):
        return {f.name: (f.type, f.documentation, sorted((s.name, sorted(s.labels.items()),
                                                          "NaN" if s.value != s.value else s.value)
                                                         for s in f.samples)) for f in families}
    assert normal(fast) == normal(generic)


def test_rooms_leave_the_exposition_with_their_snapshots():
    collector = RoomCollector()
    collector.update({"r1": snapshot("r1"), "r2": snapshot("r2")})
    assert collector.render().count(b'room="r2"') > 0
    collector.update({"r1": snapshot("r1")})
    assert collector.render().count(b'room="r2"') == 0


def test_one_rooms_families_are_its_lines_of_the_whole_exposition():
    collector = RoomCollector()
    collector.update({"s1": sales_snapshot("s1", gmv_total=12.5, top=["p1", "p2"]), "r2": snapshot("r2"),
                      "r3": snapshot("r3", online=7)})

    def samples(text: bytes, room: str) -> set:
        return {(s.name, tuple(sorted(s.labels.items())), s.value)
                for f in text_string_to_metric_families(text.decode()) for s in f.samples
                if s.labels.get("room") == room}
    whole = collector.render()
    for room in ("s1", "r3"):
        alone = collector.render_rooms([room])
        assert samples(alone, room) == samples(whole, room) and samples(alone, room)
        assert b'room="r2"' not in alone
    both = collector.render_rooms(["r3", "s1", "r3", "gone"])
    assert samples(both, "s1") == samples(whole, "s1") and samples(both, "r3") == samples(whole, "r3")


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


def sales_samples(snapshots) -> dict:
    collector = RoomCollector()
    collector.update({s["room_id"]: s for s in snapshots})
    return samples(collector.render())


def test_breakdown_product_show_and_start_up_series():
    got = sales_samples([sales_snapshot("r1", top=["p5", "p0", "gone"]), sales_snapshot("r2", pinned=None)])

    def value(name, room="r1", **labels):
        return got.get((name, frozenset({"room": room, **labels}.items())))

    assert value("livemon_source_viewers", source="organic") == 40
    assert value("livemon_source_entries", source="paid") == 10
    assert value("livemon_source_avg_watch_seconds", source="organic") == 95.5
    assert value("livemon_source_conversion_ratio", source="organic") == 0.5
    assert value("livemon_source_gmv_window", source="organic") == 297.0
    assert value("livemon_source_uv_value", source="paid") == 297.0 / 20
    assert value("livemon_source_viewers", source="unknown") == 2  # a presence without the attribute
    assert value("livemon_device_viewers", device="mobile") == 50
    assert value("livemon_device_avg_watch_seconds", device="mobile") == 95.5
    assert value("livemon_device_interaction_ratio", device="pc") == 0.25
    # Top products in the engine's order; one quiet in the window: 0 counts and GMV, no conversion.
    assert value("livemon_product_clickers", product="p5") == 6
    assert value("livemon_product_orders", product="p5") == 2
    assert value("livemon_product_gmv_window", product="p5") == 199.0
    assert value("livemon_product_conversion_ratio", product="p5") == 2 / 6
    assert value("livemon_product_clickers", product="gone") == 0
    assert value("livemon_product_orders", product="gone") == 0
    assert value("livemon_product_gmv_window", product="gone") == 0
    assert value("livemon_product_conversion_ratio", product="gone") is None
    assert value("livemon_product_clickers", product="p1") is None  # not a top product
    assert value("livemon_room_pinned_product_info", product="p3") == 1
    assert not [k for k in got if k[0] == "livemon_room_pinned_product_info" and ("room", "r2") in k[1]]
    assert value("livemon_show_refund_ratio") == 0.05
    assert value("livemon_show_top10_share_ratio") == 0.8
    assert value("livemon_show_roi_ratio") == 5.0
    # SPEC §11, start-up in seconds.
    assert value("livemon_room_startup_seconds", quantile="0.5") == 1.2
    assert value("livemon_room_fast_start_ratio") == 0.6
    assert value("livemon_room_slow_start_ratio") == 0.1
    assert value("livemon_cdn_fast_start_ratio", cdn="cdn-a") == 0.75
    assert value("livemon_cdn_fast_start_ratio", cdn="cdn-b") is None
    # Nulls are absent series.
    assert value("livemon_source_avg_watch_seconds", source="paid") is None
    assert value("livemon_source_conversion_ratio", source="paid") is None
    assert value("livemon_device_avg_watch_seconds", device="pc") is None
    assert all(v == v for v in got.values())


def test_series_stay_bounded_whatever_the_snapshot_holds():
    snap = sales_snapshot("r1", products=500, regions=100, top=[f"p{i}" for i in range(500)])
    snap["by"]["source"].update({f"made-up-{i}": figures(1) for i in range(50)})  # not the contract's values
    snap["by"]["device"].update({"fridge": figures(1)})
    got = sales_samples([snap])
    by_family: dict = {}
    for name, labels in got:
        by_family.setdefault(name, []).append(dict(labels))
    for family in ("livemon_product_clickers", "livemon_product_orders", "livemon_product_gmv_window",
                   "livemon_product_conversion_ratio"):
        assert 0 < len(by_family[family]) <= 10, family
        assert {labels["product"] for labels in by_family[family]} <= {f"p{i}" for i in range(10)}
    assert {labels["source"] for labels in by_family["livemon_source_viewers"]} == {"organic", "paid", "unknown"}
    assert {labels["device"] for labels in by_family["livemon_device_viewers"]} == {"mobile", "pc"}
    assert len(by_family["livemon_room_pinned_product_info"]) == 1
    # Regions, age bands, gender and follower are never exposed.
    text = RoomCollector()
    text.update({"r1": snap})
    rendered = text.render().decode()
    for word in ("region", "age_band", "gender", "follower", "made-up", "fridge"):
        assert word not in rendered, word
    # Per room: the plain room and CDN families, plus at most 7 sources x 6, 5 devices x 3,
    # 10 products x 4, the pinned product and 3 show gauges, whatever the traffic.
    assert len(got) <= 60 + 7 * 6 + 5 * 3 + 10 * 4 + 1 + 3


def test_before_a_show_and_without_breakdowns_nothing_more_is_exposed():
    bare = snapshot("r1")
    bare["show"] = None
    got = sales_samples([bare])
    names = {name for name, _ in got}
    assert not {n for n in names if n.startswith(("livemon_source_", "livemon_device_", "livemon_product_",
                                                    "livemon_show_"))}
    assert "livemon_room_pinned_product_info" not in names
    assert ("livemon_room_online", frozenset({"room": "r1"}.items())) in got
