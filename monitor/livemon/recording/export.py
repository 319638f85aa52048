"""The tables of a show summary (SPEC §10), for the review report and for export.

Each table is a list of rows of raw values (numbers unformatted, ratios as fractions), with column
names in both languages. The report formats them; `export` writes one CSV per table (UTF-8 with a
BOM, so Excel opens Chinese text) and, when openpyxl is installed, one XLSX with a sheet per table.
Every figure here is the summary's own exact count or ratio: nothing is averaged over windows.
"""

from __future__ import annotations

import csv
import io
import statistics
import zipfile
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from livemon import catalogue
from livemon.alerting.incidents import RESOLVE_GOAL_SECONDS

TOP_REGIONS = 10

# The summary's keys that are also SPEC §5 metric names are spelt once, in the catalogue.
_NAME = {m.en: m.name for m in catalogue.ROOM}
AVG_WATCH, CONVERSION, UV_VALUE = _NAME["Avg watch time"], _NAME["Conversion"], _NAME["UV value"]
STALL, ERRORS = _NAME["Stall ratio"], _NAME["Error rate"]


@dataclass
class Table:
    name: str                  # file and sheet name (ASCII)
    zh: str
    en: str
    columns: list[tuple[str, str, str]] = field(default_factory=list)   # (zh, en, format)
    rows: list[list] = field(default_factory=list)
    row_kinds: list[str] = field(default_factory=list)   # per row, the format of the columns whose format is "row"


# (key, zh, en, format) of the exact KPIs, from the summary's `totals`.
TOTALS = [
    ("viewers", "观看人数", "Viewers", "int"),
    ("entries", "进入人次", "Entries", "int"),
    ("peak_online", "峰值在线", "Peak online", "int"),
    (AVG_WATCH, "平均观看时长", "Avg watch time", "sec"),
    ("stayed_60s", "停留 60 秒以上人数", "Stayed 60 s", "int"),
    ("interacting", "互动人数", "Interacting", "int"),
    ("clickers", "点击商品人数", "Clickers", "int"),
    ("carters", "加购人数", "Carters", "int"),
    ("ordering", "下单人数", "Ordering", "int"),
    ("buyers", "成交人数", "Buyers", "int"),
    ("orders", "成交订单", "Paid orders", "int"),
    ("gmv", "成交额", "GMV", "money"),
    ("refunds", "退款订单", "Refunds", "int"),
    ("refund_rate", "退款率", "Refund rate", "pct"),
    (UV_VALUE, "UV 价值", "UV value", "money2"),
    ("gpm", "GPM(千次进入成交额)", "GPM", "money"),
    (CONVERSION, "点击转化率", "Conversion (clickers who paid)", "pct"),
    (STALL, "卡顿率", "Stall ratio", "pct"),
    (ERRORS, "播放错误率", "Error rate", "pct"),
]

FUNNEL = [("观看", "Viewers"), ("停留 60 秒", "Stayed 60 s"), ("点击商品", "Clicked"), ("下单", "Ordered"),
          ("支付", "Paid")]

DIMENSIONS = {"source": ("流量来源", "By source"), "device": ("设备", "By device"), "region": ("地域(前 10)", "Top regions"),
              "age_band": ("年龄段", "By age band"), "gender": ("性别", "By gender"), "follower": ("粉丝/非粉丝", "Followers")}


def _div(a, b):
    return a / b if a is not None and b else None


LOWER_IS_BETTER = {"refunds", "refund_rate", STALL, ERRORS}
# Shares of the show's viewers, derived from the totals: (key, part, zh, en).
SHARES = [("stayed_60s_share", "stayed_60s", "停留 60 秒占观看", "Stayed 60 s / viewers"),
          ("interacting_share", "interacting", "互动人数占观看", "Interacting / viewers"),
          ("clickers_share", "clickers", "点击人数占观看", "Clickers / viewers")]
EXTRA = [("top10_share", "TOP10 商品成交占比", "TOP10 products' share of GMV", "pct", None),
         ("spend_total", "投放花费", "Spend", "money2", False), ("roi", "ROI", "ROI", "num2", True)]


