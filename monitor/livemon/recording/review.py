"""The post-show review: a self-contained HTML report of one show, or of two side by side.

Tables (KPIs, worst minutes, alerts and failovers) are rendered here as escaped HTML, so the report
reads even without scripts; the charts are drawn by the vendored uPlot from the data inlined as JSON.
Everything is inside the one file: it opens offline, from a mail attachment or a shared folder.
"""

from __future__ import annotations

import base64
import hashlib
import html
import math
import os
import statistics
from datetime import datetime
from pathlib import Path

import orjson

from livemon import catalogue
from livemon.recording.export import Table, compare_tables, exact_kpis, exact_rows, summary_tables

STATIC = Path(__file__).resolve().parent.parent / "web" / "static"
MAX_POINTS = 3600          # chart points per show; longer shows are thinned evenly
WORST_MINUTES = 6


LANGS = ("zh", "en")        # Chinese first; the report carries both and switches in place


class ReviewError(Exception):
    pass


# The report's words besides metric names (those come from the catalogue), per language.
MESSAGES = {
    "zh": {"review": "复盘", "comparison": "对比", "vs": "对比", "room": "直播间", "key_figures": "核心数据",
           "timeline": "时间线", "worst": "最差的几分钟", "events": "告警与 CDN 切换", "difference": "差值",
           "duration": "时长", "peak": "峰值", "average": "平均", "entries": "进入人次", "alerts_fired": "触发告警",
           "failovers": "CDN 切换", "minute": "分钟", "why": "原因", "online_change": "在线(变化)", "stall": "卡顿",
           "errors": "错误", "gmv_minute": "该分钟成交额", "what": "发生了什么", "time": "时间", "event": "事件",
           "detail": "详情", "nothing": "无告警或切换", "min": "第 {} 分钟",
           "calm": "没有异常的分钟:卡顿率始终低于 1%,每分钟观众流失不超过 2%。",
           "no_events": "本场没有触发告警,也没有 CDN 切换。",
           "legend": "图中标记:<span class=\"m-fire\">▲ 红线</span> 告警触发,<span class=\"m-res\">▼ 绿色虚线</span> 告警恢复,"
                     "<span class=\"m-fo\">⇄ 蓝线</span> CDN 切换。",
           "legend_compare": "两场按开播后的分钟数对齐:实线为第一场,虚线为第二场。",
           "noscript": "图表需要 JavaScript;上下的表格不需要。",
           "foot": "比率为本场每秒时刻的平均值;成交额为本场累计;GPM 为每千次进入的成交额。由 livemon review 生成于",
           "foot_exact": "核心数据、漏斗与各表来自本场汇总(精确计数);时间线与最差的几分钟来自各时刻的指标。由 livemon review 生成于",
           "switch": "English", "stall_why": "卡顿 {:.1f}%", "loss_why": "流失 {:.0f}% 观众", "unit_min": " 分钟",
           "unit_s": " 秒", "exact_source": "来源:本场汇总(SPEC §10),按人、按订单精确计数;比率为本场总数之比,不是各时刻比率的平均。",
           "window_source": "来源:各时刻窗口值的平均(峰值为最大值)。", "other_figures": "其他时刻指标",
           "exact_title": "本场复盘明细", "funnel_title": "转化漏斗", "compare_title": "两场逐表对比",
           "compare_source": "甲为第一场、乙为第二场;差值为乙减甲,比率之差以百分点(pt)计;每个维度比较各场排名前 20 的取值。",
           "export_xlsx": "导出 XLSX", "export_zip": "导出 CSV(zip)",
           "no_summary": "本场尚无汇总(SPEC §10);以下比率为各时刻窗口值的平均,仅供参考。"},
    "en": {"review": "Review", "comparison": "Comparison", "vs": "vs", "room": "room", "key_figures": "Key figures",
           "timeline": "Timeline", "worst": "Worst minutes", "events": "Alerts and failovers", "difference": "Difference",
           "duration": "Duration", "peak": "Peak", "average": "Average", "entries": "Entries (views)",
           "alerts_fired": "Alerts fired", "failovers": "CDN failovers", "minute": "Minute", "why": "Why",
           "online_change": "Online (change)", "stall": "Stall", "errors": "Errors", "gmv_minute": "GMV in minute",
           "what": "What happened", "time": "Time", "event": "Event", "detail": "Detail",
           "nothing": "no alert or failover", "min": "min {}",
           "calm": "No minute stood out: stall ratio stayed under 1% and the audience never fell by more than 2% in a minute.",
           "no_events": "No alert fired and no failover happened during this show.",
           "legend": "Chart marks: <span class=\"m-fire\">▲ red line</span> alert fired, "
                     "<span class=\"m-res\">▼ green dashes</span> alert resolved, <span class=\"m-fo\">⇄ blue line</span> CDN failover.",
           "legend_compare": "Both shows on one axis of minutes since their start: solid line first show, dashed line second.",
           "noscript": "The charts need JavaScript; the tables above and below do not.",
           "foot": "Ratios are averaged over the show's one-second instants; GMV is the show's running total; "
                   "GPM is GMV per thousand entries. Written by livemon review at",
           "foot_exact": "Key figures, the funnel and the tables come from the show summary (exact counts); the timeline "
                         "and the worst minutes from the show's instants. Written by livemon review at",
           "switch": "中文", "stall_why": "stall {:.1f}%", "loss_why": "lost {:.0f}% of viewers", "unit_min": " min",
           "unit_s": " s", "exact_source": "Source: the show summary (SPEC §10), exact counts of people and orders; ratios are "
                                           "ratios of the show's totals, not averages of per-instant ratios.",
           "window_source": "Source: the show's instants, averaged (peaks are maxima).", "other_figures": "Other figures over the show's instants",
           "exact_title": "Show breakdown", "funnel_title": "Funnel", "compare_title": "The two shows, table by table",
           "compare_source": "The difference is the second show minus the first; differences of ratios are in percentage "
                             "points (pt); each dimension compares each show's first 20 values.",
           "export_xlsx": "Export XLSX", "export_zip": "Export CSVs (zip)",
           "no_summary": "No show summary (SPEC §10) yet: the ratios below are averages of per-instant window values, for orientation only."},
}


