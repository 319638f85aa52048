"""The metric catalogue: every metric of a room's snapshot, declared once.

An entry says what the engine's snapshot calls the metric (SPEC §5), how Prometheus exposes it
(SPEC §7: family, extra labels, kind, scale; or not at all), its unit and help text, its names on the page in
Chinese and English, and where it appears: the page's tiles and charts, the post-show review,
alert rules, the dashboards. The engine's snapshot, the Prometheus collector, rule validation,
the control-room hub and page (served as JSON), the review and the dashboard builder all read
it; a test holds the engine's snapshot and this catalogue to the same names.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from livemon.ingest.events import DEVICES, SOURCES

# How a value is shown: int (count), num (rate), pct (a ratio shown as %), money (CNY), ms, s.
FORMATS = ("int", "num", "pct", "money", "ms", "s")
# How the review sums a metric up over a show: the largest value, the mean over the show's
# instants, the mean weighted by another metric (`review_weight`), the last value.
SUMMARIES = ("peak", "mean", "weighted", "last")


@dataclass(frozen=True)
class Chart:
    """A chart of the room page or the review; its series are the metrics that name it."""

    id: str
    zh: str
    en: str
    page: bool = True  # on the room page
    review: bool = True  # in the review of one show
    cdn: bool = False  # its room series is drawn beside one series per CDN


CHARTS = (
    Chart("online", "在线、进入与离开(1 分钟窗口)", "Online viewers, entries and leaves (1-minute window)"),
    Chart("retention", "各时长留存", "Retention by horizon"),
    Chart("rates", "互动率、商品点击率与转化率", "Interaction, product CTR and conversion", page=False),
    Chart("gmv", "成交额与订单(1 分钟窗口)", "GMV per minute window and orders per minute", review=False),
    Chart("gmv_show", "本场累计成交额与 1 分钟成交额", "GMV: running total and last minute", page=False),
    Chart("stall", "卡顿率:全场与各 CDN", "Stall ratio, room and per CDN", cdn=True),
    Chart("latency", "直播延迟 p95:全场与各 CDN", "Live latency p95, room and per CDN", cdn=True),
)


@dataclass(frozen=True)
class Metric:
    name: str  # the snapshot's name (SPEC §5; §8, §9, §10 in their scopes)
    exposed: str | None  # the Prometheus family (SPEC §7), without `_total` for counters; None: not exposed
    help: str
    zh: str  # the name on the page and in the review, Chinese first
    en: str
    format: str  # one of FORMATS
    labels: tuple[tuple[str, str], ...] = ()  # extra Prometheus labels of this metric's series
    kind: str = "gauge"  # gauge | counter
    scale: float = 1.0  # exposed value = snapshot value * scale (ms -> seconds)
    scope: str = "room"  # one of SCOPES: room | cdn (per `(room, cdn)`) | source | device | product | show
    charts: tuple[str, ...] = ()  # the CHARTS that draw it
    axis: str | None = None  # a second y axis of its chart, shared by the metrics that name it
    tile: bool = False  # on the grid's room tiles
    compare: bool = False  # drawn when two shows are compared
    review: str | None = None  # how the review sums it up (SUMMARIES); None: not in the summary
    review_weight: str | None = None  # the metric a `weighted` summary weighs by
    higher_is_better: bool | None = None  # colours the review's comparisons; None: neutral
    rule: bool = True  # usable as an alert rule's metric
    dashboard: str | None = None  # the dashboard row that shows it
    target: str | None = None  # the name of the show target it is measured against (web targets)
    absent: float | None = None  # product scope: the value of a top product with no entry in the window
    as_label: str | None = None  # the snapshot's value is this label's value and the sample is 1 (an info gauge)
    onset: str | None = None  # the beacon symptom it shows ("stall", "errors", "latency", "startup"): `livemon bench-alerts` times its onset

    def to_json(self) -> dict:
        return {**asdict(self), "labels": dict(self.labels)}


def _retention(horizon: int) -> Metric:
    return Metric(f"retention_{horizon}s", "livemon_room_retention_ratio",
                  "Share of the presences started one horizon before the window that lasted the horizon.",
                  f"{horizon} 秒留存", f"Retention {horizon} s", "pct", labels=(("horizon", f"{horizon}s"),),
                  charts=("retention",), tile=horizon == 60, compare=horizon == 60, review="mean", higher_is_better=True,
                  dashboard="audience")


# The short-window figures (the last 10 s of the window): snapshot name -> (family stem, help, zh, en).
_RECENT = {
    "stall_ratio": ("stall_10s_ratio", "Stall time divided by play plus stall time, last 10 s.", "卡顿率(10 秒)",
                    "Stall ratio (10 s)"),
    "latency_p95_ms": ("latency_10s_seconds", "p95 live latency of the last 10 s of beacons.", "延迟 p95(10 秒)",
                       "Latency p95 (10 s)"),
    "error_rate": ("error_10s_ratio", "Health beacons with an error divided by all beacons, last 10 s.",
                   "播放错误率(10 秒)", "Error rate (10 s)"),
    "fast_start_ratio": ("fast_start_10s_ratio", "Share of the last 10 s of plays started within 1 s.",
                         "秒开率(10 秒)", "Fast starts (10 s)"),
    "startups": ("startups_10s", "Plays started in the last 10 s.", "启播次数(10 秒)", "Plays started (10 s)"),
}


def _recent(name: str, scope: str) -> Metric:
    stem, text, zh, en = _RECENT[name]
    latency = name == "latency_p95_ms"
    return Metric(f"{name}_10s", f"livemon_{scope}_{stem}", text if scope == "room" else f"Per CDN: {text[0].lower()}{text[1:]}",
                  zh if scope == "room" else f"CDN {zh}", en if scope == "room" else f"CDN {en[0].lower()}{en[1:]}",
                  "ms" if latency else "int" if name == "startups" else "pct", labels=(("quantile", "0.95"),) if latency else (),
                  scale=0.001 if latency else 1.0, scope=scope)


ROOM: tuple[Metric, ...] = (
    Metric("online", "livemon_room_online", "Viewers present at the live instant.", "在线人数", "Online", "int",
           charts=("online",), tile=True, compare=True, target="online", review="peak", higher_is_better=True, dashboard="audience"),
    Metric("viewers", "livemon_room_viewers", "Distinct viewers present at any moment of the window.",
           "观看人数(窗口)", "Viewers (window)", "int", review="mean", higher_is_better=True, dashboard="audience"),
    Metric("entries", "livemon_room_entries", "Presences that started in the window.", "进入", "Entries", "int",
           charts=("online",), axis="flow", dashboard="audience"),
    Metric("leaves", "livemon_room_leaves", "Presences that ended in the window (leave or timeout).", "离开",
           "Leaves", "int", charts=("online",), axis="flow", dashboard="audience"),
    *(_retention(horizon) for horizon in (30, 60, 180)),
    Metric("avg_watch_seconds", "livemon_room_avg_watch_seconds",
           "Mean duration of presences that ended in the window.", "平均观看时长", "Avg watch time", "s",
           review="weighted", review_weight="leaves", higher_is_better=True, dashboard="audience"),
    Metric("interaction_rate", "livemon_room_interaction_ratio", "Interacting users divided by viewers.",
           "互动率", "Interaction", "pct", charts=("rates",), tile=True, compare=True, review="mean", higher_is_better=True, dashboard="interaction"),
    Metric("danmaku_per_min", "livemon_room_danmaku_per_minute", "Danmaku per minute over the window.",
           "弹幕/分钟", "Danmaku/min", "num", review="mean", dashboard="interaction"),
    Metric("product_ctr", "livemon_room_product_ctr_ratio", "Users with a product click divided by viewers.",
           "商品点击率", "Product CTR", "pct", charts=("rates",), tile=True, compare=True, review="mean", higher_is_better=True, dashboard="sales"),
    Metric("conversion_rate", "livemon_room_conversion_ratio", "Share of product clickers with a paid order.",
           "转化率", "Conversion", "pct", charts=("rates",), tile=True, compare=True, target="conversion", review="mean", higher_is_better=True, dashboard="sales"),
    Metric("orders_per_min", "livemon_room_orders_per_minute", "Distinct paid orders per minute over the window.",
           "订单/分钟", "Orders/min", "num", charts=("gmv",), axis="orders", dashboard="sales"),
    Metric("gmv", "livemon_room_gmv_window", "GMV of the orders paid in the window.", "成交额(窗口)",
           "GMV (window)", "money", charts=("gmv", "gmv_show"), tile=True, dashboard="sales"),
    Metric("gmv_total", "livemon_room_gmv", "GMV of the distinct orders paid since the show began.", "本场成交额",
           "GMV (show)", "money", kind="counter", charts=("gmv_show",), tile=True, compare=True, target="gmv", review="last", higher_is_better=True, dashboard="sales"),
    Metric("orders_total", "livemon_room_orders", "Distinct paid orders since the show began.", "本场订单",
           "Paid orders (show)", "int", kind="counter", review="last", higher_is_better=True, dashboard="sales"),
    Metric("uv_value", "livemon_room_uv_value", "GMV of the window divided by viewers.", "UV 价值", "UV value",
           "money", review="mean", higher_is_better=True, dashboard="sales"),
    Metric("gpm", "livemon_room_gpm", "GMV per thousand entries over the window.", "千次观看成交额 GPM", "GPM",
           "money", review="mean", higher_is_better=True, dashboard="sales"),
    Metric("stall_ratio", "livemon_room_stall_ratio", "Stall time divided by play plus stall time.", "卡顿率",
           "Stall ratio", "pct", charts=("stall",), tile=True, compare=True, review="mean", higher_is_better=False, dashboard="stream", onset="stall"),
    Metric("stalls_per_min", "livemon_room_stalls_per_minute", "Stalls per minute of playback.", "卡顿次数/分钟",
           "Stalls/min", "num", review="mean", higher_is_better=False, dashboard="stream"),
    Metric("latency_p50_ms", "livemon_room_latency_seconds", "Live latency percentiles over the window's beacons.",
           "延迟 p50", "Latency p50", "ms", labels=(("quantile", "0.5"),), scale=0.001, dashboard="stream"),
    Metric("latency_p95_ms", "livemon_room_latency_seconds", "Live latency percentiles over the window's beacons.",
           "延迟 p95", "Latency p95", "ms", labels=(("quantile", "0.95"),), scale=0.001, charts=("latency",),
           compare=True, review="mean", higher_is_better=False, dashboard="stream", onset="latency"),
    Metric("error_rate", "livemon_room_error_ratio", "Health beacons with an error divided by all beacons.",
           "播放错误率", "Error rate", "pct", review="mean", higher_is_better=False, dashboard="stream", onset="errors"),
    # SPEC §11: start-up quality over the window's beacons that carry startup_ms.
    Metric("startup_p50_ms", "livemon_room_startup_seconds", "Median time to first frame of the window's plays.",
           "首帧耗时 p50", "Start-up time p50", "ms", labels=(("quantile", "0.5"),), scale=0.001, review="mean",
           higher_is_better=False, dashboard="stream"),
    Metric("fast_start_ratio", "livemon_room_fast_start_ratio", "Share of the window's plays started within 1 s.",
           "秒开率", "Fast starts (<= 1 s)", "pct", review="mean", higher_is_better=True, dashboard="stream", onset="startup"),
    Metric("slow_start_ratio", "livemon_room_slow_start_ratio", "Share of the window's plays that took 3 s or more "
           "to start.", "慢启动占比", "Slow starts (>= 3 s)", "pct", review="mean", higher_is_better=False,
           dashboard="stream"),
    Metric("startups", "livemon_room_startups", "Plays started in the window (beacons with a start-up time).",
           "启播次数", "Plays started", "int"),
    # The same figures over the last 10 s only (engine/room.py RECENT_WINDOW): alert rules read them
    # beside the window's to see a sudden fault within seconds (docs/ALERTING.md, "Two windows").
    *(_recent(name, scope="room") for name in _RECENT),
)

CDN: tuple[Metric, ...] = (
    Metric("viewers", "livemon_cdn_viewers", "Distinct users with beacons on the CDN in the window.",
           "CDN 观看人数", "CDN viewers", "int", scope="cdn", dashboard="cdn"),
    Metric("stall_ratio", "livemon_cdn_stall_ratio", "Stall ratio of the CDN's beacons.", "CDN 卡顿率",
           "CDN stall ratio", "pct", scope="cdn", charts=("stall",), dashboard="cdn"),
    Metric("latency_p95_ms", "livemon_cdn_latency_seconds", "p95 live latency of the CDN's beacons.",
           "CDN 延迟 p95", "CDN latency p95", "ms", labels=(("quantile", "0.95"),), scale=0.001, scope="cdn",
           charts=("latency",), dashboard="cdn"),
    Metric("error_rate", "livemon_cdn_error_ratio", "Error ratio of the CDN's beacons.", "CDN 错误率",
           "CDN error rate", "pct", scope="cdn", dashboard="cdn"),
    Metric("startup_p50_ms", "livemon_cdn_startup_seconds", "Median time to first frame of the CDN's plays.",
           "CDN 首帧耗时 p50", "CDN start-up p50", "ms", labels=(("quantile", "0.5"),), scale=0.001, scope="cdn",
           dashboard="cdn"),
    Metric("fast_start_ratio", "livemon_cdn_fast_start_ratio", "Share of the CDN's plays started within 1 s.",
           "CDN 秒开率", "CDN fast starts", "pct", scope="cdn", dashboard="cdn"),
    Metric("slow_start_ratio", "livemon_cdn_slow_start_ratio", "Share of the CDN's plays that took 3 s or more.",
           "CDN 慢启动占比", "CDN slow starts", "pct", scope="cdn", dashboard="cdn"),
    Metric("startups", "livemon_cdn_startups", "Plays started on the CDN in the window.", "CDN 启播次数",
           "CDN plays started", "int", scope="cdn"),
    *(_recent(name, scope="cdn") for name in _RECENT),
)

# SPEC §8 breakdowns exposed to Prometheus (SPEC §7): per `(room, source)` and `(room, device)`, from the
# snapshot's `by[dimension][value]`. Only these two dimensions, and only the values of the event
# contract plus "unknown", so their series stay bounded whatever the traffic; regions, age bands,
# gender and follower are never exposed (their cardinality is the audience's).
EXPOSED_VALUES: dict[str, tuple[str, ...]] = {"source": (*SOURCES, "unknown"), "device": (*DEVICES, "unknown")}
DIMENSIONS = ("source", "device", "region", "age_band", "gender", "follower")  # SPEC §8, on the replay line

BY: tuple[Metric, ...] = (
    Metric("viewers", "livemon_source_viewers", "Distinct viewers of the traffic source in the window.",
           "来源观看人数", "Viewers by source", "int", scope="source", dashboard="sales"),
    Metric("entries", "livemon_source_entries", "Presences of the traffic source that started in the window.",
           "来源进入", "Entries by source", "int", scope="source", dashboard="sales"),
    Metric("avg_watch_seconds", "livemon_source_avg_watch_seconds",
           "Mean duration of the source's presences that ended in the window.", "来源平均观看时长",
           "Avg watch time by source", "s", scope="source", dashboard="sales"),
    Metric("conversion_rate", "livemon_source_conversion_ratio",
           "Share of the source's product clickers with a paid order in the window.", "来源转化率",
           "Conversion by source", "pct", scope="source", dashboard="sales"),
    Metric("gmv", "livemon_source_gmv_window", "GMV of the window's paid orders attributed to the source.",
           "来源成交额(窗口)", "GMV by source (window)", "money", scope="source", dashboard="sales"),
    Metric("uv_value", "livemon_source_uv_value", "GMV attributed to the source divided by its viewers.",
           "来源 UV 价值", "UV value by source", "money", scope="source", dashboard="sales"),
    Metric("viewers", "livemon_device_viewers", "Distinct viewers on the device type in the window.",
           "终端观看人数", "Viewers by device", "int", scope="device", dashboard="sales"),
    Metric("avg_watch_seconds", "livemon_device_avg_watch_seconds",
           "Mean duration of the device type's presences that ended in the window.", "终端平均观看时长",
           "Avg watch time by device", "s", scope="device", dashboard="sales"),
    Metric("interaction_rate", "livemon_device_interaction_ratio",
           "Interacting users on the device type divided by its viewers.", "终端互动率",
           "Interaction by device", "pct", scope="device", dashboard="sales"),
)

# SPEC §9, per `(room, product)`, for the products of the show's `top_products` (at most TOP_PRODUCTS,
# ranked by the engine) with their window figures from the snapshot's `products`; a top product
# quiet in the window has 0 counts and GMV (`absent`) and no conversion.
TOP_PRODUCTS = 10
PRODUCT: tuple[Metric, ...] = (
    Metric("clickers", "livemon_product_clickers", "Distinct users with a click on the product in the window.",
           "商品点击人数", "Product clickers", "int", scope="product", absent=0, dashboard="sales"),
    Metric("orders", "livemon_product_orders", "Distinct paid orders of the product in the window.",
           "商品订单", "Product orders", "int", scope="product", absent=0, dashboard="sales"),
    Metric("gmv", "livemon_product_gmv_window", "GMV of the product's orders paid in the window.",
           "商品成交额(窗口)", "Product GMV (window)", "money", scope="product", absent=0, dashboard="sales"),
    Metric("conversion_rate", "livemon_product_conversion_ratio",
           "Share of the product's clickers with a paid order of it in the window.", "商品转化率",
           "Product conversion", "pct", scope="product", dashboard="sales"),
)

# The room's current show (the snapshot's `show`, SPEC §9 and §10), as gauges.
SHOW: tuple[Metric, ...] = (
    Metric("pinned", "livemon_room_pinned_product_info", "1 while a product is pinned (讲解中), labelled by it.",
           "讲解中商品", "Pinned product", "int", scope="show", as_label="product", dashboard="sales"),
    Metric("refund_rate", "livemon_show_refund_ratio", "Refunded orders of the show divided by its paid orders.",
           "本场退款率", "Refund rate (show)", "pct", scope="show", dashboard="sales"),
    Metric("top10_share", "livemon_show_top10_share_ratio",
           "GMV of the show's 10 best-selling products divided by the show's GMV.", "前 10 商品成交占比",
           "Top-10 product share (show)", "pct", scope="show", dashboard="sales"),
    Metric("roi", "livemon_show_roi_ratio", "The show's GMV divided by its ad spend.", "本场 ROI",
           "ROI (show)", "num", scope="show", dashboard="sales"),
)
SCOPES = ("room", "cdn", "source", "device", "product", "show")

# The name lists, derived from ROOM and CDN by `_derive`.
ROOM_NAMES: tuple[str, ...]
CDN_NAMES: tuple[str, ...]
BY_NAME: dict[str, Metric]
CDN_BY_NAME: dict[str, Metric]
RULE_NAMES: tuple[str, ...]
CDN_RULE_NAMES: tuple[str, ...]
CHART_NAMES: tuple[str, ...]
CDN_CHART_NAMES: tuple[str, ...]
TILE_NAMES: tuple[str, ...]
REVIEW_NAMES: tuple[str, ...]


def _derive() -> None:
    """The catalogue's name lists, computed from ROOM and CDN."""
    global ROOM_NAMES, CDN_NAMES, BY_NAME, CDN_BY_NAME, RULE_NAMES, CDN_RULE_NAMES
    global CHART_NAMES, CDN_CHART_NAMES, TILE_NAMES, REVIEW_NAMES
    ROOM_NAMES = tuple(metric.name for metric in ROOM)
    CDN_NAMES = tuple(metric.name for metric in CDN)
    BY_NAME = {metric.name: metric for metric in ROOM}
    CDN_BY_NAME = {metric.name: metric for metric in CDN}
    RULE_NAMES = tuple(metric.name for metric in ROOM if metric.rule)
    CDN_RULE_NAMES = tuple(metric.name for metric in CDN if metric.rule)
    # The metrics whose recent history the control room keeps per room (page charts and tiles).
    page = {chart.id for chart in CHARTS if chart.page}
    CHART_NAMES = tuple(metric.name for metric in ROOM if page & set(metric.charts) or metric.tile)
    CDN_CHART_NAMES = tuple(metric.name for metric in CDN if page & set(metric.charts))
    TILE_NAMES = tuple(metric.name for metric in ROOM if metric.tile)
    # The series a review keeps per show: what its charts, comparisons and summary draw on.
    review = {chart.id for chart in CHARTS if chart.review}
    REVIEW_NAMES = tuple(metric.name for metric in ROOM
                         if review & set(metric.charts) or metric.compare or metric.review)


