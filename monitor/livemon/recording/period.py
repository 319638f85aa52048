"""The period report: `livemon report --from DATE --to DATE` over the recorded shows, as one
self-contained HTML file and one XLSX workbook (a sheet per table).

Its figures come from the shows' summaries (SPEC §10, the exact counts the workers publish once a
show is over) and its incidents from `livemon.recording.mttr` (the recorded incident records):
- GMV, paid orders, viewers, entries, clickers and buyers are sums over the shows (a viewer of two
  shows counts in each, as each show's own figures do);
- conversion is the share of clickers who paid, of all the shows' clickers (each show's
  conversion times its `clickers` gives its paying clickers); UV value is GMV per viewer,
  GPM GMV per thousand entries; the same per traffic source (`by.source`) and per product;
- best hours: the shows' `hours` (local hours of the engine's `--utc-offset`) summed, by GMV;
- incidents: time to detect, acknowledge and resolve per ISO week, against the 15-minute goal.

Shows are those started in the period's local dates (`mttr.Period`); a show without a summary
(still going, or recorded before summaries were published) is listed but not in the sums.
"""

from __future__ import annotations

import html
from datetime import datetime
from pathlib import Path

import click
import orjson

from livemon import catalogue
from livemon.recording.cli import data_dir_option
from livemon.recording.export import Table, bi_label, write_xlsx
from livemon.recording.mttr import Period, incident_report, lang, over_period, period_options
from livemon.recording.review import bi, fmt

CONVERSION = catalogue.target_metric("conversion")  # the clickers who paid, as a share of clickers
# GMV per viewer, as the catalogue names it (SPEC §5; the same name in §8 and §10)
UV_VALUE = next(m.name for m in catalogue.scoped("room") if m.en == "UV value")

TOP_PRODUCTS = 20
SUMS = ("viewers", "entries", "clickers", "buyers", "orders", "gmv", "refunds")
SOURCE_SUMS = ("viewers", "entries", "clickers", "buyers", "orders", "gmv")
HOUR_SUMS = ("entries", "clickers", "buyers", "orders", "gmv")
PRODUCT_SUMS = ("clickers", "carters", "buyers", "orders", "gmv", "refunds")


def _paying(figures: dict) -> int:
    """Clickers who paid: the conversion rate (of clickers, the share who paid) times the clickers."""
    return round((figures.get(CONVERSION) or 0) * (figures.get("clickers") or 0))


def _add(into: dict, figures: dict, keys=SUMS, paying: bool = True) -> dict:
    for key in keys:
        into[key] = into.get(key, 0) + (figures.get(key) or 0)
    if paying:
        into["paying_clickers"] = into.get("paying_clickers", 0) + _paying(figures)
    return into


def _ratios(row: dict, names=(CONVERSION, UV_VALUE, "gpm")) -> dict:
    """Conversion, UV value and GPM of summed figures (None where the divisor is 0)."""
    if CONVERSION in names:
        row[CONVERSION] = row["paying_clickers"] / row["clickers"] if row.get("clickers") else None
    if UV_VALUE in names:
        row[UV_VALUE] = row["gmv"] / row["viewers"] if row.get("viewers") else None
    if "gpm" in names:
        row["gpm"] = row["gmv"] * 1000 / row["entries"] if row.get("entries") else None
    return row


def _zero(keys=SUMS, paying: bool = True) -> dict:
    return {key: 0 for key in keys + (("paying_clickers",) if paying else ())}


