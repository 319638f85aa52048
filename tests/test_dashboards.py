"""The dashboards as code: generated JSON committed and current, the panels users rely on, and every
metric they name is one the monitor exposes (the live proof is tests/test_prometheus_rules_live.py)."""

from __future__ import annotations

import json
import re
import shutil

from click.testing import CliRunner

from livemon import catalogue
from livemon import exposition
from livemon.alerting.metrics import HELP as ALERTING_METRICS
from livemon.dashboards import build
from livemon.dashboards.cli import JSON_DIR, dashboards
from livemon.dashboards.queries import dashboard_queries, recorded_names, rule_queries, selectors, to_promql


def load(name):
    return json.loads((JSON_DIR / name).read_text())


def panels(model):
    return [p for p in model["panels"] if p["type"] != "row"]


def test_committed_json_is_up_to_date():
    result = CliRunner().invoke(dashboards, ["check"])
    assert result.exit_code == 0, result.output


def test_check_fails_on_stale_missing_or_extra_json(tmp_path):
    runner = CliRunner()
    assert runner.invoke(dashboards, ["generate", "--out", str(tmp_path)]).exit_code == 0
    assert runner.invoke(dashboards, ["check", "--dir", str(tmp_path)]).exit_code == 0

    edited = tmp_path / "room.json"
    edited.write_text(edited.read_text().replace("Funnel", "Funnel (edited by hand)"))
    (tmp_path / "internals.json").unlink()
    shutil.copy(tmp_path / "control-room.json", tmp_path / "old-dashboard.json")
    result = runner.invoke(dashboards, ["check", "--dir", str(tmp_path)])
    assert result.exit_code == 1
    assert "internals.json, old-dashboard.json, room.json" in result.output
    assert "livemon dashboards generate" in result.output

    assert runner.invoke(dashboards, ["generate", "--out", str(tmp_path)]).exit_code == 0
    assert not (tmp_path / "old-dashboard.json").exists()
    assert runner.invoke(dashboards, ["check", "--dir", str(tmp_path)]).exit_code == 0


def test_five_dashboards_with_stable_uids_and_shared_datasource():
    uids = {name: load(name)["uid"] for name in build.DASHBOARDS}
    assert uids == {"control-room.json": "livemon-control-room", "room.json": "livemon-room",
                    "stream-health.json": "livemon-stream-health", "internals.json": "livemon-internals",
                    "sales.json": "livemon-sales"}
    for name in build.DASHBOARDS:
        model = load(name)
        ids = [p["id"] for p in model["panels"]]
        assert len(ids) == len(set(ids)) and all(ids), name
        for panel in panels(model):
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
            assert panel["targets"], panel["title"]
            assert panel["gridPos"]["w"] <= 24
        variable = model["templating"]["list"][0]
        assert (variable["type"], variable["name"]) == ("datasource", "datasource")
        assert variable["current"]["value"] == "livemon-prometheus"  # the provisioned datasource


def test_control_room_table_sorted_by_online_with_colour_thresholds():
    model = load("control-room.json")
    (rooms,) = [p for p in panels(model) if p["type"] == "table"]
    assert rooms["options"]["sortBy"] == [{"desc": True, "displayName": "Online"}]
    renamed = rooms["transformations"][1]["options"]["renameByName"]
    assert set(renamed.values()) >= {"Room", "Online", "Retention 60s", "Interaction", "Product CTR",
                                     "Conversion", "GMV 1m", "Stall ratio"}
    overrides = {o["matcher"]["options"]: {p["id"]: p["value"] for p in o["properties"]}
                 for o in rooms["fieldConfig"]["overrides"]}
    stall = overrides["Stall ratio"]
    assert stall["custom.cellOptions"] == {"type": "color-background"}
    assert [s["color"] for s in stall["thresholds"]["steps"]] == ["green", "orange", "red"]
    assert stall["thresholds"]["steps"][2]["value"] == 0.05
    assert [s["color"] for s in overrides["Retention 60s"]["thresholds"]["steps"]] == ["red", "orange", "green"]
    assert all(t["instant"] and t["format"] == "table" for t in rooms["targets"])


def test_room_dashboard_is_driven_by_room_variable():
    model = load("room.json")
    variables = {v["name"]: v for v in model["templating"]["list"]}
    assert variables["room"]["query"] == "label_values(livemon_room_online, room)"
    titles = {p["title"] for p in panels(model)}
    # Every room metric of the catalogue has its panel, by its family.
    assert {"Online", "Entries", "Leaves", "Retention by horizon", "Avg watch time", "UV value", "GPM",
            "Funnel: viewers → product clickers → buyers", "GMV (window)", "Danmaku/min"} <= titles
    exprs = " ".join(t["expr"] for p in panels(model) for t in p["targets"])
    for name, kind, _, metrics in catalogue.families("room"):
        if metrics[0].dashboard in ("audience", "sales", "interaction"):
            assert name in exprs, name
    for panel in panels(model):
        for target in panel["targets"]:
            assert 'room="$room"' in target["expr"], (panel["title"], target["expr"])