def default_lang() -> str:
    """The report's language before the reader switches: $LIVEMON_LANG (zh or en), else Chinese."""
    lang = os.environ.get("LIVEMON_LANG", "zh").lower()[:2]
    return lang if lang in LANGS else "zh"


def bi(zh: str, en: str, markup: bool = False) -> str:
    """Both languages of a text; the stylesheet shows the reader's. Escaped unless `markup`."""
    if not markup:
        zh, en = html.escape(zh), html.escape(en)
    return zh if zh == en else f'<span class="l-zh">{zh}</span><span class="l-en">{en}</span>'


def msg(key: str, markup: bool = False) -> str:
    return bi(MESSAGES["zh"][key], MESSAGES["en"][key], markup)


# ---- numbers -------------------------------------------------------------------------------------

def _mean(values):
    values = [v for v in values if v is not None]
    return statistics.fmean(values) if values else None


def kpis(timeline: list[dict], records: list[dict], window: float = 60.0) -> dict:
    """The show's KPIs from its final snapshots, each metric summed up as the catalogue says
    (`Metric.review`): `peak` gives `peak_<name>` and `avg_<name>`, `mean` the mean over the show's
    instants, `weighted` the mean weighted by another metric, `last` the largest (running totals).
    Entries are counted over non-overlapping windows back from the last instant, and GPM from the
    show's GMV and those entries."""
    m = [s["metrics"] for s in timeline]
    out: dict = {"duration_minutes": (timeline[-1]["ts"] - timeline[0]["ts"]) / 60 if timeline else 0}
    for metric in catalogue.ROOM:
        values = [x.get(metric.name) for x in m]
        present = [v for v in values if v is not None]
        if metric.review == "peak":
            out[f"peak_{metric.name}"] = max(present) if present else None
            out[f"avg_{metric.name}"] = _mean(present)
        elif metric.review == "mean":
            out[metric.name] = _mean(present)
        elif metric.review == "last":
            out[metric.name] = max(present) if present else None
        elif metric.review == "weighted":
            pairs = [(v, x.get(metric.review_weight) or 0) for v, x in zip(values, m) if v is not None]
            weight = sum(w for _, w in pairs)
            out[metric.name] = sum(v * w for v, w in pairs) / weight if weight else _mean(v for v, _ in pairs)
    entries, last_taken = 0, math.inf
    for snap in reversed(timeline):
        if snap["ts"] <= last_taken - window + 1e-6:
            entries += snap["metrics"].get("entries") or 0
            last_taken = snap["ts"]
    out["entries"] = entries
    gmv = out.get("gmv_total")
    out["gpm"] = gmv * 1000 / entries if gmv is not None and entries else None
    out["alerts_fired"] = sum(1 for r in records if r.get("kind", "alert") == "alert" and r.get("state") == "firing")
    out["failovers"] = sum(1 for r in records if r.get("kind") == "failover" and r.get("decision", "taken") == "taken")
    return out