def period_report(store, period: Period, top: int = TOP_PRODUCTS) -> dict:
    """The report's figures as plain JSON data."""
    shows = period.shows(store)
    incidents = incident_report(store, period)
    by_show = {row["show"]: row for row in incidents["shows"]}
    total, weeks, sources, hours, products = _zero(), {}, {}, {}, {}
    show_rows, summarized = [], 0
    for show in shows:
        summary = store.summary(show["key"])
        week = period.week(show["start"])
        weekly = weeks.setdefault(week, {**_zero(), "week": week, "shows": 0, "summarized": 0})
        weekly["shows"] += 1
        incident = by_show[show["key"]]
        row = {"show": show["key"], "room_id": show["room_id"], "title": show.get("title"), "start": show["start"],
               "local_start": period.local(show["start"]).strftime("%Y-%m-%d %H:%M"), "week": week,
               "summarized": summary is not None, "incidents": incident["incidents"], "mttr": incident["mttr"]}
        if summary is None:
            show_rows.append(row)
            continue
        summarized += 1
        weekly["summarized"] += 1
        totals = summary.get("totals") or {}
        row["title"] = row["title"] or summary.get("title")
        end = summary.get("end") or show["last_ts"]
        row["minutes"] = (end - summary["start"]) / 60
        show_rows.append(_ratios(_add({**row, **_zero()}, totals)))
        _add(total, totals)
        _add(weekly, totals)
        for source, figures in ((summary.get("by") or {}).get("source") or {}).items():
            source_row = sources.setdefault(source, {**_zero(SOURCE_SUMS), "source": source, "shows": 0})
            _add(source_row, figures, SOURCE_SUMS)["shows"] += 1
        for hour, figures in (summary.get("hours") or {}).items():
            _add(hours.setdefault(hour, {**_zero(HOUR_SUMS, False), "hour": hour}), figures, HOUR_SUMS, False)
        for product_id, figures in (summary.get("products") or {}).items():
            product = products.setdefault(product_id, {**_zero(PRODUCT_SUMS), "product_id": product_id, "shows": 0})
            _add(product, figures, PRODUCT_SUMS)["shows"] += 1
            product["title"] = figures.get("title") or product.get("title")
            product["category"] = figures.get("category") or product.get("category")
    gmv = total["gmv"]
    for hour in hours.values():
        hour["share"] = hour["gmv"] / gmv if gmv else None
    incident_weeks = {row["week"]: row for row in incidents["weeks"]}
    week_rows = []
    for week in sorted(weeks):
        row = _ratios(weeks[week])
        figures = incident_weeks[week]
        row.update(incidents=figures["incidents"], open=figures["open"], mttr=figures["mttr"],
                   resolved_within_goal=figures["resolved_within_goal"], goal_met=figures["goal_met"])
        week_rows.append(row)
    ranked = sorted(products.values(), key=lambda p: (-p["gmv"], p["product_id"]))
    return {
        "from": str(period.first), "to": str(period.last), "utc_offset": period.offset_text,
        "totals": {**_ratios(total), "shows": len(shows), "summarized": summarized,
                   "minutes": sum(r.get("minutes") or 0 for r in show_rows),
                   "incidents": incidents["total"]["incidents"], "mttr": incidents["total"]["mttr"],
                   "resolved_within_goal": incidents["total"]["resolved_within_goal"]},
        "weeks": week_rows,
        "shows": show_rows,
        "sources": sorted((_ratios(s, (CONVERSION, UV_VALUE)) for s in sources.values()),
                          key=lambda s: (-(s[UV_VALUE] or 0), s["source"])),
        "hours": sorted(hours.values(), key=lambda h: (-h["gmv"], h["hour"])),
        "products": [_ratios(p, (CONVERSION,)) for p in ranked[:top]],
        "products_total": len(products),
        "incidents": {"goal_seconds": incidents["goal_seconds"], "total": incidents["total"],
                      "weeks": incidents["weeks"]},
    }


# ---- tables ------------------------------------------------------------------------------------------

