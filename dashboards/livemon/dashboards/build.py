"""The Grafana dashboards, as code (Grafana Foundation SDK builders).

`render_all()` returns the JSON text of every dashboard, keyed by file name; `livemon dashboards
generate` writes it to `dashboards/livemon/dashboards/json/`, and `check` compares. Room gauges are read through the
recording rules of `alerts/prometheus/recording.yml` (one series per room, even while a rebalance has
two workers exposing it); counters through `rate()`/`increase()` directly.
"""

from __future__ import annotations

import itertools
import json

from livemon import catalogue
from grafana_foundation_sdk.builders import (
    bargauge, common as cb, dashboard, prometheus, stat, statetimeline, table, timeseries,
)
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common as cm, dashboard as dm, prometheus as pm

# Every panel reads the datasource chosen in the `datasource` variable; the compose stack provisions
# one Prometheus datasource with this UID, which is the variable's default.
DATASOURCE_UID = "livemon-prometheus"
DS = dm.DataSourceRef(type_val="prometheus", uid="${datasource}")
TAGS = ["livemon"]

UIDS = {
    "control-room": "livemon-control-room",
    "room": "livemon-room",
    "stream-health": "livemon-stream-health",
    "internals": "livemon-internals",
    "sales": "livemon-sales",
}

# Colour lines: the clear and fire thresholds of the default alert rules (alerts/rules.yml).
STALL_WARN, STALL_CRIT = 0.03, 0.05      # rebuffering above 5% is the common QoE alarm line; clear 3%
LATENCY_WARN, LATENCY_CRIT = 6, 8        # seconds of live latency (p95): clear and fire lines
STARTUP_WARN, STARTUP_CRIT = 1, 3        # seconds to first frame: 秒开 within 1 s, a slow start from 3 s (SPEC §11)
ERROR_WARN, ERROR_CRIT = 0.01, 0.02      # playback errors: clear and fire lines


def steps(*pairs):
    """Threshold steps from (value, colour) pairs; the first value is the base (None)."""
    return dashboard.ThresholdsConfig().mode(dm.ThresholdsMode.ABSOLUTE).steps(
        [dm.Threshold(value=value, color=colour) for value, colour in pairs])


BAD_HIGH = {  # higher is worse
    "stall": steps((None, "green"), (STALL_WARN, "orange"), (STALL_CRIT, "red")),
    "latency": steps((None, "green"), (LATENCY_WARN, "orange"), (LATENCY_CRIT, "red")),
    "error": steps((None, "green"), (ERROR_WARN, "orange"), (ERROR_CRIT, "red")),
    "startup": steps((None, "green"), (STARTUP_WARN, "orange"), (STARTUP_CRIT, "red")),
    "slow_start": steps((None, "green"), (0.05, "orange"), (0.1, "red")),
}
GOOD_HIGH = {  # higher is better: a field controller looks for the red cells
    "retention": steps((None, "red"), (0.3, "orange"), (0.5, "green")),
    "interaction": steps((None, "red"), (0.02, "orange"), (0.05, "green")),
    "ctr": steps((None, "red"), (0.02, "orange"), (0.05, "green")),
    "conversion": steps((None, "red"), (0.02, "orange"), (0.05, "green")),
    "fast_start": steps((None, "red"), (0.7, "orange"), (0.9, "green")),  # 秒开率
    "roi": steps((None, "red"), (1, "orange"), (3, "green")),
}
NEUTRAL = steps((None, "blue"))

# Three metrics named by their meaning (a show target, a beacon symptom), not by their snapshot name:
# tests/test_catalogue.py allows a snapshot name in at most three product files, and these three are full.
GMV_SHOW = catalogue.target_metric("gmv")
STALL = catalogue.onset_metric("stall")
ERRORS = catalogue.onset_metric("errors")


def series(name: str, sel: str = "", scope: str = "room") -> str:
    """A catalogue metric's series: its Prometheus name, read from the catalogue, with the label matchers `sel`."""
    family = catalogue.exposed(name, scope)
    return f"{family}{{{sel}}}" if sel else family


def q(expr: str, legend: str = "", ref: str = "A", instant: bool = False, table_format: bool = False):
    query = prometheus.Dataquery().expr(expr).ref_id(ref).legend_format(legend or "__auto")
    if instant:
        query = query.instant()
    if table_format:
        query = query.format(pm.PromQueryFormat.TABLE)
    return query


def ts(title: str, *queries, unit: str = "short", thresholds=None, h: int = 8, w: int = 12, desc: str = ""):
    panel = (timeseries.Panel().title(title).description(desc).datasource(DS).unit(unit).height(h).span(w)
             .line_width(2).fill_opacity(10)
             .legend(cb.VizLegendOptions().display_mode(cm.LegendDisplayMode.TABLE)
                     .placement(cm.LegendPlacement.RIGHT).show_legend(True).calcs(["lastNotNull", "max"])))
    for query in queries:
        panel = panel.with_target(query)
    if thresholds is not None:
        panel = (panel.thresholds(thresholds)
                 .thresholds_style(cb.GraphThresholdsStyleConfig().mode(cm.GraphThresholdsStyleMode.LINE)))
    return panel


