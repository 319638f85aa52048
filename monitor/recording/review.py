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
import statistics
from datetime import datetime
from pathlib import Path

import orjson

from livemon import catalogue

STATIC = Path(__file__).resolve().parent.parent / "web" / "static"
MAX_POINTS = 3600          # chart points per show; longer shows are thinned evenly
WORST_MINUTES = 6


class ReviewError(Exception):
    pass


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
                     "events": [describe(r) for r in events][:6]})
    by_stall = sorted((r for r in rows if (r["stall_ratio"] or 0) > 0.01), key=lambda r: -(r["stall_ratio"] or 0))
    by_loss = sorted((r for r in rows if r["loss_share"] > 0.02), key=lambda r: -r["loss_share"])
    chosen: dict[int, dict] = {}
    for a, b in zip(by_stall + [None] * limit, by_loss + [None] * limit):
        for row in (a, b):
            if row is not None and len(chosen) < limit:
                reasons = []
                if (row["stall_ratio"] or 0) > 0.01:
                    reasons.append(f"stall {row['stall_ratio'] * 100:.1f}%")
                if row["loss_share"] > 0.02:
                    reasons.append(f"lost {row['loss_share'] * 100:.0f}% of viewers")
                chosen[row["minute"]] = {**row, "why": ", ".join(reasons)}
        if len(chosen) >= limit:
            break
    return sorted(chosen.values(), key=lambda r: r["minute"])


def describe(rec: dict) -> str:
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


def show_data(show: dict, timeline: list[dict], records: list[dict]) -> dict:
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
    }


# ---- HTML ----------------------------------------------------------------------------------------

def _kpi_rows() -> list[tuple[str, str, str, bool | None]]:
    """(key, label, format, higher is better) of the KPI table, in the catalogue's order."""
    rows: list[tuple[str, str, str, bool | None]] = [("duration_minutes", "Duration", "min", None)]
    for metric in catalogue.ROOM:
        if metric.review == "peak":
            rows += [(f"peak_{metric.name}", f"Peak {metric.en.lower()}", metric.format, True),
                     (f"avg_{metric.name}", f"Average {metric.en.lower()}", metric.format, True)]
        elif metric.review:
            rows.append((metric.name, metric.en, metric.format, metric.higher_is_better))
    return rows + [("entries", "Entries (views)", "int", True), ("alerts_fired", "Alerts fired", "int", False),
                   ("failovers", "CDN failovers", "int", False)]


def fmt(value, kind: str) -> str:
    if value is None:
        return "–"
    if kind == "pct":
        return f"{value * 100:.2f}%" if abs(value) < 0.1 else f"{value * 100:.1f}%"
    if kind == "money":
        return f"¥{value:,.0f}"
    if kind in ("sec", "s"):
        return f"{value:,.0f} s"
    if kind == "ms":
        return f"{value:,.0f} ms"
    if kind == "min":
        return f"{value:,.1f} min"
    return f"{value:,.0f}"


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


def _kpi_table(datas: list[dict]) -> str:
    e = html.escape
    head = "".join(f"<th>{e(d['key'])}</th>" for d in datas)
    if len(datas) == 2:
        head += "<th>Difference</th>"
    rows = []
    for key, label, kind, better in _kpi_rows():
        values = [d["kpis"].get(key) for d in datas]
        cells = "".join(f"<td>{e(fmt(v, kind))}</td>" for v in values)
        if len(datas) == 2:
            a, b = values
            if a is None or b is None:
                cells += "<td>–</td>"
            else:
                delta = b - a
                rel = f" ({delta / a * 100:+.0f}%)" if a else ""
                sign = "+" if delta >= 0 else "-"
                shown = (f"{delta * 100:+.2f} pt" if kind == "pct" else sign + fmt(abs(delta), kind)) + rel
                tone = "same" if abs(delta) < 1e-9 or better is None else (
                    "better" if (delta > 0) == better else "worse")
                cells += f'<td class="{tone}">{e(shown)}</td>'
        rows.append(f"<tr><th>{e(label)}</th>{cells}</tr>")
    return f'<table class="kpis"><thead><tr><th></th>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


def _worst_table(rows: list[dict]) -> str:
    e = html.escape
    if not rows:
        return "<p>No minute stood out: stall ratio stayed under 1% and the audience never fell by more than 2% in a minute.</p>"
    body = "".join(
        f"<tr><td>{e(_when(r['ts'])[11:16])} (min {r['minute']})</td><td>{e(r['why'])}</td>"
        f"<td>{e(fmt(r['online'], 'int'))} ({r['online_change']:+,.0f})</td><td>{e(fmt(r['stall_ratio'], 'pct'))}</td>"
        f"<td>{e(fmt(r['error_rate'], 'pct'))}</td><td>{e(fmt(r['gmv'], 'money'))}</td>"
        f"<td>{'<br>'.join(e(x) for x in r['events']) or 'no alert or failover'}</td></tr>" for r in rows)
    return ("<table class=\"worst\"><thead><tr><th>Minute</th><th>Why</th><th>Online (change)</th><th>Stall</th>"
            f"<th>Errors</th><th>GMV in minute</th><th>What happened</th></tr></thead><tbody>{body}</tbody></table>")