# The show's incidents, summed up: (key, zh, en, format, higher is better).
INCIDENT_FIGURES = [("incidents", "故障数", "Incidents", "int", False),
                    ("resolved_within_goal", "15 分钟内恢复", "Resolved within 15 min", "int", True),
                    ("mean_time_to_detect", "平均发现用时", "Mean time to detect", "sec", False),
                    ("mean_time_to_acknowledge", "平均确认用时", "Mean time to acknowledge", "sec", False),
                    ("mean_time_to_resolve", "平均恢复用时", "Mean time to resolve", "sec", False)]


def exact_kpis(summary: dict, records: list[dict] | None = None) -> dict:
    """The show's KPIs from its summary's totals (SPEC §10), plus shares of its viewers and its
    incidents' times (from `records`, default the summary's `incidents`)."""
    totals = summary.get("totals") or {}
    out = {key: totals.get(key) for key, *_ in TOTALS}
    viewers = totals.get("viewers")
    for key, part, *_ in SHARES:
        out[key] = totals.get(part) / viewers if viewers and totals.get(part) is not None else None
    for key, *_ in EXTRA:
        out[key] = summary.get(key)
    out.update(incident_figures(incidents(summary.get("incidents") if records is None else records)))
    return out


def exact_rows() -> list[tuple[str, str, str, str, bool | None]]:
    """(key, zh, en, format, higher is better) of the exact KPI table."""
    return ([(key, zh, en, kind, key not in LOWER_IS_BETTER) for key, zh, en, kind in TOTALS]
            + [(key, zh, en, "pct", True) for key, _, zh, en in SHARES] + EXTRA + INCIDENT_FIGURES)


# ---- incidents -----------------------------------------------------------------------------------

INCIDENT_FIELDS = ("rule", "cdn", "severity", "first_bad_ts", "fired_ts", "acked_ts", "acked_by", "failover_ts",
                   "resolved_ts")


def _gap(a, b):
    return None if a is None or b is None else round(b - a, 3)


def incidents(records: list[dict] | None) -> list[dict]:
    """The show's incidents from its recorded records, in the order they fired: each firing alert
    is one, from its first bad sample (`active_at`) to its resolution, with its acknowledgement
    (the alerting service's incident records, else the operator's `ack` on its rule) and the first
    failover off its CDN. Each carries time to detect (fired − first bad), to acknowledge (acked −
    fired) and to resolve (resolved − first bad), and whether it was resolved within the 15-minute
    goal (None while open)."""
    records = sorted(records or (), key=lambda r: float(r.get("ts") or 0))
    found: list[dict] = []
    open_by: dict = {}
    for rec in records:
        if (rec.get("kind") or "alert") != "alert":
            continue
        ident = rec.get("id") or (rec.get("rule"), rec.get("cdn"))
        ts = float(rec.get("ts") or 0)
        if rec.get("state") == "firing" and ident not in open_by:
            fired = rec.get("fired_at") if rec.get("fired_at") is not None else ts
            first_bad = rec.get("active_at") if rec.get("active_at") is not None else fired
            open_by[ident] = {"alert_id": rec.get("id"), "rule": rec.get("rule"), "cdn": rec.get("cdn"),
                              "severity": rec.get("severity"), "first_bad_ts": float(first_bad), "fired_ts": float(fired),
                              "acked_ts": None, "acked_by": None, "failover_ts": None, "resolved_ts": None}
            found.append(open_by[ident])
        elif rec.get("state") == "resolved" and ident in open_by:
            done = open_by.pop(ident)
            done["resolved_ts"] = float(rec["resolved_at"] if rec.get("resolved_at") is not None else ts)
    for rec in records:
        kind, ts = rec.get("kind"), float(rec.get("ts") or 0)
        for inc in found:
            if kind == "incident" and rec.get("alert_id") is not None and rec.get("alert_id") == inc["alert_id"] \
                    and rec.get("fired_ts") is not None and abs(float(rec["fired_ts"]) - inc["fired_ts"]) < 1e-6:
                for name in ("acked_ts", "acked_by", "failover_ts"):
                    if inc[name] is None and rec.get(name) is not None:
                        inc[name] = rec[name]
            elif kind == "operator" and rec.get("action") == "ack" and inc["acked_ts"] is None \
                    and rec.get("rule") in (None, "", inc["rule"]) and rec.get("cdn") in (None, "", inc["cdn"]) \
                    and inc["fired_ts"] <= ts <= (inc["resolved_ts"] if inc["resolved_ts"] is not None else ts):
                inc["acked_ts"], inc["acked_by"] = ts, rec.get("by")
            elif kind == "failover" and rec.get("decision", "taken") == "taken" and inc["failover_ts"] is None \
                    and inc["cdn"] and rec.get("from_cdn") == inc["cdn"] and inc["fired_ts"] <= ts \
                    and (inc["resolved_ts"] is None or ts <= inc["resolved_ts"]):
                inc["failover_ts"] = ts
    for inc in found:
        inc["time_to_detect"] = _gap(inc["first_bad_ts"], inc["fired_ts"])
        inc["time_to_acknowledge"] = _gap(inc["fired_ts"], inc["acked_ts"])
        inc["time_to_resolve"] = _gap(inc["first_bad_ts"], inc["resolved_ts"])
        inc["within_goal"] = None if inc["time_to_resolve"] is None else inc["time_to_resolve"] <= RESOLVE_GOAL_SECONDS
    return found