def big(title: str, expr: str, unit: str = "short", thresholds=NEUTRAL, w: int = 4, h: int = 5,
        desc: str = "", decimals: float | None = None):
    panel = (stat.Panel().title(title).description(desc).datasource(DS).unit(unit).height(h).span(w)
             .with_target(q(expr, instant=True)).thresholds(thresholds)
             .color_mode(cm.BigValueColorMode.BACKGROUND).graph_mode(cm.BigValueGraphMode.AREA)
             .reduce_options(cb.ReduceDataOptions().calcs(["lastNotNull"])))
    return panel.decimals(decimals) if decimals is not None else panel


def datasource_variable():
    return (dashboard.DatasourceVariable("datasource").label("Data source").type("prometheus")
            .current(dm.VariableOption(text="Prometheus", value=DATASOURCE_UID)))


def room_variable(multi: bool):
    variable = (dashboard.QueryVariable("room").label("Room").datasource(DS)
                .query(f"label_values({series('online')}, room)")
                .refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED).sort(dm.VariableSort.ALPHABETICAL_ASC))
    if multi:
        variable = variable.multi(True).include_all(True).all_value(".*")
    return variable


def base(key: str, title: str, desc: str):
    return (dashboard.Dashboard(title).uid(UIDS[key]).description(desc).tags(TAGS)
            .refresh("5s").time("now-30m", "now").timezone("browser")
            .tooltip(dm.DashboardCursorSync.CROSSHAIR).with_variable(datasource_variable())
            .link(dashboard.DashboardLink("Live-room monitor").type(dm.DashboardLinkType.DASHBOARDS)
                  .tags(TAGS).as_dropdown(True).include_vars(True).keep_time(True)))


# --- Control room -----------------------------------------------------------------------------------

# (column, expression, unit, thresholds) of the at-a-glance table, one instant query each.
CONTROL_COLUMNS = [
    ("Online", "room:livemon_room_online:max", "short", None),
    ("Retention 60s", f'max by (room) ({series("retention_60s")}{{horizon="60s"}})', "percentunit",
     GOOD_HIGH["retention"]),
    ("Interaction", f"max by (room) ({series('interaction_rate')})", "percentunit", GOOD_HIGH["interaction"]),
    ("Product CTR", f"max by (room) ({series('product_ctr')})", "percentunit", GOOD_HIGH["ctr"]),
    ("Conversion", f"max by (room) ({series('conversion_rate')})", "percentunit", GOOD_HIGH["conversion"]),
    ("GMV 1m", "room:livemon_room_gmv_window:max", "currencyCNY", None),
    ("GMV show", "room:livemon_room_gmv_total:max", "currencyCNY", None),
    ("Stall ratio", "room:livemon_room_stall_ratio:max", "percentunit", BAD_HIGH["stall"]),
    ("Latency p95", f'max by (room) ({series("latency_p95_ms")}{{quantile="0.95"}})', "s", BAD_HIGH["latency"]),
]


def control_room():
    refs = [chr(ord("A") + i) for i in range(len(CONTROL_COLUMNS))]
    rooms = (table.Panel().title("All live rooms").datasource(DS).height(14).span(24)
             .description("One row per live room, busiest first. Red cells need a look.")
             .sort_by([cb.TableSortByFieldState().display_name("Online").desc(True)])
             .cell_height(cm.TableCellHeight.LG)
             .with_transformation(dm.DataTransformerConfig(id_val="merge", options={}))
             .with_transformation(dm.DataTransformerConfig(id_val="organize", options={
                 "excludeByName": {"Time": True},
                 "renameByName": {"room": "Room", **{f"Value #{ref}": col[0]
                                                     for ref, col in zip(refs, CONTROL_COLUMNS)}},
                 "indexByName": {"room": 0, **{f"Value #{ref}": i + 1 for i, ref in enumerate(refs)}},
             })))
    for ref, (column, expr, unit, thresholds) in zip(refs, CONTROL_COLUMNS):
        rooms = rooms.with_target(q(expr, ref=ref, instant=True, table_format=True))
        props = [dm.DynamicConfigValue(id_val="unit", value=unit)]
        if thresholds is not None:
            props += [dm.DynamicConfigValue(id_val="thresholds", value=thresholds.build()),
                      dm.DynamicConfigValue(id_val="custom.cellOptions", value={"type": "color-background"})]
        rooms = rooms.override_by_name(column, props)
    return (base("control-room", "Livemon · Control room",
                 "All live rooms at a glance, for the field controllers' big screen.")
            .with_row(dashboard.Row("Now"))
            .with_panel(big("Online viewers", "livemon:room_online:sum"))
            .with_panel(big("Live rooms", "livemon:rooms_live:count"))
            .with_panel(big("GMV last minute", "livemon:room_gmv_window:sum", unit="currencyCNY"))
            .with_panel(big("GMV this show", "sum(room:livemon_room_gmv_total:max)", unit="currencyCNY"))
            .with_panel(big("Rooms stalling", f"count(room:livemon_room_stall_ratio:max > {STALL_CRIT}) or vector(0)",
                            thresholds=steps((None, "green"), (1, "red")),
                            desc=f"Rooms whose stall ratio is above {STALL_CRIT:.0%}."))
            .with_panel(big("Alerts firing", 'count(ALERTS{alertstate="firing"}) or vector(0)',
                            thresholds=steps((None, "green"), (1, "red"))))
            .with_panel(rooms)
            .with_row(dashboard.Row("Trends"))
            .with_panel(ts("Online viewers by room", q("room:livemon_room_online:max", "{{room}}")))
            .with_panel(ts("GMV per minute by room", q("room:livemon_room_gmv_window:max", "{{room}}"),
                           unit="currencyCNY"))
            .with_panel(ts("Stall ratio by room", q("room:livemon_room_stall_ratio:max", "{{room}}"),
                           unit="percentunit", thresholds=BAD_HIGH["stall"], w=24)))