def test_stream_health_annotations_show_failovers_and_alerts():
    model = load("stream-health.json")
    annotations = {a["name"]: a for a in model["annotations"]["list"]}
    assert "livemon_cdn_failovers_total" in annotations["CDN failovers"]["expr"]
    assert annotations["CDN failovers"]["titleFormat"] == "Failover {{room}}: {{from_cdn}} → {{to_cdn}}"
    assert annotations["Firing alerts"]["expr"].startswith('ALERTS{alertstate="firing"')
    assert "livemon_alerts_fired_total" in annotations["Alerts fired by the monitor"]["expr"]
    exprs = " ".join(t["expr"] for p in panels(model) for t in p["targets"])
    for metric in ("livemon_room_stall_ratio", "livemon_room_stalls_per_minute", "livemon_room_latency_seconds",
                   "livemon_room_error_ratio", "livemon_cdn_stall_ratio", "livemon_cdn_error_ratio",
                   "livemon_cdn_latency_seconds"):
        assert metric in exprs


def test_stream_health_has_start_up_panels_per_room_and_per_cdn():
    model = load("stream-health.json")
    by_title = {p["title"]: " ".join(t["expr"] for t in p["targets"]) for p in panels(model)}
    assert "livemon_room_startup_seconds" in by_title["首帧耗时 p50 · Start-up time p50"]
    assert 'quantile="0.5"' in by_title["首帧耗时 p50 · Start-up time p50"]
    assert "livemon_room_fast_start_ratio" in by_title["秒开率 · Fast starts (≤ 1 s)"]
    assert "livemon_room_slow_start_ratio" in by_title["慢启动占比 · Slow starts (≥ 3 s)"]
    assert "livemon_cdn_fast_start_ratio" in by_title["各 CDN 秒开率 · Fast starts by room and CDN"]
    assert "livemon_cdn_viewers" in by_title["各 CDN 秒开率(全部房间) · Fast starts by CDN, all rooms"]
    for title, expr in by_title.items():
        if "start" in title.lower():
            assert 'room=~"$room"' in expr or "all rooms" in title, title


def test_sales_dashboard_draws_every_breakdown_product_and_show_family():
    model = load("sales.json")
    variables = {v["name"]: v for v in model["templating"]["list"]}
    assert variables["room"]["query"] == "label_values(livemon_room_online, room)"
    assert not variables["room"].get("multi")
    exprs = " ".join(t["expr"] for p in panels(model) for t in p["targets"])
    for scope in ("source", "device", "product", "show"):
        for name, *_ in catalogue.families(scope):
            assert name in exprs, name
    for name in ("livemon_room_gmv_total", "livemon_room_uv_value", "livemon_room_viewers",
                 "livemon_room_product_ctr_ratio", "livemon_room_conversion_ratio"):
        assert name in exprs, name
    for word in ("region", "age_band", "gender", "follower"):  # never exposed, never queried
        assert word not in exprs
    titles = {p["title"]: p for p in panels(model)}
    assert titles["讲解中商品 · Pinned product"]["options"]["textMode"] == "name"
    (top,) = [p for p in panels(model) if p["type"] == "table"]
    assert all(t["instant"] and t["format"] == "table" for t in top["targets"])
    assert set(top["transformations"][1]["options"]["renameByName"].values()) >= {"商品 Product", "商品成交额(窗口) Product GMV (window)"}
    assert "各来源 UV 价值 · UV value per source" in titles
    assert any("Ad spend" in t["legendFormat"] for p in panels(model) for t in p["targets"])
    for panel in panels(model):
        assert all(ord(c) < 0x2e80 for c in panel["title"].split(" · ")[-1]), panel["title"]  # English after the dot
        assert any(0x4e00 <= ord(c) <= 0x9fff for c in panel["title"]), panel["title"]  # and Chinese before it
        for target in panel["targets"]:
            assert 'room="$room"' in target["expr"], (panel["title"], target["expr"])


def test_internals_cover_throughput_rejections_lag_rebalances_latency():
    exprs = " ".join(t["expr"] for p in panels(load("internals.json")) for t in p["targets"])
    for needle in ("type:livemon_events:rate1m", "reason:livemon_events_rejected:rate1m",
                   "livemon_consumer_lag_messages", "livemon_rebalances_total",
                   "livemon_batch_processing_seconds_bucket"):
        assert needle in exprs