def _events_table(records: list[dict]) -> str:
    e = html.escape
    shown = [r for r in records if (r.get("kind") or "alert") in ("alert", "failover", "operator")
             and not (r.get("kind", "alert") == "alert" and r.get("state") == "pending")]
    if not shown:
        return "<p>No alert fired and no failover happened during this show.</p>"
    body = "".join(f"<tr><td>{e(_when(float(r.get('ts') or 0))[11:19])}</td><td>{e(describe(r))}</td>"
                   f"<td>{e(str(r.get('summary') or r.get('reason') or ''))}</td></tr>" for r in shown[:300])
    return f"<table class=\"events\"><thead><tr><th>Time</th><th>Event</th><th>Detail</th></tr></thead><tbody>{body}</tbody></table>"


def _script(text: str) -> str:
    # Inline JSON must not be able to close the script element.
    return text.replace("</", "<\\/")


def _sha(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def render_html(datas: list[dict], records_by_show: list[list[dict]], worst_by_show: list[list[dict]]) -> tuple[str, str]:
    """The report and the Content-Security-Policy that allows exactly its inline script and style."""
    e = html.escape
    title = ("Review: " + datas[0]["key"] if len(datas) == 1 else
             f"Comparison: {datas[0]['key']} vs {datas[1]['key']}")
    style = (STATIC / "vendor" / "uPlot.min.css").read_text() + (STATIC / "review.css").read_text()
    code = "\n".join((STATIC / name).read_text() for name in ("vendor/uPlot.iife.min.js", "common.js", "charts.js", "review.js"))
    payload = orjson.dumps({"shows": datas, "catalogue": catalogue.as_json()}).decode().replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    heads = []
    for d in datas:
        heads.append(f"<div class=\"show-head\"><h2>{e(d['key'])}</h2><p>room <strong>{e(d['room_id'])}</strong>"
                     + (f" · {e(d['title'])}" if d.get("title") else "")
                     + f" · {e(_when(d['start']))} → {e(_when(d['end'])[11:])}</p></div>")
    sections = []
    for d, recs, worst in zip(datas, records_by_show, worst_by_show):
        prefix = f"{e(d['key'])}: " if len(datas) == 2 else ""
        sections.append(f"<section><h2>{prefix}Worst minutes</h2>{_worst_table(worst)}"
                        f"<h2>{prefix}Alerts and failovers</h2>{_events_table(recs)}</section>")
    legend = ("<p class=\"legend\">Chart marks: <span class=\"m-fire\">▲ red line</span> alert fired, "
              "<span class=\"m-res\">▼ green dashes</span> alert resolved, <span class=\"m-fo\">⇄ blue line</span> CDN failover."
              + (" Both shows on one axis of minutes since their start: solid line first show, dashed line second." if len(datas) == 2 else "")
              + "</p>")
    body = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{e(title)}</title>
<style>{style}</style>
</head><body>
<header><h1>{e(title)}</h1><div class="heads">{''.join(heads)}</div></header>
<main>
<h2>Key figures</h2>
{_kpi_table(datas)}
<h2>Timeline</h2>
{legend}
<div id="charts" class="charts"></div>
<noscript><p>The charts need JavaScript; the tables above and below do not.</p></noscript>
{''.join(sections)}
<p class="foot">Ratios are averaged over the show's one-second instants; GMV is the show's running total; GPM is GMV per thousand entries.
Written by livemon review at {e(datetime.now().strftime('%Y-%m-%d %H:%M'))}.</p>
</main>
<script type="application/json" id="review-data">{_script(payload)}</script>
<script>{_script(code)}</script>
</body></html>
"""
    csp = (f"default-src 'none'; script-src {_sha(_script(code))}; style-src {_sha(style)}; img-src data:; "
           "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
    return body, csp


def build_review(store, name: str, compare: str | None = None, compare_store=None) -> tuple[str, str]:
    """(html, content-security-policy) of the review of show `name` (a key, a room id for its newest
    show, or a unique key prefix), side by side with `compare` (from `compare_store` if given)."""
    datas, recs, worsts = [], [], []
    for store, wanted in [(store, name)] + ([(compare_store or store, compare)] if compare else []):
        show = store.find_show(wanted)
        if show is None:
            raise ReviewError(f"no recorded show {wanted!r} (see `livemon shows`)")
        timeline, records = store.timeline(show["key"]), store.records(show["key"])
        if not timeline:
            raise ReviewError(f"show {show['key']!r} has no recorded instants yet")
        datas.append(show_data(show, timeline, records))
        recs.append(records)
        worsts.append(worst_minutes(timeline, records))
    return render_html(datas, recs, worsts)