_derive()


def add(metric: Metric) -> None:
    """Declare one more metric (a plugin's, a test's): read at once by the exposition, the page's
    catalogue and the review; the engine's snapshot must carry it."""
    global ROOM, CDN, BY, PRODUCT, SHOW
    if metric.scope == "room":
        ROOM = (*ROOM, metric)
    elif metric.scope == "cdn":
        CDN = (*CDN, metric)
    elif metric.scope in EXPOSED_VALUES:
        BY = (*BY, metric)
    elif metric.scope == "product":
        PRODUCT = (*PRODUCT, metric)
    elif metric.scope == "show":
        SHOW = (*SHOW, metric)
    else:
        raise ValueError(f"unknown scope {metric.scope!r}")
    _derive()


def remove(name: str, scope: str = "room") -> None:
    global ROOM, CDN, BY, PRODUCT, SHOW
    if scope == "room":
        ROOM = tuple(metric for metric in ROOM if metric.name != name)
    elif scope == "cdn":
        CDN = tuple(metric for metric in CDN if metric.name != name)
    elif scope in EXPOSED_VALUES:
        BY = tuple(metric for metric in BY if (metric.name, metric.scope) != (name, scope))
    elif scope == "product":
        PRODUCT = tuple(metric for metric in PRODUCT if metric.name != name)
    else:
        SHOW = tuple(metric for metric in SHOW if metric.name != name)
    _derive()