def exposed_names() -> set[str]:
    """Metric names the worker can expose: SPEC §7 room families, worker health, alerting counters."""
    shape = exposition.layout()
    names = {name for name, *_ in shape.gauges + shape.labelled + shape.cdn + shape.by + shape.product + shape.show
             + shape.info}
    names |= {f"{name}_total" for name, *_ in shape.counters}
    suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"], "gauge": [""]}
    for family in exposition.WorkerMetrics().registry.collect():
        names |= {family.name + suffix for suffix in suffixes.get(family.type, [""])}
    from livemon.kafka_connection import KafkaConnection
    from livemon.lag import LagExporter  # livemon lag-exporter: the group's lag from the broker
    for family in LagExporter(KafkaConnection.of("127.0.0.1:9092"), ("g",), ("t",)).registry.collect():
        names.add(family.name)
    return names | set(ALERTING_METRICS)


def test_every_metric_named_is_exposed_or_recorded():
    known = exposed_names() | recorded_names() | {"ALERTS", "up", "scrape_duration_seconds"}
    for query in dashboard_queries() + rule_queries():
        for selector in selectors(to_promql(query.expr, {"room": "r"})):
            name = re.match(r"[a-zA-Z_:][\w:]*", selector).group()
            assert name in known, f"{query.source}: unknown metric {name}"


def test_selector_extraction():
    expr = ('sum by (room, cdn) (rate(livemon_cdn_failovers_total{room=~"a|b"}[5m] offset 1m)) > 0 '
            'and on (room) ALERTS{alertname="X", alertstate="firing"} or vector(0) '
            '* histogram_quantile(0.99, sum by (le) (rate(x_bucket[1m]))) - time() + up')
    assert selectors(expr) == ['livemon_cdn_failovers_total{room=~"a|b"}',
                               'ALERTS{alertname="X", alertstate="firing"}', "x_bucket", "up"]
    assert to_promql("label_values(livemon_room_online, room)", {}) == "livemon_room_online"
    assert to_promql('max(m{room="$room"}[$__rate_interval]) ${room}', {"room": "r1"}) == 'max(m{room="r1"}[1m]) r1'


def monitor_alerts() -> dict[str, str]:
    """The monitor's own alerts as the Prometheus rule file declares them: name -> expression."""
    import yaml

    from livemon.dashboards.queries import RULE_DIR

    groups = yaml.safe_load((RULE_DIR / "alerts.yml").read_text())["groups"]
    (group,) = [g for g in groups if g["name"] == build.MONITOR_ALERT_GROUP]
    return {rule["alert"]: rule["expr"] for rule in group["rules"] if "alert" in rule}


def monitor_alert_problems(model: dict, alerts: dict[str, str]) -> list[str]:
    """What the internals dashboard `model` lacks to show each alert of `alerts`."""
    found = []
    by_alert = {p["title"].split(" · ")[0]: p for p in panels(model)}
    for name, expr in alerts.items():
        panel = by_alert.get(name)
        if panel is None:
            found.append(f"no panel for the alert {name}")
            continue
        drawn = {s for t in panel["targets"] for s in selectors(t["expr"])}
        # The panel reads every series its rule reads, so what it shows is what the rule decides on.
        if not set(selectors(expr)) <= drawn:
            found.append(f"{name}: the panel does not read {sorted(set(selectors(expr)) - drawn)}")
        if f"docs/ALERTING.md#{name.lower()}" not in panel.get("description", ""):
            found.append(f"{name}: no runbook link")
    # One state panel lists exactly these alerts' firing or pending state (Prometheus's ALERTS).
    states = [p for p in panels(model) if p["type"] == "state-timeline"]
    listed = {n for p in states for t in p["targets"] for group in re.findall(r'alertname=~"([^"]+)"', t["expr"])
              for n in group.split("|")}
    if listed != set(alerts):
        found.append(f"state panel lists {sorted(listed)}")
    return found


def test_internals_show_each_monitor_alert_of_the_rule_file():
    alerts = monitor_alerts()
    assert len(alerts) >= 10 and "LivemonFailoverDeclined" in alerts
    model = load("internals.json")
    assert monitor_alert_problems(model, alerts) == []
    # The panels sit under their own row, after the rest of the internals.
    rows = [p["title"] for p in model["panels"] if p["type"] == "row"]
    assert rows[-1] == "The monitor's own alerts"


def test_a_new_monitor_alert_without_a_panel_fails_the_check():
    alerts = monitor_alerts()
    model = load("internals.json")
    with_new_rule = {**alerts, "LivemonSomethingNew": "livemon_something_new > 0"}
    assert monitor_alert_problems(model, with_new_rule) == [
        "no panel for the alert LivemonSomethingNew",
        f"state panel lists {sorted(alerts)}"]
    # A panel that stops reading one of its rule's series is caught too.
    changed = {**alerts, "LivemonBrokerDown": alerts["LivemonBrokerDown"] + " or livemon_rooms == 0"}
    assert monitor_alert_problems(model, changed) == ["LivemonBrokerDown: the panel does not read ['livemon_rooms']"]