def incident_figures(found: list[dict]) -> dict:
    """Counts and mean times of a show's incidents (`incidents()`)."""
    def mean(name):
        values = [i[name] for i in found if i[name] is not None]
        return statistics.fmean(values) if values else None
    return {"incidents": len(found), "resolved_within_goal": sum(1 for i in found if i["within_goal"]),
            "mean_time_to_detect": mean("time_to_detect"), "mean_time_to_acknowledge": mean("time_to_acknowledge"),
            "mean_time_to_resolve": mean("time_to_resolve")}


GOAL_TEXT = {True: "达成 / met", False: "超时 / missed", None: "未恢复 / open"}


def incidents_table(records: list[dict] | None) -> Table:
    return Table("incidents", "故障(发现、确认、恢复用时,目标 15 分钟内恢复)",
                 "Incidents (time to detect, acknowledge, resolve; goal: resolved within 15 min)",
                 [("告警", "Alert", "text"), ("CDN", "CDN", "text"), ("级别", "Severity", "text"),
                  ("首个异常", "First bad", "time"), ("触发", "Fired", "time"), ("确认", "Acknowledged", "time"),
                  ("确认人", "By", "text"), ("切换", "Failover", "time"), ("恢复", "Resolved", "time"),
                  ("发现用时", "Time to detect", "sec"), ("确认用时", "Time to acknowledge", "sec"),
                  ("恢复用时", "Time to resolve", "sec"), ("15 分钟目标", "15-min goal", "text")],
                 [[i["rule"], i["cdn"], i["severity"], i["first_bad_ts"], i["fired_ts"], i["acked_ts"], i["acked_by"],
                   i["failover_ts"], i["resolved_ts"], i["time_to_detect"], i["time_to_acknowledge"],
                   i["time_to_resolve"], GOAL_TEXT[i["within_goal"]]] for i in incidents(records)])