KPIS = [("shows", "场次", "Shows", "int"), ("summarized", "有汇总的场次", "Shows with a summary", "int"),
        ("minutes", "直播时长(分钟)", "Minutes live", "num2"), ("gmv", "成交额", "GMV", "money"),
        ("orders", "成交订单", "Paid orders", "int"), ("buyers", "成交人数(各场之和)", "Buyers (sum of shows)", "int"),
        ("viewers", "观看人数(各场之和)", "Viewers (sum of shows)", "int"), ("entries", "进入人次", "Entries", "int"),
        ("clickers", "点击商品人数(各场之和)", "Clickers (sum of shows)", "int"),
        (CONVERSION, "点击转化率", "Conversion (clickers who paid)", "pct"),
        (UV_VALUE, "UV 价值", "UV value", "money2"), ("gpm", "GPM(千次进入成交额)", "GPM", "money"),
        ("refunds", "退款订单", "Refunds", "int"), ("incidents", "故障", "Incidents", "int"),
        ("mttr", "平均恢复用时", "MTTR", "sec"),
        ("resolved_within_goal", "15 分钟内恢复", "Resolved within 15 min", "int")]


def tables(data: dict) -> list[Table]:
    """The report's tables, in the order it shows them (also the workbook's sheets)."""
    t = data["totals"]
    out = [Table("kpis", "核心数据", "Key figures", [("字段", "Field", "text"), ("指标", "Figure", "text"),
                                                   ("数值", "Value", "raw")],
                 [[key, bi_label(zh, en), t.get(key)] for key, zh, en, _ in KPIS])]
    out.append(Table("weeks", "按周(ISO)", "Per ISO week",
                     [("周", "Week", "text"), ("场次", "Shows", "int"), ("成交额", "GMV", "money"),
                      ("订单", "Orders", "int"), ("观看人数", "Viewers", "int"), ("转化率", "Conversion", "pct"),
                      ("UV 价值", "UV value", "money2"), ("故障", "Incidents", "int"), ("未恢复", "Open", "int"),
                      ("平均恢复用时", "MTTR", "sec"), ("15 分钟内恢复", "Within 15 min", "int")],
                     [[w["week"], w["shows"], w["gmv"], w["orders"], w["viewers"], w[CONVERSION], w[UV_VALUE],
                       w["incidents"], w["open"], w["mttr"], w["resolved_within_goal"]] for w in data["weeks"]]))
    out.append(Table("shows", "场次", "Shows",
                     [("开播(本地时间)", "Start (local)", "text"), ("场次", "Show", "text"), ("直播间", "Room", "text"),
                      ("标题", "Title", "text"), ("时长(分钟)", "Minutes", "num2"), ("成交额", "GMV", "money"),
                      ("订单", "Orders", "int"), ("观看人数", "Viewers", "int"), ("转化率", "Conversion", "pct"),
                      ("UV 价值", "UV value", "money2"), ("故障", "Incidents", "int"), ("平均恢复用时", "MTTR", "sec")],
                     [[s["local_start"], s["show"], s["room_id"], s.get("title"), s.get("minutes"), s.get("gmv"),
                       s.get("orders"), s.get("viewers"), s.get(CONVERSION), s.get(UV_VALUE), s["incidents"],
                       s["mttr"]] for s in data["shows"]]))
    out.append(Table("sources", "各流量来源 UV 价值", "UV value by source",
                     [("流量来源", "Source", "text"), ("UV 价值", "UV value", "money2"), ("观看人数", "Viewers", "int"),
                      ("成交额", "GMV", "money"), ("成交人数", "Buyers", "int"), ("点击人数", "Clickers", "int"),
                      ("转化率", "Conversion", "pct"), ("场次", "Shows", "int")],
                     [[s["source"], s[UV_VALUE], s["viewers"], s["gmv"], s["buyers"], s["clickers"],
                       s[CONVERSION], s["shows"]] for s in data["sources"]]))
    out.append(Table("hours", "最佳时段(本地时间,按成交额)", "Best hours (local time, by GMV)",
                     [("排名", "Rank", "int"), ("小时", "Hour", "text"), ("成交额", "GMV", "money"),
                      ("占成交额", "Share of GMV", "pct"), ("订单", "Orders", "int"), ("成交人数", "Buyers", "int"),
                      ("进入人次", "Entries", "int"), ("点击人数", "Clickers", "int")],
                     [[rank, f"{h['hour']}:00", h["gmv"], h["share"], h["orders"], h["buyers"], h["entries"],
                       h["clickers"]] for rank, h in enumerate(data["hours"], 1)]))
    out.append(Table("products", "商品排行(按成交额)", "Top products by GMV",
                     [("排名", "Rank", "int"), ("商品", "Product", "text"), ("标题", "Title", "text"),
                      ("品类", "Category", "text"), ("成交额", "GMV", "money"), ("订单", "Orders", "int"),
                      ("成交人数", "Buyers", "int"), ("点击人数", "Clickers", "int"), ("转化率", "Conversion", "pct"),
                      ("退款", "Refunds", "int"), ("场次", "Shows", "int")],
                     [[rank, p["product_id"], p.get("title"), p.get("category"), p["gmv"], p["orders"], p["buyers"],
                       p["clickers"], p[CONVERSION], p["refunds"], p["shows"]]
                      for rank, p in enumerate(data["products"], 1)]))
    incidents = data["incidents"]
    out.append(Table("incidents", "故障与恢复用时(按周,目标 15 分钟内恢复)",
                     "Incidents and MTTR per week (goal: resolved within 15 minutes)",
                     [("周", "Week", "text"), ("故障", "Incidents", "int"), ("已恢复", "Resolved", "int"),
                      ("已确认", "Acknowledged", "int"), ("平均发现用时", "MTTD", "sec"),
                      ("平均确认用时", "MTTA", "sec"), ("平均恢复用时", "MTTR", "sec"),
                      ("P90 恢复用时", "P90 time to resolve", "sec"), ("15 分钟内恢复", "Within 15 min", "int"),
                      ("达标", "Goal met", "text")],
                     [[w["week"], w["incidents"], w["resolved"], w["acknowledged"], w["mean_time_to_detect"],
                       w["mean_time_to_acknowledge"], w["mttr"], w["p90_time_to_resolve"], w["resolved_within_goal"],
                       (bi_label("是", "yes") if w["goal_met"] else bi_label("否", "no")) if w["incidents"] else None]
                      for w in incidents["weeks"] + [{**incidents["total"], "week": bi_label("合计", "Total")}]]))
    return out