# With a summary, the instants' averages of what it counts exactly are left out: the audience,
# interaction and sales figures, and those named like one of its totals (stall ratio, error rate).
EXACT_DASHBOARDS = {"audience", "interaction", "sales"}


def _covered(metric) -> bool:
    return metric.dashboard in EXACT_DASHBOARDS or metric.en in {en for _, _, en, *_ in exact_rows()}


def _exact_rows() -> list[tuple[str, str, str, bool | None]]:
    return [(key, bi(zh, en), kind, better) for key, zh, en, kind, better in exact_rows()]


def worst_minutes(timeline: list[dict], records: list[dict], limit: int = WORST_MINUTES) -> list[dict]:
    """The minutes with the worst stream health or the largest audience loss, with the alerts and
    failovers of that minute and the next (alerts fire after their `for` duration)."""
    if not timeline:
        return []
    start = timeline[0]["ts"]
    minutes: dict[int, list[dict]] = {}
    for snap in timeline:
        minutes.setdefault(int((snap["ts"] - start) // 60), []).append(snap)
    rows = []
    for index, snaps in sorted(minutes.items()):
        first, last = snaps[0]["metrics"], snaps[-1]["metrics"]
        stall = _mean(s["metrics"].get("stall_ratio") for s in snaps)
        errors = _mean(s["metrics"].get("error_rate") for s in snaps)
        online_change = (last.get("online") or 0) - (first.get("online") or 0)
        base = max(first.get("online") or 0, 1)
        t0 = snaps[0]["ts"]
        events = [r for r in records if t0 <= float(r.get("ts") or 0) < t0 + 120]
        rows.append({"minute": index, "ts": t0, "stall_ratio": stall, "error_rate": errors,
                     "online": last.get("online"), "online_change": online_change,
                     "loss_share": max(0.0, -online_change / base),
                     "gmv": (last.get("gmv_total") or 0) - (first.get("gmv_total") or 0),
                     "events": [describe(r) for r in events][:6],
                     "events_zh": [describe(r, "zh") for r in events][:6]})
    by_stall = sorted((r for r in rows if (r["stall_ratio"] or 0) > 0.01), key=lambda r: -(r["stall_ratio"] or 0))
    by_loss = sorted((r for r in rows if r["loss_share"] > 0.02), key=lambda r: -r["loss_share"])
    chosen: dict[int, dict] = {}
    for a, b in zip(by_stall + [None] * limit, by_loss + [None] * limit):
        for row in (a, b):
            if row is not None and len(chosen) < limit:
                why = {lang: [] for lang in LANGS}
                for lang in LANGS:
                    if (row["stall_ratio"] or 0) > 0.01:
                        why[lang].append(MESSAGES[lang]["stall_why"].format(row["stall_ratio"] * 100))
                    if row["loss_share"] > 0.02:
                        why[lang].append(MESSAGES[lang]["loss_why"].format(row["loss_share"] * 100))
                chosen[row["minute"]] = {**row, "why": ", ".join(why["en"]), "why_zh": "，".join(why["zh"])}
        if len(chosen) >= limit:
            break
    return sorted(chosen.values(), key=lambda r: r["minute"])


DESCRIBE_ZH = {"failover": "CDN 切换", "operator": "操作", "incident": "故障", "alert": "告警", "on": "于",
               "value": "值", "by": "操作人"}


def describe(rec: dict, lang: str = "en") -> str:
    text = _describe(rec)
    if lang == "zh":   # the record's own words (rule, state, CDN) stay; the frame is translated
        kind = rec.get("kind") or "alert"
        text = text.replace(kind, DESCRIBE_ZH.get(kind, kind), 1).replace(" on ", " 于 ").replace("(value ", "(值 ")
        text = text.replace(" by ", " 操作人 ")
    return text


def _describe(rec: dict) -> str:
    kind = rec.get("kind") or "alert"
    if kind == "failover":
        return (f"failover {rec.get('decision', 'taken')} {rec.get('from_cdn') or '?'} → {rec.get('to_cdn') or '?'}"
                + (f" ({rec['reason']})" if rec.get("reason") else ""))
    if kind == "operator":
        return f"operator {rec.get('action')} {rec.get('rule') or ''} {rec.get('cdn') or ''} by {rec.get('by') or '?'}".strip()
    if kind == "incident":
        return f"incident {rec.get('id', '')} {rec.get('state') or rec.get('status') or ''}".strip()
    text = f"alert {rec.get('rule')} {rec.get('state')}" + (f" on {rec['cdn']}" if rec.get("cdn") else "")
    if rec.get("value") is not None:
        text += f" (value {rec['value']:.3g})" if isinstance(rec["value"], (int, float)) else f" ({rec['value']})"
    return text


def markers(records: list[dict]) -> list[dict]:
    out = []
    for rec in records:
        kind = rec.get("kind") or "alert"
        ts = float(rec.get("ts") or 0)
        if kind == "alert" and rec.get("state") in ("firing", "resolved"):
            firing = rec["state"] == "firing"
            out.append({"ts": ts, "kind": "alert", "color": "#ff6b6b" if firing else "#39d98a", "dash": not firing,
                        "label": f"{'▲' if firing else '▼'} {rec.get('rule')}{' ' + rec['cdn'] if rec.get('cdn') else ''}"})
        elif kind == "failover" and rec.get("decision", "taken") == "taken":
            out.append({"ts": ts, "kind": "failover", "color": "#4aa3ff", "dash": False,
                        "label": f"⇄ {rec.get('from_cdn') or '?'}→{rec.get('to_cdn') or '?'}"})
    return out


def show_data(show: dict, timeline: list[dict], records: list[dict], summary: dict | None = None) -> dict:
    step = max(1, math.ceil(len(timeline) / MAX_POINTS))
    thin = timeline[::step]
    if timeline and thin[-1] is not timeline[-1]:
        thin.append(timeline[-1])
    cdns = sorted({name for s in timeline for name in (s.get("cdn") or {})})
    start = timeline[0]["ts"] if timeline else show["start"]
    return {
        "key": show["key"], "room_id": show["room_id"], "title": show.get("title"), "start": start,
        "end": timeline[-1]["ts"] if timeline else show["last_ts"],
        "ts": [s["ts"] for s in thin],
        "minutes": [round((s["ts"] - start) / 60, 3) for s in thin],
        "series": {name: [s["metrics"].get(name) for s in thin] for name in catalogue.REVIEW_NAMES},
        "cdn": {c: {f: [(s.get("cdn") or {}).get(c, {}).get(f) for s in thin] for f in catalogue.CDN_NAMES}
                for c in cdns},
        "markers": markers(records),
        "kpis": kpis(timeline, records),
        "exact": exact_kpis(summary, records) if summary else None,
    }


# ---- HTML ----------------------------------------------------------------------------------------

def _kpi_rows() -> list[tuple[str, str, str, bool | None]]:
    """(key, label (both languages, escaped), format, higher is better) of the KPI table, in the
    catalogue's order."""
    zh = MESSAGES["zh"]
    rows: list[tuple[str, str, str, bool | None]] = [("duration_minutes", msg("duration"), "min", None)]
    for metric in catalogue.ROOM:
        if metric.review == "peak":
            rows += [(f"peak_{metric.name}", bi(zh["peak"] + metric.zh, f"Peak {metric.en.lower()}"), metric.format, True),
                     (f"avg_{metric.name}", bi(zh["average"] + metric.zh, f"Average {metric.en.lower()}"), metric.format, True)]
        elif metric.review:
            rows.append((metric.name, bi(metric.zh, metric.en), metric.format, metric.higher_is_better))
    return rows + [("entries", msg("entries"), "int", True), ("alerts_fired", msg("alerts_fired"), "int", False),
                   ("failovers", msg("failovers"), "int", False)]


# Amounts: ¥12.8万 / ¥1.2亿 in Chinese, ¥128K / ¥1.2M / ¥3.4B in English; exact below 10,000.
MONEY_UNITS = {"zh": ((1e8, "亿", 1e8), (1e4, "万", 1e4)), "en": ((1e9, "B", 1e9), (1e6, "M", 1e6), (1e4, "K", 1e3))}


def money(value: float, lang: str = "zh") -> str:
    sign, a = ("-" if value < 0 else ""), abs(value)
    for start, unit, divisor in MONEY_UNITS[lang]:
        if a >= start:
            return f"{sign}¥{round(a / divisor, 1):,.1f}".removesuffix(".0") + unit
    return f"{sign}¥{a:,.0f}"


def fmt(value, kind: str, lang: str = "en") -> str:
    if value is None:
        return "–"
    if kind == "pct":
        return f"{value * 100:.2f}%" if abs(value) < 0.1 else f"{value * 100:.1f}%"
    if kind == "money":
        return money(value, lang)
    if kind == "money2":
        return f"¥{value:,.2f}" if abs(value) < 1e4 else money(value, lang)
    if kind == "num2":
        return f"{value:,.2f}"
    if kind == "text":
        return str(value)
    if kind == "time":
        return _when(value)
    if kind in ("sec", "s"):
        return f"{value:,.0f}{MESSAGES[lang]['unit_s']}"
    if kind == "ms":
        return f"{value:,.0f} ms"
    if kind == "min":
        return f"{value:,.1f}{MESSAGES[lang]['unit_min']}"
    return f"{value:,.0f}"


def bifmt(value, kind: str) -> str:
    """A formatted value in both languages (they differ for amounts and units)."""
    return bi(fmt(value, kind, "zh"), fmt(value, kind, "en"))


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


def _time(ts: float, part: str = "dt") -> str:
    """A time in the zone of whoever writes the report; the report's script shows it in the
    reader's own zone (`part`: dt date and time, hms, hm)."""
    text = {"dt": _when(ts), "hms": _when(ts)[11:19], "hm": _when(ts)[11:16]}[part]
    return f'<time data-ts="{ts:.3f}" data-part="{part}">{html.escape(text)}</time>'


def _kpi_table(datas: list[dict], exact: bool = False) -> str:
    """The KPI table: the summaries' exact figures (`exact`), else the instants' figures (without
    those a summary counts exactly when every show has one)."""
    e = html.escape
    source = "exact" if exact else "kpis"
    if exact:
        kpi_rows = _exact_rows()
    else:
        covered = all(d.get("exact") for d in datas)
        names = {m.name for m in catalogue.ROOM if _covered(m)} if covered else set()
        kpi_rows = [r for r in _kpi_rows() if not (covered and (r[0] == "entries" or r[0] in names
                                                               or r[0].split("_", 1)[-1] in names))]
    head = "".join(f"<th>{e(d['key'])}</th>" for d in datas)
    if len(datas) == 2:
        head += f"<th>{msg('difference')}</th>"
    rows = []
    for key, label, kind, better in kpi_rows:
        values = [d[source].get(key) for d in datas]
        cells = "".join(f"<td>{bifmt(v, kind)}</td>" for v in values)
        if len(datas) == 2:
            a, b = values
            if a is None or b is None:
                cells += "<td>–</td>"
            else:
                delta = b - a
                rel = f" ({delta / a * 100:+.0f}%)" if a else ""
                sign = "+" if delta >= 0 else "-"
                shown = [(f"{delta * 100:+.2f} pt" if kind == "pct" else sign + fmt(abs(delta), kind, lang)) + rel
                         for lang in LANGS]
                tone = "same" if abs(delta) < 1e-9 or better is None else (
                    "better" if (delta > 0) == better else "worse")
                cells += f'<td class="{tone}">{bi(*shown)}</td>'
        rows.append(f"<tr><th>{label}</th>{cells}</tr>")
    cls = "kpis exact" if exact else "kpis"
    return f'<table class="{cls}"><thead><tr><th></th>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


def _table_html(table: Table) -> str:
    """One of the summary's tables (export.summary_tables), formatted in both languages."""
    if not table.rows:
        return ""
    head = "".join(f"<th>{bi(zh, en)}</th>" for zh, en, _ in table.columns)
    body = []
    for number, row in enumerate(table.rows):
        cells = []
        for value, (_, en, kind) in zip(row, table.columns):
            if kind == "row":
                kind = table.row_kinds[number]
                if en == "Difference":
                    cells.append(f"<td>{_signed(value, kind)}</td>")
                    continue
            if kind == "pct" and en == "Change":
                cells.append(f"<td>{'–' if value is None else html.escape(_change(value))}</td>")
            elif kind == "time" and value is not None:
                cells.append(f"<td>{_time(value, 'hms')}</td>")
            elif kind == "text" and isinstance(value, str) and " / " in value:
                cells.append(f"<td>{bi(*value.split(' / ', 1))}</td>")
            elif kind in ("text", "raw"):
                cells.append(f"<td>{html.escape('–' if value is None else str(value))}</td>")
            else:
                cells.append(f"<td>{bifmt(value, kind)}</td>")
        body.append(f"<tr>{''.join(cells)}</tr>")
    return (f'<h3>{bi(table.zh, table.en)}</h3><table class="summary" data-table="{html.escape(table.name)}">'
            f'<thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>')


def _change(value: float) -> str:
    """A relative change: whole percents, one decimal under 10 %."""
    return f"{value * 100:+.1f}%" if abs(value) < 0.1 else f"{value * 100:+.0f}%"


def _signed(value, kind: str) -> str:
    """A difference with its sign, in both languages; ratios in percentage points."""
    if value is None:
        return "–"
    if kind == "pct":
        return html.escape(f"{value * 100:+.2f} pt")
    sign = "+" if value >= 0 else "-"
    return bi(sign + fmt(abs(value), kind, "zh"), sign + fmt(abs(value), kind, "en"))


def _exact_section(d: dict, summary: dict, prefix: str, records: list[dict] | None = None) -> str:
    """The summary's funnel and tables (the key figures are in the KPI table)."""
    tables = [t for t in summary_tables(summary, records) if t.name != "kpis"]
    return (f'<section class="exact"><h2>{prefix}{msg("exact_title")}</h2><p class="source">{msg("exact_source")}</p>'
            + "".join(_table_html(t) for t in tables) + "</section>")


def _compare_section(datas: list[dict], summaries: list[dict], records: list[list[dict]]) -> str:
    """Every table of the two summaries compared value by value (the key figures are in the KPI table)."""
    tables = compare_tables(summaries[0], summaries[1], tuple(records), (datas[0]["key"], datas[1]["key"]))[1:]
    return (f'<section class="exact compare"><h2>{msg("compare_title")}</h2><p class="source">{msg("compare_source")}</p>'
            + "".join(_table_html(t) for t in tables) + "</section>")


def _worst_table(rows: list[dict]) -> str:
    e = html.escape
    if not rows:
        return f"<p>{msg('calm')}</p>"
    minute = lambda n: bi(MESSAGES["zh"]["min"].format(n), MESSAGES["en"]["min"].format(n))  # noqa: E731
    body = "".join(
        f"<tr><td>{_time(r['ts'], 'hm')} ({minute(r['minute'])})</td><td>{bi(r['why_zh'], r['why'])}</td>"
        f"<td>{e(fmt(r['online'], 'int'))} ({r['online_change']:+,.0f})</td><td>{e(fmt(r['stall_ratio'], 'pct'))}</td>"
        f"<td>{e(fmt(r['error_rate'], 'pct'))}</td><td>{bifmt(r['gmv'], 'money')}</td>"
        f"<td>{'<br>'.join(bi(z, x) for z, x in zip(r['events_zh'], r['events'])) or msg('nothing')}</td></tr>"
        for r in rows)
    head = "".join(f"<th>{msg(k)}</th>" for k in ("minute", "why", "online_change", "stall", "errors", "gmv_minute", "what"))
    return f"<table class=\"worst\"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _events_table(records: list[dict]) -> str:
    e = html.escape
    shown = [r for r in records if (r.get("kind") or "alert") in ("alert", "failover", "operator")
             and not (r.get("kind", "alert") == "alert" and r.get("state") == "pending")]
    if not shown:
        return f"<p>{msg('no_events')}</p>"
    body = "".join(f"<tr><td>{_time(float(r.get('ts') or 0), 'hms')}</td><td>{bi(describe(r, 'zh'), describe(r))}</td>"
                   f"<td>{e(str(r.get('summary') or r.get('reason') or ''))}</td></tr>" for r in shown[:300])
    head = "".join(f"<th>{msg(k)}</th>" for k in ("time", "event", "detail"))
    return f"<table class=\"events\"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _script(text: str) -> str:
    # Inline JSON must not be able to close the script element.
    return text.replace("</", "<\\/")


def _sha(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


FMT = "{fmt}"     # in a served report's export address: xlsx or zip

# Only the reader's language shows; the switch sets <html data-lang> (review.js).
LANG_STYLE = "html[data-lang=zh] .l-en, html[data-lang=en] .l-zh { display: none; }\n"


def render_html(datas: list[dict], records_by_show: list[list[dict]], worst_by_show: list[list[dict]],
                lang: str | None = None, summaries: list[dict | None] | None = None, note: tuple[str, str] | None = None,
                export_url: str | None = None) -> tuple[str, str]:
    """The report, in both languages with `lang` (default: default_lang()) shown first, and the
    Content-Security-Policy that allows exactly its inline script and style. `note` (zh, en) is a
    line under the title (which show of a file this is); `export_url`, when the report is served,
    is where its tables download, with `{fmt}` for xlsx or zip."""
    e = html.escape
    lang = lang if lang in LANGS else default_lang()
    if len(datas) == 1:
        title = bi(f"复盘:{datas[0]['key']}", f"Review: {datas[0]['key']}")
        plain = f"{MESSAGES[lang]['review']}: {datas[0]['key']}"
    else:
        title = bi(f"对比:{datas[0]['key']} 与 {datas[1]['key']}", f"Comparison: {datas[0]['key']} vs {datas[1]['key']}")
        plain = f"{MESSAGES[lang]['comparison']}: {datas[0]['key']} {MESSAGES[lang]['vs']} {datas[1]['key']}"
    style = (STATIC / "vendor" / "uPlot.min.css").read_text() + (STATIC / "review.css").read_text() + LANG_STYLE
    code = "\n".join((STATIC / name).read_text() for name in ("vendor/uPlot.iife.min.js", "common.js", "charts.js", "review.js"))
    payload = orjson.dumps({"shows": datas, "catalogue": catalogue.as_json()}).decode().replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    heads = []
    for d in datas:
        heads.append(f"<div class=\"show-head\"><h2>{e(d['key'])}</h2><p>{msg('room')} <strong>{e(d['room_id'])}</strong>"
                     + (f" · {e(d['title'])}" if d.get("title") else "")
                     + f" · {_time(d['start'])} → {_time(d['end'], 'hms')}</p></div>")
    summaries = summaries or [None] * len(datas)
    exact = all(d.get("exact") for d in datas)
    if exact:
        figures = (f"<p class=\"source\">{msg('exact_source')}</p>{_kpi_table(datas, exact=True)}"
                   f"<h3>{msg('other_figures')}</h3><p class=\"source\">{msg('window_source')}</p>{_kpi_table(datas)}")
    else:
        figures = f"<p class=\"source\">{msg('no_summary')}</p>{_kpi_table(datas)}"
    sections = []
    for d, recs, worst, summary in zip(datas, records_by_show, worst_by_show, summaries):
        prefix = f"{e(d['key'])}: " if len(datas) == 2 else ""
        if summary:
            sections.append(_exact_section(d, summary, prefix, recs))
        sections.append(f"<section><h2>{prefix}{msg('worst')}</h2>{_worst_table(worst)}"
                        f"<h2>{prefix}{msg('events')}</h2>{_events_table(recs)}</section>")
    if len(datas) == 2 and all(summaries):
        sections.append(_compare_section(datas, summaries, records_by_show))
    top = f'<p class="note">{bi(*note)}</p>' if note else ""
    if export_url and any(summaries):
        top += (f'<p class="exports"><a class="export" id="export-xlsx" href="{e(export_url.replace(FMT, "xlsx"))}" download>{msg("export_xlsx")}</a> '
                f'<a class="export" id="export-zip" href="{e(export_url.replace(FMT, "zip"))}" download>{msg("export_zip")}</a></p>')
    legend = (f"<p class=\"legend\">{msg('legend', markup=True)}"
              + (" " + msg("legend_compare") if len(datas) == 2 else "") + "</p>")
    body = f"""<!doctype html>
<html lang="{'zh-CN' if lang == 'zh' else 'en'}" data-lang="{lang}"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{e(plain)}</title>
<style>{style}</style>
</head><body>
<header><button type="button" id="lang" class="lang">{MESSAGES['en' if lang == 'zh' else 'zh']['switch']}</button><h1>{title}</h1><div class="heads">{''.join(heads)}</div>{top}</header>
<main>
<h2>{msg('key_figures')}</h2>
{figures}
<h2>{msg('timeline')}</h2>
{legend}
<div id="charts" class="charts"></div>
<noscript><p>{msg('noscript')}</p></noscript>
{''.join(sections)}
<p class="foot">{msg('foot_exact' if exact else 'foot')} {e(datetime.now().strftime('%Y-%m-%d %H:%M'))}.</p>
</main>
<script type="application/json" id="review-data">{_script(payload)}</script>
<script>{_script(code)}</script>
</body></html>
"""
    csp = (f"default-src 'none'; script-src {_sha(_script(code))}; style-src {_sha(style)}; img-src data:; "
           "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
    return body, csp


def build_review(store, name: str, compare: str | None = None, compare_store=None,
                 lang: str | None = None, note: tuple[str, str] | None = None,
                 export_url: str | None = None) -> tuple[str, str]:
    """(html, content-security-policy) of the review of show `name` (a key, a room id for its newest
    show, or a unique key prefix), side by side with `compare` (from `compare_store` if given).
    `lang` (zh, en) is the language it opens in; default $LIVEMON_LANG, else zh. `note` and
    `export_url` as render_html takes them."""
    datas, recs, worsts, summaries = [], [], [], []
    for store, wanted in [(store, name)] + ([(compare_store or store, compare)] if compare else []):
        show = store.find_show(wanted)
        if show is None:
            raise ReviewError(f"no recorded show {wanted!r} (see `livemon shows`)")
        timeline, records = store.timeline(show["key"]), store.records(show["key"])
        if not timeline:
            raise ReviewError(f"show {show['key']!r} has no recorded instants yet")
        summary = store.summary(show["key"]) if hasattr(store, "summary") else None
        datas.append(show_data(show, timeline, records, summary))
        summaries.append(summary)
        recs.append(records)
        worsts.append(worst_minutes(timeline, records))
    return render_html(datas, recs, worsts, lang, summaries, note, export_url)


def review_tables(store, name: str, compare: str | None = None, compare_store=None) -> tuple[list[Table], str]:
    """The tables the review exports and the files' stem: the show's summary tables; with `compare`,
    the comparison tables (`cmp_*`) then each show's own (`a_*`, `b_*`). ReviewError when a show is
    unknown or has no summary."""
    found = []
    for source, wanted in [(store, name)] + ([(compare_store or store, compare)] if compare else []):
        show = source.find_show(wanted)
        if show is None:
            raise ReviewError(f"no recorded show {wanted!r} (see `livemon shows`)")
        summary = source.summary(show["key"])
        if summary is None:
            raise ReviewError(f"show {show['key']!r} has no show summary yet (it is not over): nothing to export")
        found.append((show["key"], summary, source.records(show["key"])))
    stem = "-vs-".join(key for key, _, _ in found)
    if len(found) == 1:
        return summary_tables(found[0][1], found[0][2]), stem
    (ka, sa, ra), (kb, sb, rb) = found
    tables = compare_tables(sa, sb, (ra, rb), (ka, kb))
    for prefix, summary, records in (("a_", sa, ra), ("b_", sb, rb)):
        for table in summary_tables(summary, records):
            table.name = prefix + table.name
            tables.append(table)
    return tables, stem


EXPORT_TYPES = {"xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", "zip": "application/zip"}


def export_download(store, name: str, fmt: str, compare: str | None = None) -> tuple[bytes, str, str]:
    """(bytes, file name, content type) of the review's tables as one XLSX workbook (`fmt` xlsx) or
    a zip of their CSV files (`fmt` zip), as `livemon review --export` writes them."""
    from livemon.recording.export import xlsx_bytes, zip_bytes

    if fmt not in EXPORT_TYPES:
        raise ReviewError(f"no export format {fmt!r} (xlsx or zip)")
    tables, stem = review_tables(store, name, compare)
    stem = "".join(c if c.isascii() and (c.isalnum() or c in "_.-") else "_" for c in stem)
    body = zip_bytes(tables, stem) if fmt == "zip" else xlsx_bytes(tables)
    if body is None:
        raise ReviewError("no XLSX export here: openpyxl is not installed")
    return body, f"{stem}.{fmt}", EXPORT_TYPES[fmt]