# --- Room ---------------------------------------------------------------------------------------------

def funnel_panel(sel: str, title: str, description: str, names: tuple[str, str, str]):
    """The window's funnel of a room: viewers, product clickers (viewers x CTR), buyers (x conversion)."""
    viewers, ctr, conversion = (series(name, sel) for name in ("viewers", "product_ctr", "conversion_rate"))
    return (bargauge.Panel().title(title).datasource(DS)
            .height(8).span(12).orientation(cm.VizOrientation.HORIZONTAL)
            .display_mode(cm.BarGaugeDisplayMode.GRADIENT).unit("short").thresholds(NEUTRAL)
            .description(description)
            .reduce_options(cb.ReduceDataOptions().calcs(["lastNotNull"]))
            .with_target(q(f"max({viewers})", names[0], "A", instant=True))
            .with_target(q(f"max({viewers} * {ctr})", names[1], "B", instant=True))
            .with_target(q(f"max({viewers} * {ctr} * {conversion})", names[2], "C", instant=True)))


def room():
    sel = 'room="$room"'
    funnel = funnel_panel(sel, "Funnel: viewers → product clickers → buyers",
                          "Distinct users in the last window: viewers, those who clicked a product, "
                          "and those of them with a paid order.", ("Viewers", "Product clickers", "Buyers"))
    board = (base("room", "Livemon · Room", "One live room in depth.")
            .with_variable(room_variable(multi=False))
            .with_row(dashboard.Row("$room now"))
            .with_panel(big("Online", f"max({series('online', sel)})"))
            .with_panel(big("Viewers (window)", f"max({series('viewers', sel)})"))
            .with_panel(big("Retention 60s", f'max({series("retention_60s")}{{{sel}, horizon="60s"}})',
                            unit="percentunit", thresholds=GOOD_HIGH["retention"]))
            .with_panel(big("Conversion", f"max({series('conversion_rate', sel)})", unit="percentunit",
                            thresholds=GOOD_HIGH["conversion"]))
            .with_panel(big("GMV this show", f"max({series(GMV_SHOW, sel)})", unit="currencyCNY"))
            .with_panel(big("GPM", f"max({series('gpm', sel)})", unit="currencyCNY",
                            desc="GMV per thousand entries."))
            .with_row(dashboard.Row("Commerce"))
            .with_panel(funnel))
    for row, title in ROOM_ROWS:
        board = board.with_row(dashboard.Row(title))
        for family, kind, text, metrics in catalogue.families("room"):
            if metrics[0].dashboard == row:
                board = board.with_panel(family_panel(family, kind, text, metrics, sel))
    return board


# The room dashboard's rows of catalogue metrics: (Metric.dashboard, row title).
ROOM_ROWS = (("audience", "Audience"), ("sales", "Sales"), ("interaction", "Interaction"))
UNITS = {"pct": "percentunit", "money": "currencyCNY", "ms": "s", "s": "s", "int": "short", "num": "short"}


def family_panel(family: str, kind: str, text: str, metrics, sel: str):
    """A time series of one Prometheus family of the catalogue: one line per extra label value."""
    first = metrics[0]
    if first.labels:
        label = first.labels[0][0]
        query = q(f"max by ({label}) ({family}{{{sel}}})", "{{" + label + "}}")
        words = [m.en.split() for m in metrics]
        common = list(itertools.takewhile(lambda w: len(set(w)) == 1, zip(*words)))  # "Retention 30 s", ...
        common = [w[0] for w in common]
        title = " ".join(common) + " by " + label
    else:
        query = q(f"max({family}{{{sel}}})", first.en)
        title = first.en
    return ts(title, query, unit=UNITS[first.format], desc=text)


# --- Stream health and CDN ---------------------------------------------------------------------------

FAILOVER_ANNOTATION = "CDN failovers"
ALERT_ANNOTATION = "Firing alerts"
ALERT_COUNTER_ANNOTATION = "Alerts fired by the monitor"
# Fields of Grafana's Prometheus annotation query that the SDK's AnnotationQuery does not model.
ANNOTATION_EXTRAS = {
    FAILOVER_ANNOTATION: {"titleFormat": "Failover {{room}}: {{from_cdn}} → {{to_cdn}}",
                          "tagKeys": "room,from_cdn,to_cdn", "step": "15s", "useValueForTime": False},
    ALERT_ANNOTATION: {"titleFormat": "{{alertname}} {{room}} {{cdn}}", "tagKeys": "alertname,severity,room,cdn",
                       "step": "15s", "useValueForTime": False},
    ALERT_COUNTER_ANNOTATION: {"titleFormat": "{{alert}} fired", "tagKeys": "alert", "step": "15s",
                               "useValueForTime": False},
}


def increase_or_new(selector: str, window: str) -> str:
    """Increase of a counter over `window`, counting a series born inside the window too: a counter
    that first appears at 1 (the first failover of a room) has no earlier sample for increase()."""
    return f"(increase({selector}[{window}]) > 0 or ({selector} unless {selector} offset {window}))"