def summary_tables(summary: dict, records: list[dict] | None = None) -> list[Table]:
    """The summary's tables, in the order the report shows them; the incidents from `records`
    (the show's recorded records), default the summary's `incidents`."""
    t = summary.get("totals") or {}
    figures = exact_kpis(summary, records)
    tables = [Table("kpis", "核心数据(本场汇总)", "Key figures (show summary)",
                    [("字段", "Field", "text"), ("指标", "Figure", "text"), ("数值", "Value", "raw")],
                    [[key, bi_label(zh, en), figures.get(key)] for key, zh, en, *_ in exact_rows()])]
    funnel = summary.get("funnel") or [t.get(k) for k in ("viewers", "stayed_60s", "clickers", "ordering", "buyers")]
    top = funnel[0] if funnel else None
    tables.append(Table("funnel", "转化漏斗", "Funnel",
                        [("环节", "Step", "text"), ("人数", "People", "int"), ("占观看", "Of viewers", "pct"),
                         ("占上一步", "Of previous step", "pct")],
                        [[bi_label(*FUNNEL[i]), n, _div(n, top), _div(n, funnel[i - 1]) if i else None]
                         for i, n in enumerate(funnel[:len(FUNNEL)])]))
    by = summary.get("by") or {}
    for dim, (zh, en) in DIMENSIONS.items():
        values = by.get(dim) or {}
        items = sorted(values.items(), key=lambda kv: (-(kv[1].get("gmv") or 0), -(kv[1].get("viewers") or 0), kv[0]))
        if dim == "region":
            items = sorted(values.items(), key=lambda kv: (-(kv[1].get("viewers") or 0), -(kv[1].get("gmv") or 0), kv[0]))
            items = items[:TOP_REGIONS]
        tables.append(Table(f"by_{dim}", zh, en,
                            [(zh.split("(")[0], dim, "text"), ("观看人数", "Viewers", "int"), ("进入人次", "Entries", "int"),
                             ("平均观看时长", "Avg watch", "sec"), ("点击人数", "Clickers", "int"),
                             ("成交人数", "Buyers", "int"), ("转化率", "Conversion", "pct"), ("订单", "Orders", "int"),
                             ("成交额", "GMV", "money"), ("UV 价值", "UV value", "money2")],
                            [[value, v.get("viewers"), v.get("entries"), v.get(AVG_WATCH), v.get("clickers"),
                              v.get("buyers"), v.get(CONVERSION), v.get("orders"), v.get("gmv"), v.get(UV_VALUE)]
                             for value, v in items]))
    age = summary.get("age_category") or {}
    categories = sorted({c for row in age.values() for c in row})
    tables.append(Table("age_category", "年龄段 × 品类成交额", "GMV by age band × category",
                        [("年龄段", "Age band", "text")] + [(c, c, "money") for c in categories],
                        [[band] + [age[band].get(c, 0.0) for c in categories] for band in sorted(age)]))
    products = sorted((summary.get("products") or {}).items(), key=lambda kv: (-(kv[1].get("gmv") or 0), kv[0]))
    gmv = t.get("gmv")
    tables.append(Table("products", "商品排行(按成交额)", "Products by GMV",
                        [("排名", "Rank", "int"), ("商品", "Product", "text"), ("标题", "Title", "text"),
                         ("品类", "Category", "text"), ("点击人数", "Clickers", "int"), ("加购人数", "Carters", "int"),
                         ("成交人数", "Buyers", "int"), ("订单", "Orders", "int"), ("成交额", "GMV", "money"),
                         ("占本场", "Share of show", "pct"), ("转化率", "Conversion", "pct"),
                         ("退款", "Refunds", "int"), ("退款率", "Refund rate", "pct")],
                        [[rank, pid, p.get("title"), p.get("category"), p.get("clickers"), p.get("carters"),
                          p.get("buyers"), p.get("orders"), p.get("gmv"), _div(p.get("gmv"), gmv),
                          p.get(CONVERSION), p.get("refunds"), p.get("refund_rate")]
                         for rank, (pid, p) in enumerate(products, 1)]))
    segments = []
    for s in summary.get("segments") or []:
        minutes = (s["end"] - s["start"]) / 60
        segments.append([s.get("product_id"), s["start"], s["end"], minutes, s.get("entries"), s.get("clickers"),
                         s.get("orders"), s.get("gmv"), _div(s.get("orders"), s.get("clickers")),
                         _div(s.get("gmv"), minutes), s.get("gmv_all")])
    segments.sort(key=lambda r: -(r[9] or 0))
    by_conversion = sorted(range(len(segments)), key=lambda i: -(segments[i][8] or 0))
    for rank, i in enumerate(by_conversion, 1):
        segments[i].append(rank)
    tables.append(Table("segments", "讲解时段(按每分钟成交额)", "Pinned stretches by GMV per minute",
                        [("商品", "Product", "text"), ("开始", "Start", "time"), ("结束", "End", "time"),
                         ("时长(分钟)", "Minutes", "num2"), ("进入人次", "Entries", "int"), ("点击人数", "Clickers", "int"),
                         ("订单", "Orders", "int"), ("成交额", "GMV", "money"), ("订单/点击人数", "Orders per clicker", "pct"),
                         ("每分钟成交额", "GMV per minute", "money"), ("全部商品成交额", "GMV, all products", "money"),
                         ("转化排名", "Rank by orders per clicker", "int")],
                        segments))
    promos = [[p.get("promo_id"), p.get("promo_type"), p.get("product_id"), p["start"], p["end"], p.get("clickers"),
               p.get("buyers"), p.get("orders"), p.get("gmv"), p.get(CONVERSION)]
              for p in summary.get("promos") or []]
    tables.append(Table("promos", "促销活动", "Promotions",
                        [("活动", "Promotion", "text"), ("类型", "Type", "text"), ("商品", "Product", "text"),
                         ("开始", "Start", "time"), ("结束", "End", "time"), ("点击人数", "Clickers", "int"),
                         ("成交人数", "Buyers", "int"), ("订单", "Orders", "int"), ("成交额", "GMV", "money"),
                         ("转化率", "Conversion", "pct")], promos))
    by_type: dict[str, list] = {}
    for p in summary.get("promos") or []:
        row = by_type.setdefault(p.get("promo_type") or "unknown", [p.get("promo_type") or "unknown", 0, 0, 0, 0, 0.0])
        row[1] += 1
        row[2] += p.get("clickers") or 0
        row[3] += p.get("buyers") or 0
        row[4] += p.get("orders") or 0
        row[5] += p.get("gmv") or 0
    tables.append(Table("promo_types", "促销按类型对比", "Promotions by type",
                        [("类型", "Type", "text"), ("场次", "Promotions", "int"), ("点击人数(合计)", "Clickers (sum)", "int"),
                         ("成交人数(合计)", "Buyers (sum)", "int"), ("订单", "Orders", "int"), ("成交额", "GMV", "money"),
                         ("转化率", "Conversion", "pct")],
                        [row + [_div(row[3], row[2])] for row in sorted(by_type.values(), key=lambda r: -r[5])]))
    spend, roi = summary.get("spend") or {}, summary.get("roi_by_channel") or {}
    source = by.get("source") or {}
    spend_rows = [[ch, amount, (source.get(ch) or {}).get("gmv"), roi.get(ch)] for ch, amount in sorted(spend.items())]
    spend_rows.append([bi_label("合计", "Total"), summary.get("spend_total"), gmv, summary.get("roi")])
    tables.append(Table("spend", "投放与 ROI", "Spend and ROI by channel",
                        [("渠道", "Channel", "text"), ("花费", "Spend", "money2"), ("归因成交额", "Attributed GMV", "money"),
                         ("ROI", "ROI", "num2")], spend_rows))
    tables.append(Table("hours", "分时段(本地时间)", "Hour of day (local time)",
                        [("小时", "Hour", "text"), ("进入人次", "Entries", "int"), ("点击人数", "Clickers", "int"),
                         ("成交人数", "Buyers", "int"), ("订单", "Orders", "int"), ("成交额", "GMV", "money")],
                        [[h, v.get("entries"), v.get("clickers"), v.get("buyers"), v.get("orders"), v.get("gmv")]
                         for h, v in sorted((summary.get("hours") or {}).items())]))
    tables.append(incidents_table(summary.get("incidents") if records is None else records))
    return tables