# ---- HTML --------------------------------------------------------------------------------------------

STYLE = """
body { font: 14px/1.5 -apple-system, "PingFang SC", "Microsoft YaHei", "Noto Sans CJK SC", sans-serif; margin: 0;
       color: #1d2330; background: #f6f7f9; }
header { background: #1d2330; color: #fff; padding: 16px 24px; } header h1 { margin: 0; font-size: 20px; }
main { padding: 8px 24px 32px; max-width: 1400px; }
section { background: #fff; border-radius: 6px; padding: 12px 16px; margin: 16px 0; box-shadow: 0 1px 2px #0001; }
h2 { font-size: 16px; margin: 4px 0 8px; }
table { border-collapse: collapse; width: 100%; } th, td { padding: 4px 8px; border-bottom: 1px solid #e5e7eb; }
th { text-align: left; color: #555; font-weight: 600; } td { font-variant-numeric: tabular-nums; }
.note, .foot { color: #666; font-size: 12px; }
html[data-lang=zh] .l-en, html[data-lang=en] .l-zh { display: none; }
"""

NOTES = {"sources": ("UV 价值 = 成交额 / 观看人数;各场的观看人数相加。",
                     "UV value = GMV / viewers; the viewers of each show added up."),
         "hours": ("本地时间的小时,为各场汇总的 hours 之和。", "Local hours, summed from the shows' summaries."),
         "incidents": ("发现 = 首个异常样本到告警触发;确认 = 触发到确认;恢复 = 首个异常样本到恢复。",
                       "Detect: first bad sample to firing; acknowledge: firing to acknowledgement; "
                       "resolve: first bad sample to resolution.")}


def _cell(value, kind: str) -> str:
    if kind in ("text", "raw") or value is None:
        if isinstance(value, str) and " / " in value:
            return bi(*value.split(" / ", 1))
        return html.escape("–" if value is None else str(value))
    return bi(fmt(value, kind, "zh"), fmt(value, kind, "en"))