def annotation(name: str, expr: str, colour: str):
    return dashboard.AnnotationQuery().name(name).datasource(DS).enable(True).icon_color(colour).expr(expr)


# 秒开率 per CDN over all rooms, each room weighted by its viewers on the CDN (one series per room and
# CDN even while a rebalance has two workers exposing it: max by room and cdn first).
CDN_FAST_START, CDN_VIEWERS = series("fast_start_ratio", scope="cdn"), series("viewers", scope="cdn")
FLEET_FAST_START = (f"sum by (cdn) (max by (room, cdn) ({CDN_FAST_START})"
                    f" * on (room, cdn) max by (room, cdn) ({CDN_VIEWERS}))"
                    f" / sum by (cdn) (max by (room, cdn) ({CDN_VIEWERS})"
                    f" and on (room, cdn) max by (room, cdn) ({CDN_FAST_START}))")


def stream_health():
    sel = 'room=~"$room"'
    return (base("stream-health", "Livemon · Stream health and CDN",
                 "Playback quality per room and per CDN, with failovers and alerts on the timeline.")
            .with_variable(room_variable(multi=True))
            .annotation(annotation(FAILOVER_ANNOTATION,
                                   "sum by (room, from_cdn, to_cdn) "
                                   + increase_or_new(f"livemon_cdn_failovers_total{{{sel}}}", "1m"),
                                   "orange"))
            .annotation(annotation(ALERT_ANNOTATION,
                                   f'ALERTS{{alertstate="firing", {sel}}}', "red"))
            .annotation(annotation(ALERT_COUNTER_ANNOTATION,
                                   "sum by (alert) " + increase_or_new("livemon_alerts_fired_total", "1m"), "purple"))
            .with_row(dashboard.Row("Per room"))
            .with_panel(ts("Stall ratio", q(f"max by (room) ({series(STALL, sel)})", "{{room}}"),
                           unit="percentunit", thresholds=BAD_HIGH["stall"]))
            .with_panel(ts("Stalls per minute of playback",
                           q(f"max by (room) ({series('stalls_per_min', sel)})", "{{room}}")))
            .with_panel(ts("Live latency p50 / p95",
                           q(f"max by (room, quantile) ({series('latency_p95_ms', sel)})",
                             "{{room}} p{{quantile}}"), unit="s", thresholds=BAD_HIGH["latency"]))
            .with_panel(ts("Playback error ratio", q(f"max by (room) ({series(ERRORS, sel)})", "{{room}}"),
                           unit="percentunit", thresholds=BAD_HIGH["error"]))
            .with_row(dashboard.Row("Per CDN"))
            .with_panel(ts("Stall ratio by room and CDN",
                           q(f"max by (room, cdn) ({series(STALL, sel, 'cdn')})", "{{room}} {{cdn}}"),
                           unit="percentunit", thresholds=BAD_HIGH["stall"]))
            .with_panel(ts("Error ratio by room and CDN",
                           q(f"max by (room, cdn) ({series(ERRORS, sel, 'cdn')})", "{{room}} {{cdn}}"),
                           unit="percentunit", thresholds=BAD_HIGH["error"]))
            .with_panel(ts("Latency p95 by room and CDN",
                           q(f'max by (room, cdn) ({series("latency_p95_ms", scope="cdn")}{{{sel}, quantile="0.95"}})',
                             "{{room}} {{cdn}}"), unit="s", thresholds=BAD_HIGH["latency"]))
            .with_panel(ts("Viewers by room and CDN",
                           q(f"max by (room, cdn) ({series('viewers', sel, 'cdn')})", "{{room}} {{cdn}}")))
            .with_row(dashboard.Row("起播质量 · Start-up (SPEC §11)"))
            .with_panel(ts("首帧耗时 p50 · Start-up time p50",
                           q(f'max by (room) ({series("startup_p50_ms")}{{{sel}, quantile="0.5"}})', "{{room}}"),
                           unit="s", thresholds=BAD_HIGH["startup"], w=8,
                           desc="Median time to first frame over the window's plays (beacons with startup_ms)."))
            .with_panel(ts("秒开率 · Fast starts (≤ 1 s)",
                           q(f"max by (room) ({series('fast_start_ratio', sel)})", "{{room}}"),
                           unit="percentunit", thresholds=GOOD_HIGH["fast_start"], w=8,
                           desc="Share of the window's plays whose first frame came within 1 s."))
            .with_panel(ts("慢启动占比 · Slow starts (≥ 3 s)",
                           q(f"max by (room) ({series('slow_start_ratio', sel)})", "{{room}}"),
                           unit="percentunit", thresholds=BAD_HIGH["slow_start"], w=8,
                           desc="Share of the window's plays that took 3 s or more to their first frame."))
            .with_panel(ts("各 CDN 秒开率 · Fast starts by room and CDN",
                           q(f"max by (room, cdn) ({series('fast_start_ratio', sel, 'cdn')})", "{{room}} {{cdn}}"),
                           unit="percentunit", thresholds=GOOD_HIGH["fast_start"]))
            .with_panel(ts("各 CDN 首帧耗时 p50 · Start-up p50 by room and CDN",
                           q(f'max by (room, cdn) ({series("startup_p50_ms", scope="cdn")}{{{sel}, quantile="0.5"}})',
                             "{{room}} {{cdn}}"), unit="s", thresholds=BAD_HIGH["startup"]))
            .with_row(dashboard.Row("CDN fleet (all rooms, weighted by viewers)"))
            .with_panel(ts("Stall ratio by CDN", q("cdn:livemon_cdn_stall_ratio:weighted", "{{cdn}}"),
                           unit="percentunit", thresholds=BAD_HIGH["stall"], w=8))
            .with_panel(ts("Error ratio by CDN", q("cdn:livemon_cdn_error_ratio:weighted", "{{cdn}}"),
                           unit="percentunit", thresholds=BAD_HIGH["error"], w=8))
            .with_panel(ts("Failovers (last 5m)",
                           q("room_cdn:livemon_cdn_failovers:increase5m", "{{room}} {{from_cdn}} → {{to_cdn}}"),
                           w=8))
            .with_panel(ts("各 CDN 秒开率(全部房间) · Fast starts by CDN, all rooms", q(FLEET_FAST_START, "{{cdn}}"),
                           unit="percentunit", thresholds=GOOD_HIGH["fast_start"], w=24,
                           desc="Each room's fast-start ratio on the CDN weighted by its viewers on that CDN."))
            .with_row(dashboard.Row("Monitor alerting"))
            .with_panel(ts("Alerts pending and firing (monitor)",
                           q("sum by (alert, state) (livemon_alerts_active)", "{{alert}} {{state}}"),
                           desc="Alerts as the stream workers evaluate them, every step."))
            .with_panel(ts("Failover decisions (last 5m)",
                           q("sum by (decision) "
                             + increase_or_new("livemon_cdn_failover_decisions_total", "5m"), "{{decision}}"),
                           desc="Taken, declined (cooldown, no healthy CDN), pinned or unpinned by an operator.")))