# ---- two shows compared -------------------------------------------------------------------------

MAX_COMPARED = 20        # values of a dimension (products, regions ...) compared at most: each show's first ones
# Tables compared value by value: the column of the value each row is about.
COMPARED = {"funnel": 0, "by_source": 0, "by_device": 0, "by_region": 0, "by_age_band": 0, "by_gender": 0,
            "by_follower": 0, "age_category": 0, "products": 1, "segments_by_product": 0, "promo_types": 0,
            "spend": 0, "hours": 0}
NUMERIC = {"int", "money", "money2", "pct", "num2", "sec", "min"}


def segments_by_product(summary: dict) -> Table:
    """The pinned stretches summed up per product, so two shows' stretches can be compared."""
    per: dict = {}
    for s in summary.get("segments") or []:
        row = per.setdefault(s.get("product_id"), [s.get("product_id"), 0, 0.0, 0, 0, 0.0])
        row[1] += 1
        row[2] += (s["end"] - s["start"]) / 60
        row[3] += s.get("clickers") or 0
        row[4] += s.get("orders") or 0
        row[5] += s.get("gmv") or 0
    rows = [r + [_div(r[5], r[2])] for r in per.values()]
    rows.sort(key=lambda r: (-(r[6] or 0), str(r[0])))
    return Table("segments_by_product", "讲解时段按商品", "Pinned stretches by product",
                 [("商品", "Product", "text"), ("讲解次数", "Stretches", "int"), ("时长(分钟)", "Minutes", "num2"),
                  ("点击人数(合计)", "Clickers (sum)", "int"), ("订单", "Orders", "int"), ("成交额", "GMV", "money"),
                  ("每分钟成交额", "GMV per minute", "money")], rows)