def table_html(table: Table) -> str:
    # The KPI table's values each have their own format; its field keys are for the workbook only.
    kinds = [kind for *_, kind in KPIS] if table.name == "kpis" else None
    columns = table.columns[1:] if kinds else table.columns
    head = "".join(f"<th>{bi(zh, en)}</th>" for zh, en, _ in columns)
    body = []
    for number, row in enumerate(table.rows):
        if kinds:
            cells = [_cell(row[1], "text"), _cell(row[2], kinds[number])]
        else:
            cells = [_cell(value, kind) for value, (_, _, kind) in zip(row, table.columns)]
        body.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    note = f'<p class="note">{bi(*NOTES[table.name])}</p>' if table.name in NOTES else ""
    return (f'<section data-section="{html.escape(table.name)}"><h2>{bi(table.zh, table.en)}</h2>{note}'
            f'<table data-table="{html.escape(table.name)}"><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table></section>')


def render_html(data: dict, language: str | None = None) -> str:
    language = language or lang()
    title = bi(f"直播运营周期报告 {data['from']} 至 {data['to']}", f"Period report {data['from']} to {data['to']}")
    plain = (f"直播运营周期报告 {data['from']} 至 {data['to']}" if language == "zh"
             else f"Period report {data['from']} to {data['to']}")
    t = data["totals"]
    missing = t["shows"] - t["summarized"]
    note = (f'<p class="note">{bi(f"{missing} 场尚无汇总(直播中或汇总未到),未计入合计。", f"Shows without a summary yet (still live, or not received), not in the sums: {missing}.")}</p>'
            if missing else "")
    zone = bi(f"日期与小时为 UTC{data['utc_offset']} 本地时间;周为 ISO 周。",
              f"Dates and hours in local time, UTC{data['utc_offset']}; weeks are ISO weeks.")
    return f"""<!doctype html>
<html lang="{'zh-CN' if language == 'zh' else 'en'}" data-lang="{language}"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(plain)}</title>
<style>{STYLE}</style>
</head><body>
<header><h1>{title}</h1></header>
<main>
<p class="note">{zone}</p>{note}
{''.join(table_html(table) for table in tables(data))}
<p class="foot">{bi("由 livemon report 生成于", "Written by livemon report at")} {html.escape(datetime.now().strftime('%Y-%m-%d %H:%M'))}.</p>
</main>
</body></html>
"""


# ---- command -----------------------------------------------------------------------------------------

@click.command()
@period_options
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="HTML report (default: report-FROM-TO.html in the current directory).")
@click.option("--xlsx", "xlsx_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="XLSX workbook, a sheet per table (default: the HTML report's name with .xlsx).")
@click.option("--top", type=click.IntRange(1, 500), default=TOP_PRODUCTS, show_default=True,
              help="Products listed in the ranking.")
@click.option("--json", "as_json", is_flag=True, help="Also print the report's figures as one JSON object.")
@data_dir_option
def report(first, last, utc_offset, out, xlsx_path, top, as_json, data_dir):
    """Write the period report of the recorded shows that started from --from to --to (local dates,
    both included): GMV, conversion, UV value by source, best hours, top products, incidents and
    MTTR per ISO week, as one HTML file and one XLSX workbook."""
    data = over_period(first, last, utc_offset, data_dir, period_report, top)
    out = out or Path(f"report-{period.first}-{period.last}.html")
    xlsx_path = xlsx_path or out.with_suffix(".xlsx")
    page = render_html(data)
    out.write_text(page, encoding="utf-8")
    book = write_xlsx(tables(data), xlsx_path)
    if as_json:
        click.echo(orjson.dumps(data).decode())
        return
    click.echo(f"Wrote {out} ({len(page) // 1024} KiB)"
               + (f" and {book}" if book else " (no XLSX: openpyxl is not installed)") + "; open it in a browser.")