# --- Sales (带货) ------------------------------------------------------------------------------------------

# The breakdown dimensions the sales dashboard draws (the catalogue's exposed ones): row title.
SALES_DIMENSIONS = (("source", "流量来源 · Traffic sources"), ("device", "终端 · Devices"))


def product_columns():
    """The top-products table's columns: (column title, catalogue product metric), one per family."""
    return [(f"{metrics[0].zh} {metrics[0].en}", metrics[0]) for _, _, _, metrics in catalogue.families("product")]


def title(metric) -> str:
    """A panel title in both languages, as the page names the metric."""
    return f"{metric.zh} · {metric.en}"


def breakdown_panel(family: str, text: str, metric, label: str, sel: str):
    """A time series of one breakdown family: one line per value of its label."""
    return ts(title(metric), q(f"max by ({label}) ({family}{{{sel}}})", "{{" + label + "}}"),
              unit=UNITS[metric.format], desc=text, w=8)


def bars(title_text: str, expr: str, legend: str, unit: str, desc: str = "", w: int = 8, h: int = 8,
         thresholds=NEUTRAL):
    """A horizontal bar gauge of an instant query: one bar per series, largest first."""
    return (bargauge.Panel().title(title_text).description(desc).datasource(DS).height(h).span(w)
            .orientation(cm.VizOrientation.HORIZONTAL).display_mode(cm.BarGaugeDisplayMode.GRADIENT)
            .unit(unit).thresholds(thresholds).min(0)
            .reduce_options(cb.ReduceDataOptions().calcs(["lastNotNull"]))
            .with_target(q(expr, legend, instant=True)))