def _delta(a, b):
    if isinstance(a, bool) or isinstance(b, bool) or not isinstance(a, (int, float)) or not isinstance(b, (int, float)):
        return None, None
    return b - a, ((b - a) / a if a else None)


def compare_tables(first: dict, second: dict, records: tuple | None = None,
                   names: tuple[str, str] = ("A", "B")) -> list[Table]:
    """Two shows' summaries side by side with the differences (second − first): the key figures,
    then each table value by value (a dimension's values, products, hours ...), one row per value
    and figure. `records`: each show's recorded records for its incidents (default: the summaries')."""
    records = records or (None, None)
    a_name, b_name = names
    values = [("甲:" + a_name, a_name, "row"), ("乙:" + b_name, b_name, "row"), ("差值", "Difference", "row"),
              ("变化", "Change", "pct")]
    fa, fb = exact_kpis(first, records[0]), exact_kpis(second, records[1])
    kpis = Table("cmp_kpis", "对比:核心数据", "Comparison: key figures",
                 [("字段", "Field", "text"), ("指标", "Figure", "text")] + values)
    for key, zh, en, kind, _ in exact_rows():
        kpis.rows.append([key, bi_label(zh, en), fa.get(key), fb.get(key), *_delta(fa.get(key), fb.get(key))])
        kpis.row_kinds.append(kind)
    out = [kpis]
    tables_a = {t.name: t for t in summary_tables(first, records[0]) + [segments_by_product(first)]}
    tables_b = {t.name: t for t in summary_tables(second, records[1]) + [segments_by_product(second)]}
    for name, at in COMPARED.items():
        ta, tb = tables_a[name], tables_b[name]
        rows_a = {r[at]: r for r in ta.rows}
        rows_b = {r[at]: r for r in tb.rows}
        keys = list(dict.fromkeys([r[at] for r in ta.rows[:MAX_COMPARED]] + [r[at] for r in tb.rows[:MAX_COMPARED]]))
        columns = {c[:2]: c[2] for c in ta.columns} | {c[:2]: c[2] for c in tb.columns}
        numeric = [(i, c) for i, c in enumerate(ta.columns) if c[2] in NUMERIC and i != at and c[1] != "Rank"]
        # age × category: the categories of either show
        if name == "age_category":
            numeric = [(c, (c[0], c[1], kind)) for c, kind in columns.items() if kind in NUMERIC]
        zh_key, en_key = ta.columns[at][0], ta.columns[at][1]
        table = Table(f"cmp_{name}", f"对比:{ta.zh}", f"Comparison: {ta.en}",
                      [(zh_key, en_key, "text"), ("指标", "Figure", "text")] + values)
        for key in keys:
            for index, (zh, en, kind) in numeric:
                va, vb = (_pick(rows_a.get(key), ta, index, (zh, en)), _pick(rows_b.get(key), tb, index, (zh, en)))
                table.rows.append([key, bi_label(zh, en) if zh != en else zh, va, vb, *_delta(va, vb)])
                table.row_kinds.append(kind)
        out.append(table)
    return out


