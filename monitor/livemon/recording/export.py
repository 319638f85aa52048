"""The tables of a show summary (SPEC §10), for the review report and for export.

Each table is a list of rows of raw values (numbers unformatted, ratios as fractions), with column
names in both languages. The report formats them; `export` writes one CSV per table (UTF-8 with a
BOM, so Excel opens Chinese text) and, when openpyxl is installed, one XLSX with a sheet per table.
Every figure here is the summary's own exact count or ratio: nothing is averaged over windows.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from livemon import catalogue

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


def exact_kpis(summary: dict) -> dict:
    """The show's KPIs from its summary's totals (SPEC §10), plus shares of its viewers."""
    totals = summary.get("totals") or {}
    out = {key: totals.get(key) for key, *_ in TOTALS}
    viewers = totals.get("viewers")
    for key, part, *_ in SHARES:
        out[key] = totals.get(part) / viewers if viewers and totals.get(part) is not None else None
    for key, *_ in EXTRA:
        out[key] = summary.get(key)
    return out


def exact_rows() -> list[tuple[str, str, str, str, bool | None]]:
    """(key, zh, en, format, higher is better) of the exact KPI table."""
    return ([(key, zh, en, kind, key not in LOWER_IS_BETTER) for key, zh, en, kind in TOTALS]
            + [(key, zh, en, "pct", True) for key, _, zh, en in SHARES] + EXTRA)


def summary_tables(summary: dict) -> list[Table]:
    """The summary's tables, in the order the report shows them."""
    t = summary.get("totals") or {}
    tables = [Table("kpis", "核心数据(本场汇总)", "Key figures (show summary)",
                    [("字段", "Field", "text"), ("指标", "Figure", "text"), ("数值", "Value", "raw")],
                    [[key, bi_label(zh, en), t.get(key)] for key, zh, en, kind in TOTALS])]
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
    tables.append(Table("segments", "讲解时段(按每分钟成交额)", "Pinned stretches by GMV per minute",
                        [("商品", "Product", "text"), ("开始", "Start", "time"), ("结束", "End", "time"),
                         ("时长(分钟)", "Minutes", "num2"), ("进入人次", "Entries", "int"), ("点击人数", "Clickers", "int"),
                         ("订单", "Orders", "int"), ("成交额", "GMV", "money"), ("订单/点击人数", "Orders per clicker", "pct"),
                         ("每分钟成交额", "GMV per minute", "money"), ("全部商品成交额", "GMV, all products", "money")],
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
    return tables


def bi_label(zh: str, en: str) -> str:
    """A label in both languages for a cell (exports carry both, the report splits them)."""
    return f"{zh} / {en}"


def _cells(table: Table, row: list) -> list:
    """A row for a file: times as local date and time text, the rest as they are."""
    return [datetime.fromtimestamp(v).strftime("%Y-%m-%d %H:%M:%S") if kind == "time" and isinstance(v, (int, float))
            else v for v, (_, _, kind) in zip(row, table.columns)]


def write_csv(table: Table, path: Path) -> Path:
    with path.open("w", encoding="utf-8-sig", newline="") as out:
        writer = csv.writer(out)
        writer.writerow([f"{zh} / {en}" if zh != en else zh for zh, en, _ in table.columns])
        for row in table.rows:
            writer.writerow(["" if v is None else v for v in _cells(table, row)])
    return path


def write_xlsx(tables: list[Table], path: Path) -> Path | None:
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


def export(summary: dict, directory: Path, stem: str = "review") -> list[Path]:
    """Write the summary's tables into `directory`: `<stem>-<table>.csv` each, and `<stem>.xlsx`."""
    directory.mkdir(parents=True, exist_ok=True)
    tables = summary_tables(summary)
    written = [write_csv(t, directory / f"{stem}-{t.name}.csv") for t in tables]
    book = write_xlsx(tables, directory / f"{stem}.xlsx")
    return written + ([book] if book else [])