def sales():
    sel = 'room="$room"'
    pinned = (stat.Panel().title("讲解中商品 · Pinned product").datasource(DS).height(5).span(4)
              .description("The product the host is presenting (讲解中), from the show's pin and unpin; "
                           "empty while nothing is pinned.")
              .with_target(q(f"max by (product) ({series('pinned', sel, 'show')})", "{{product}}",
                             instant=True))
              .text_mode(cm.BigValueTextMode.NAME).color_mode(cm.BigValueColorMode.BACKGROUND)
              .graph_mode(cm.BigValueGraphMode.NONE).thresholds(NEUTRAL).no_value("—")
              .reduce_options(cb.ReduceDataOptions().calcs(["lastNotNull"])))
    board = (base("sales", "Livemon · 带货 Sales",
                  "One room's selling: where the viewers come from and what each source is worth, devices, "
                  "the best-selling products and the pinned one, the funnel, GMV against ad spend.")
             .with_variable(room_variable(multi=False))
             .with_row(dashboard.Row("$room 本场 · This show"))
             .with_panel(big("本场成交额 · GMV (show)", f"max({series(GMV_SHOW, sel)})", unit="currencyCNY"))
             .with_panel(big("UV 价值 · UV value", f"max({series('uv_value', sel)})", unit="currencyCNY",
                             desc="GMV of the last window divided by its viewers."))
             .with_panel(big("本场 ROI · ROI (show)", f"max({series('roi', sel, 'show')})", thresholds=GOOD_HIGH["roi"],
                             decimals=2, desc="The show's GMV divided by its ad spend (no value without spend)."))
             .with_panel(big("退款率 · Refund rate (show)", f"max({series('refund_rate', sel, 'show')})",
                             unit="percentunit", desc="Refunded orders of the show divided by its paid orders."))
             .with_panel(big("前 10 商品成交占比 · Top-10 share", f"max({series('top10_share', sel, 'show')})",
                             unit="percentunit", desc="GMV of the show's 10 best-selling products over its GMV."))
             .with_panel(pinned))
    for dimension, row in SALES_DIMENSIONS:
        board = board.with_row(dashboard.Row(row))
        if dimension == "source":
            board = board.with_panel(bars("各来源 UV 价值 · UV value per source",
                                          f"max by (source) ({series('uv_value', sel, 'source')})", "{{source}}",
                                          "currencyCNY", desc="What a viewer of each source is worth: its GMV "
                                                              "over its viewers, last window."))
            board = board.with_panel(bars("来源构成 · Source mix (viewers)",
                                          f"max by (source) ({series('viewers', sel, 'source')})", "{{source}}",
                                          "short", desc="Distinct viewers per traffic source, last window."))
        for family, kind, text, metrics in catalogue.families(dimension):
            if metrics[0].dashboard == "sales":
                board = board.with_panel(breakdown_panel(family, text, metrics[0], dimension, sel))
    columns = product_columns()
    top = (table.Panel().title("热销商品 · Top products").datasource(DS).height(10).span(12)
           .description("The show's 10 best-selling products so far (show GMV), with their last-window "
                        "clickers, orders, GMV and conversion.")
           .sort_by([cb.TableSortByFieldState().display_name(
               next(column for column, m in columns if m.format == "money")).desc(True)])
           .with_transformation(dm.DataTransformerConfig(id_val="merge", options={}))
           .with_transformation(dm.DataTransformerConfig(id_val="organize", options={
               "excludeByName": {"Time": True},
               "renameByName": {"product": "商品 Product", **{f"Value #{chr(65 + i)}": column
                                                            for i, (column, _) in enumerate(columns)}},
               "indexByName": {"product": 0, **{f"Value #{chr(65 + i)}": i + 1 for i in range(len(columns))}},
           })))
    for i, (column, metric) in enumerate(columns):
        top = (top.with_target(q(f"max by (product) ({metric.exposed}{{{sel}}})", ref=chr(65 + i), instant=True,
                                 table_format=True))
               .override_by_name(column, [dm.DynamicConfigValue(id_val="unit", value=UNITS[metric.format])]))
    board = (board.with_row(dashboard.Row("商品 · Products"))
             .with_panel(top)
             .with_panel(bars("商品成交额(窗口) · Product GMV (last window)",
                              f"max by (product) ({series('gmv', sel, 'product')})", "{{product}}",
                              "currencyCNY", w=12, h=10, desc="GMV of the top products' orders paid in the last window."))
             .with_panel(ts("商品点击人数 · Product clickers",
                            q(f"max by (product) ({series('clickers', sel, 'product')})", "{{product}}"), w=8))
             .with_panel(ts("商品订单 · Product orders", q(f"max by (product) ({series('orders', sel, 'product')})",
                                                          "{{product}}"), w=8))
             .with_panel(ts("商品转化率 · Product conversion",
                            q(f"max by (product) ({series('conversion_rate', sel, 'product')})", "{{product}}"),
                            unit="percentunit", w=8)))
    funnel = funnel_panel(sel, "转化漏斗 · Funnel: viewers → clickers → buyers",
                          "Distinct users in the last window: viewers, those with a product click "
                          "(viewers × product CTR), and those of them with a paid order (× conversion).",
                          ("观看 Viewers", "点击 Product clickers", "成交 Buyers"))
    rates = ts("转化各环节 · Funnel rates", q(f"max({series('product_ctr', sel)})", "商品点击率 Product CTR", "A"),
               q(f"max({series('conversion_rate', sel)})", "转化率 Conversion", "B"),
               q(f"max by (source) ({series('conversion_rate', sel, 'source')})", "转化率 {{source}}", "C"),
               unit="percentunit", desc="Product CTR and conversion of the room, and conversion per traffic source.")
    return (board.with_row(dashboard.Row("漏斗 · Funnel"))
            .with_panel(funnel)
            .with_panel(rates)
            .with_row(dashboard.Row("成交与投放 · GMV and ad spend"))
            .with_panel(ts("本场成交额与投放 · GMV and ad spend (show)",
                           q(f"max({series(GMV_SHOW, sel)})", "成交额 GMV", "A"),
                           q(f"max({series(GMV_SHOW, sel)}) / max({series('roi', sel, 'show')} > 0)",
                             "投放 Ad spend (GMV ÷ ROI)", "B"),
                           unit="currencyCNY", desc="The show's GMV so far, and its ad spend so far "
                                                   "(GMV divided by ROI; no line before the first spend or sale)."))
            .with_panel(ts("本场 ROI · ROI (show)", q(f"max({series('roi', sel, 'show')})", "ROI"),
                           thresholds=GOOD_HIGH["roi"], desc="GMV divided by ad spend, as the show goes."))
            .with_panel(ts("成交额与订单(1 分钟窗口) · GMV and orders per minute",
                           q(f"max({series('gmv', sel)})", "成交额 GMV (1m)", "A"),
                           q(f"max({series('orders_per_min', sel)})", "订单/分钟 Orders/min", "B"),
                           unit="short", w=24)))


# --- Monitor internals --------------------------------------------------------------------------------