def _pick(row, table: Table, index, label):
    """A row's value of a column: by position, or (age × category, whose columns differ between
    shows) by the column's name."""
    if row is None:
        return None
    if isinstance(index, int):
        return row[index]
    names = [c[:2] for c in table.columns]
    return row[names.index(label)] if label in names else None


def bi_label(zh: str, en: str) -> str:
    """A label in both languages for a cell (exports carry both, the report splits them)."""
    return f"{zh} / {en}"


def _cells(table: Table, row: list) -> list:
    """A row for a file: times as local date and time text, the rest as they are."""
    return [datetime.fromtimestamp(v).strftime("%Y-%m-%d %H:%M:%S") if kind == "time" and isinstance(v, (int, float))
            else v for v, (_, _, kind) in zip(row, table.columns)]


def _write_rows(table: Table, out) -> None:
    writer = csv.writer(out)
    writer.writerow([f"{zh} / {en}" if zh != en else zh for zh, en, _ in table.columns])
    for row in table.rows:
        writer.writerow(["" if v is None else v for v in _cells(table, row)])


def write_csv(table: Table, path: Path) -> Path:
    with path.open("w", encoding="utf-8-sig", newline="") as out:
        _write_rows(table, out)
    return path


def write_xlsx(tables: list[Table], path) -> Path | None:
    """One workbook with a sheet per table; None when openpyxl is not installed."""
    try:
        from openpyxl import Workbook
    except ImportError:
        return None
    book = Workbook()
    book.remove(book.active)
    for table in tables:
        sheet = book.create_sheet(table.name[:31])
        sheet.append([f"{zh} / {en}" if zh != en else zh for zh, en, _ in table.columns])
        for row in table.rows:
            sheet.append(_cells(table, row))
    book.save(path)
    return path


def export(summary: dict, directory: Path, stem: str = "review", records: list[dict] | None = None,
           tables: list[Table] | None = None) -> list[Path]:
    """Write the summary's tables (or `tables`) into `directory`: `<stem>-<table>.csv` each, and
    `<stem>.xlsx`; the incidents from `records` (default: the summary's)."""
    directory.mkdir(parents=True, exist_ok=True)
    tables = summary_tables(summary, records) if tables is None else tables
    written = [write_csv(t, directory / f"{stem}-{t.name}.csv") for t in tables]
    book = write_xlsx(tables, directory / f"{stem}.xlsx")
    return written + ([book] if book else [])


def csv_bytes(table: Table) -> bytes:
    """One table as its CSV file's bytes (as `write_csv` writes it)."""
    out = io.StringIO(newline="")
    _write_rows(table, out)
    return out.getvalue().encode("utf-8-sig")


def zip_bytes(tables: list[Table], stem: str) -> bytes:
    """The tables' CSV files (`<stem>-<table>.csv`) in one zip archive."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for table in tables:
            archive.writestr(f"{stem}-{table.name}.csv", csv_bytes(table))
    return out.getvalue()


def xlsx_bytes(tables: list[Table]) -> bytes | None:
    """The tables as one XLSX workbook's bytes; None when openpyxl is not installed."""
    try:
        from openpyxl import Workbook  # noqa: F401
    except ImportError:
        return None
    out = io.BytesIO()
    write_xlsx(tables, out)
    return out.getvalue()