def scoped(scope: str = "room") -> tuple[Metric, ...]:
    """The metrics of one scope (SCOPES), in catalogue order."""
    if scope == "room":
        return ROOM
    if scope == "cdn":
        return CDN
    if scope in EXPOSED_VALUES:
        return tuple(metric for metric in BY if metric.scope == scope)
    return PRODUCT if scope == "product" else SHOW


def families(scope: str = "room") -> list[tuple[str, str, str, list[Metric]]]:
    """The Prometheus families of a scope: (name, kind, help, metrics), in catalogue order; the
    metrics of one family differ by their extra labels. Metrics not exposed are left out."""
    out: dict[str, tuple[str, str, str, list[Metric]]] = {}
    for metric in scoped(scope):
        if metric.exposed is None:
            continue
        name = metric.exposed + ("_total" if metric.kind == "counter" else "")
        out.setdefault(name, (name, metric.kind, metric.help, []))[3].append(metric)
    return list(out.values())


def target_metric(target: str) -> str:
    """The name of the room metric measured against a show target (`gmv`, `online`, `conversion`):
    modules that read one by its meaning name it through here, not by the SPEC name."""
    return next(metric.name for metric in ROOM if metric.target == target)


def onset_metric(symptom: str) -> str:
    """The name of the room metric that shows a beacon symptom (`stall`, `errors`, `latency`,
    `startup`: its `onset`), for modules that read it by its meaning like `target_metric`."""
    return next(metric.name for metric in ROOM if metric.onset == symptom)


def exposed(name: str, scope: str = "room") -> str:
    """The Prometheus name of metric `name` of `scope` (SCOPES), `_total` included for a counter,
    as `families` names it: the dashboards read it here rather than spell it."""
    for metric in scoped(scope) if scope in SCOPES else ():
        if metric.name == name and metric.exposed is not None:
            return metric.exposed + ("_total" if metric.kind == "counter" else "")
    raise KeyError(f"no exposed metric {name!r} in scope {scope!r} of the catalogue")


def as_json() -> dict:
    """The catalogue as the page and the review read it."""
    return {"room": [metric.to_json() for metric in ROOM], "cdn": [metric.to_json() for metric in CDN],
            "by": [metric.to_json() for metric in BY], "products": [metric.to_json() for metric in PRODUCT],
            "show": [metric.to_json() for metric in SHOW], "charts": [asdict(chart) for chart in CHARTS]}