def internals():
    # Worker health metrics of livemon.exposition.WorkerMetrics.
    board = (base("internals", "Livemon · Monitor internals", "The stream workers themselves.")
            .with_row(dashboard.Row("Workers"))
            .with_panel(big("Workers up", 'sum(up{job="livemon"})', w=4,
                            thresholds=steps((None, "red"), (1, "green"))))
            .with_panel(big("Broker reachable", "min(livemon_broker_up)", w=4,
                            thresholds=steps((None, "red"), (1, "green"))))
            .with_panel(big("Consumer lag", "sum(livemon_consumer_lag_messages)", w=4,
                            thresholds=steps((None, "green"), (10000, "orange"), (100000, "red"))))
            .with_panel(big("Rooms", "sum(livemon_rooms)", w=4))
            .with_panel(big("Partitions owned", "sum(livemon_assigned_partitions)", w=4))
            .with_panel(big("Rebalances (1h)", "sum(increase(livemon_rebalances_total[1h]))", w=4))
            .with_row(dashboard.Row("Throughput"))
            .with_panel(ts("Events per second by type", q("type:livemon_events:rate1m", "{{type}}"),
                           unit="ops"))
            .with_panel(ts("Rejected events per second by reason",
                           q("reason:livemon_events_rejected:rate1m", "{{reason}}"), unit="ops",
                           desc="Rejected events go to liveroom.deadletter with their reason."))
            .with_panel(ts("Kafka messages per second by worker",
                           q("rate(livemon_messages_total[1m])", "{{instance}}"), unit="ops"))
            .with_panel(ts("Consumer lag by topic",
                           q("sum by (topic) (livemon_consumer_lag_messages)", "{{topic}}"),
                           desc="Messages not yet processed, summed over partitions."))
            .with_row(dashboard.Row("Latency and balance"))
            .with_panel(ts("Batch processing time p50 / p99",
                           q("histogram_quantile(0.5, sum by (le) (rate(livemon_batch_processing_seconds_bucket[1m])))",
                             "p50", "A"),
                           q("histogram_quantile(0.99, sum by (le) (rate(livemon_batch_processing_seconds_bucket[1m])))",
                             "p99", "B"), unit="s"))
            .with_panel(ts("Event delay and step duration by worker",
                           q("livemon_event_delay_seconds", "delay {{instance}}", "A"),
                           q("livemon_step_duration_seconds", "step {{instance}}", "B"), unit="s",
                           desc="Delay: wall clock minus the newest event time read. Step: one engine step."))
            .with_panel(ts("Rooms and partitions by worker",
                           q("livemon_rooms", "rooms {{instance}}", "A"),
                           q("livemon_assigned_partitions", "partitions {{instance}}", "B")))
            .with_panel(ts("Alert notifications (last 5m)",
                           q("sum by (receiver, outcome) (increase(livemon_alert_notifications_total[5m]))",
                             "{{receiver}} {{outcome}}"), w=12))
            .with_panel(ts("Notifications queued for a receiver",
                           q("sum by (receiver) (livemon_alert_queue_depth)", "{{receiver}}"), w=12))
            .with_panel(ts("Rebalances by worker", q("increase(livemon_rebalances_total[5m])", "{{instance}}"),
                           desc="Consumer-group rebalances in the last 5 minutes."))
            .with_panel(ts("Seconds since last step and checkpoint",
                           q("time() - livemon_last_step_timestamp_seconds", "step {{instance}}", "A"),
                           q("time() - livemon_last_checkpoint_timestamp_seconds", "checkpoint {{instance}}", "B"),
                           unit="s", w=24))
            .with_row(dashboard.Row("The monitor's own alerts"))
            .with_panel(monitor_alert_states()))
    for alert in MONITOR_ALERTS:
        board = board.with_panel(monitor_alert_panel(*alert))
    return board


# The monitor's own alerts (alerts/prometheus/alerts.yml, group `livemon-monitor`): each one's
# quantity as its rule computes it, with the line it fires at, so on-call sees how close a worker
# is and which side of the line it sits. (alert, what is drawn, [(expression, legend)], unit, fire
# line steps, the rule in words.) tests/test_dashboards.py checks every alert of the group has its
# panel reading every series its rule reads.
MONITOR_ALERT_GROUP = "livemon-monitor"
BELOW_ONE = steps((None, "red"), (1, "green"))
MONITOR_ALERTS = [
    ("MonitorWorkerDown", "workers scraped (0 = down)", [('up{job="livemon"}', "{{instance}}")], "short", BELOW_ONE,
     "Fires when Prometheus cannot scrape a worker (up == 0) for 1 minute."),
    ("LivemonStepStalled", "seconds since the last step",
     [("time() - max by (instance) (livemon_last_step_timestamp_seconds)", "{{instance}}")], "s",
     steps((None, "green"), (15, "red")), "Fires over 15 s without a step, for 15 s."),
    ("LivemonConsumerStalled", "messages waiting vs consumed, last minute",
     [("sum by (instance) (min_over_time(livemon_consumer_lag_messages[1m]))", "waiting (min) {{instance}}"),
      ("sum by (instance) (increase(livemon_messages_total[1m]))", "consumed {{instance}}"),
      ("min by (instance) (livemon_broker_up)", "broker up {{instance}}")], "short", None,
     "Fires when messages waited all minute and none was consumed while the broker answers, for 30 s."),
    ("LivemonBrokerDown", "broker reachable (0 = down)", [("min by (instance) (livemon_broker_up)", "{{instance}}")],
     "short", BELOW_ONE, "Fires when Kafka does not answer a worker for 30 s."),
    ("LivemonConsumerLagGrowing", "lag and its growth",
     [("sum by (instance) (livemon_consumer_lag_messages)", "lag {{instance}}"),
      ("sum by (instance) (deriv(livemon_consumer_lag_messages[2m]))", "growth/s {{instance}}")], "short",
     steps((None, "green"), (1000, "orange")),
     "Fires when the lag is over 1000 messages and its 2-minute slope positive, for 2 minutes."),
    ("LivemonWorkerAtCapacity", "CPU, of a core (a worker's loop is one thread)",
     [('sum by (instance) (rate(process_cpu_seconds_total{job="livemon"}[2m]))', "{{instance}}")], "percentunit",
     steps((None, "green"), (0.85, "orange")), "Fires over 0.85 of a core for 5 minutes: no headroom for the peak."),
    ("LivemonCheckpointStale", "seconds since the last checkpoint",
     [("time() - max by (instance) (livemon_last_checkpoint_timestamp_seconds > 0 or livemon_worker_start_timestamp_seconds)",
       "{{instance}}"),
      ("max by (instance) (livemon_assigned_partitions)", "partitions {{instance}}")], "s",
     steps((None, "green"), (60, "red")),
     "Fires over 60 s without a checkpoint (the start time before the first) while partitions are owned, for 30 s."),
    ("LivemonRejectedEventsSurge", "share of events rejected (5m)",
     [("sum by (instance) (rate(livemon_events_rejected_total[5m])) / (sum by (instance) (rate(livemon_events_total[5m]))"
       " + sum by (instance) (rate(livemon_events_rejected_total[5m])))", "{{instance}}")], "percentunit",
     steps((None, "green"), (0.05, "red")), "Fires over 5% for 5 minutes."),
    ("LivemonBatchesRejected", "unreadable batches and records (10m)",
     [("sum by (instance) (increase(livemon_batches_rejected_total[10m]) > 0"
       " or (livemon_batches_rejected_total unless livemon_batches_rejected_total offset 10m)"
       " or increase(livemon_records_rejected_total[10m]) > 0"
       " or (livemon_records_rejected_total unless livemon_records_rejected_total offset 10m))", "{{instance}}")],
     "short", steps((None, "green"), (0.5, "red")), "Fires at any in 10 minutes; empty while there is none."),
    ("LivemonAlertQueueBacklog", "least queued per receiver over 5m",
     [("min by (instance, receiver) (min_over_time(livemon_alert_queue_depth[5m]))", "{{receiver}} {{instance}}")],
     "short", steps((None, "green"), (0.5, "red")), "Fires when a receiver's outbox was never empty for 5 minutes, for 1 minute."),
    ("LivemonFailoverDeclined", "CDN failovers declined (5m)",
     [('sum by (instance) (increase(livemon_cdn_failover_decisions_total{decision="declined"}[5m]) > 0'
       ' or (livemon_cdn_failover_decisions_total{decision="declined"}'
       ' unless livemon_cdn_failover_decisions_total{decision="declined"} offset 5m))', "{{instance}}")],
     "short", steps((None, "green"), (0.5, "red")), "Fires at any declined in 5 minutes; empty while there is none."),
    ("LivemonGroupLagOutside", "seconds waiting without a commit, from Kafka",
     [("max by (group) (livemon_group_commit_age_seconds)", "{{group}}")], "s",
     steps((None, "green"), (120, "red")),
     "Fires over 120 s (livemon lag-exporter, read from the broker; holds with every worker dead), for 1 minute."),
]


def monitor_alert_panel(alert: str, what: str, queries, unit: str, fire, rule: str):
    refs = "ABCDEFGH"
    return ts(f"{alert} · {what}", *(q(expr, legend, refs[i]) for i, (expr, legend) in enumerate(queries)),
              unit=unit, thresholds=fire, w=8,
              desc=f"{rule} Runbook: docs/ALERTING.md#{alert.lower()}")


def monitor_alert_states():
    names = "|".join(alert for alert, *_ in MONITOR_ALERTS)
    return (statetimeline.Panel().title("Monitor alerts firing or pending").datasource(DS).height(6).span(24)
            .description("Prometheus's state of the monitor's own alerts (ALERTS): 1 pending, 2 firing.")
            .with_target(q(f'max by (alertname, instance) (ALERTS{{alertname=~"{names}", alertstate="firing"}} * 2 '
                           f'or ALERTS{{alertname=~"{names}", alertstate="pending"}})', "{{alertname}} {{instance}}"))
            .mappings([dm.ValueMap(options={"1": dm.ValueMappingResult(text="pending", color="orange"),
                                            "2": dm.ValueMappingResult(text="firing", color="red")})]))


DASHBOARDS = {
    "control-room.json": control_room,
    "room.json": room,
    "stream-health.json": stream_health,
    "internals.json": internals,
    "sales.json": sales,
}


def build(name: str) -> dict:
    """The dashboard model of one file, as plain JSON data."""
    model = json.loads(json.dumps(DASHBOARDS[name]().build(), cls=JSONEncoder))
    ids = itertools.count(1)
    for panel in model.get("panels", []):  # stable, unique panel ids (links and alerts refer to them)
        panel["id"] = next(ids)
    for variable in model.get("templating", {}).get("list", []):
        variable.pop("id", None)  # the SDK's placeholder; Grafana keys variables by name
    for item in model.get("annotations", {}).get("list", []):
        item.update(ANNOTATION_EXTRAS.get(item.get("name"), {}))
    return model


def render(name: str) -> str:
    return json.dumps(build(name), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def render_all() -> dict[str, str]:
    return {name: render(name) for name in DASHBOARDS}
