"""`livemon report`: the period report of recorded shows (GMV, conversion, UV value by source, best
hours, top products, incidents and MTTR per week) as HTML and XLSX, checked against sums computed
here from the shows' summaries and incident records (the shows of tests/test_incidents_report.py)."""

from __future__ import annotations

import json
import re
import shutil
from datetime import timedelta

import pytest

from livemon.recording.store import RecordingStore
from tests.test_incidents_report import (
    PERIOD, build_recorded, expected, final_incidents, iso_week, local, monday, run,
)


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    return build_recorded(tmp_path_factory)


@pytest.fixture(scope="module")
def report(recorded, tmp_path_factory):
    """The report over the period, in English: (figures, HTML text, XLSX path), and the summaries."""
    data, shows = recorded
    out = tmp_path_factory.mktemp("report") / "period.html"
    result = run("report", "--from", PERIOD[0], "--to", PERIOD[1], "--data-dir", data, "--out", out, "--json",
                 env={"LIVEMON_LANG": "en"})
    assert result.exit_code == 0, result.output
    return json.loads(result.output), out.read_text(encoding="utf-8"), out.with_suffix(".xlsx"), shows[:4]


def paying(figures):
    return round(figures["conversion_rate"] * figures["clickers"]) if figures["clickers"] else 0


def test_totals_and_weeks_are_the_sums_of_the_show_summaries(report):
    figures, _, _, shows = report
    summaries = [s for s, _ in shows]
    totals = figures["totals"]
    assert totals["shows"] == totals["summarized"] == 4
    gmv = sum(s["totals"]["gmv"] for s in summaries)
    assert gmv > 0 and totals["gmv"] == pytest.approx(gmv)
    assert totals["orders"] == sum(s["totals"]["orders"] for s in summaries)
    viewers = sum(s["totals"]["viewers"] for s in summaries)
    assert totals["viewers"] == viewers and totals["uv_value"] == pytest.approx(gmv / viewers)
    clickers = sum(s["totals"]["clickers"] for s in summaries)
    assert totals["conversion_rate"] == pytest.approx(sum(paying(s["totals"]) for s in summaries) / clickers)
    assert totals["gpm"] == pytest.approx(gmv * 1000 / sum(s["totals"]["entries"] for s in summaries))
    weeks: dict[str, list] = {}
    for s in summaries:
        weeks.setdefault(iso_week(s["start"]), []).append(s)
    assert [w["week"] for w in figures["weeks"]] == sorted(weeks)
    for row in figures["weeks"]:
        mine = weeks[row["week"]]
        assert row["shows"] == len(mine)
        assert row["gmv"] == pytest.approx(sum(s["totals"]["gmv"] for s in mine))
        assert row["uv_value"] == pytest.approx(sum(s["totals"]["gmv"] for s in mine) / sum(s["totals"]["viewers"] for s in mine))
    for row, s in zip(figures["shows"], summaries):
        assert row["start"] == s["start"] and row["gmv"] == pytest.approx(s["totals"]["gmv"])
        assert row["conversion_rate"] == pytest.approx(s["totals"]["conversion_rate"])


def test_uv_value_by_source_best_hours_and_top_products(report):
    figures, _, _, shows = report
    summaries = [s for s, _ in shows]
    sources: dict[str, dict] = {}
    for s in summaries:
        for source, v in s["by"]["source"].items():
            row = sources.setdefault(source, {"gmv": 0.0, "viewers": 0, "clickers": 0, "paying": 0})
            row["gmv"] += v["gmv"]
            row["viewers"] += v["viewers"]
            row["clickers"] += v["clickers"]
            row["paying"] += paying(v)
    assert len(sources) >= 3 and {r["source"] for r in figures["sources"]} == set(sources)
    for row in figures["sources"]:
        mine = sources[row["source"]]
        assert row["uv_value"] == (pytest.approx(mine["gmv"] / mine["viewers"]) if mine["viewers"] else None)
        assert row["conversion_rate"] == (pytest.approx(mine["paying"] / mine["clickers"]) if mine["clickers"] else None)
    uv = [r["uv_value"] or 0 for r in figures["sources"]]
    assert uv == sorted(uv, reverse=True)
    hours: dict[str, float] = {}
    for s in summaries:
        for hour, v in s["hours"].items():
            hours[hour] = hours.get(hour, 0.0) + v["gmv"]
    ranked = sorted(hours, key=lambda h: (-hours[h], h))
    assert [h["hour"] for h in figures["hours"]] == ranked
    assert [h["gmv"] for h in figures["hours"]] == pytest.approx([hours[h] for h in ranked])
    assert sum(h["share"] for h in figures["hours"]) == pytest.approx(1.0)
    products: dict[str, dict] = {}
    for s in summaries:
        for pid, v in s["products"].items():
            row = products.setdefault(pid, {"gmv": 0.0, "orders": 0, "shows": 0})
            row["gmv"] += v["gmv"]
            row["orders"] += v["orders"]
            row["shows"] += 1
    top = sorted(products, key=lambda p: (-products[p]["gmv"], p))[:20]
    assert [p["product_id"] for p in figures["products"]] == top and figures["products_total"] == len(products)
    for row in figures["products"]:
        assert row["gmv"] == pytest.approx(products[row["product_id"]]["gmv"])
        assert (row["orders"], row["shows"]) == (products[row["product_id"]]["orders"], products[row["product_id"]]["shows"])


def test_incidents_and_mttr_per_week(report):
    figures, _, _, shows = report
    weeks: dict[str, list] = {}
    for summary, records in shows:
        weeks.setdefault(iso_week(summary["start"]), []).extend(final_incidents(records).values())
    for row in figures["incidents"]["weeks"]:
        mine = expected(weeks[row["week"]])
        assert (row["incidents"], row["resolved"], row["mttr"], row["resolved_within_goal"]) == \
            (mine["incidents"], mine["resolved"], mine["mttr"], mine["within_goal"])
    for row in figures["weeks"]:
        assert row["mttr"] == expected(weeks[row["week"]])["mttr"]
    every = [i for w in weeks.values() for i in w]
    assert figures["totals"]["incidents"] == len(every) > 0
    assert figures["totals"]["mttr"] == expected(every)["mttr"]


def test_html_has_every_section_in_the_chosen_language(report, recorded, tmp_path):
    figures, page, _, _ = report
    assert '<html lang="en" data-lang="en">' in page
    for section in ("kpis", "weeks", "shows", "sources", "hours", "products", "incidents"):
        assert f'data-section="{section}"' in page, section
    assert "UV value by source" in page and "各流量来源 UV 价值" in page   # both languages, one shown
    best = figures["hours"][0]["hour"]
    hours = re.search(r'data-table="hours">(.*?)</table>', page, re.S).group(1)
    assert re.search(r"<tr><td>1</td><td>([^<]+)</td>", hours).group(1) == f"{best}:00"
    products = re.search(r'data-table="products">(.*?)</table>', page, re.S).group(1)
    assert f"<td>{figures['products'][0]['product_id']}</td>" in products
    data, _ = recorded
    out = tmp_path / "zh.html"
    result = run("report", "--from", PERIOD[0], "--to", PERIOD[1], "--data-dir", data, "--out", out)
    assert result.exit_code == 0, result.output
    assert f"Wrote {out}" in result.output and out.with_suffix(".xlsx").exists()
    assert '<html lang="zh-CN" data-lang="zh">' in out.read_text(encoding="utf-8")


def test_xlsx_has_a_sheet_per_table_with_the_figures(report):
    openpyxl = pytest.importorskip("openpyxl")
    figures, _, path, _ = report
    book = openpyxl.load_workbook(path)
    assert book.sheetnames == ["kpis", "weeks", "shows", "sources", "hours", "products", "incidents"]
    kpis = {row[0]: row[2] for row in book["kpis"].iter_rows(min_row=2, values_only=True)}
    assert kpis["gmv"] == pytest.approx(figures["totals"]["gmv"])
    assert kpis["uv_value"] == pytest.approx(figures["totals"]["uv_value"])
    assert kpis["incidents"] == figures["totals"]["incidents"]
    products = list(book["products"].iter_rows(min_row=2, values_only=True))
    assert [(r[1], r[4]) for r in products] == [(p["product_id"], pytest.approx(p["gmv"])) for p in figures["products"]]
    assert book["products"]["B1"].value == "商品 / Product"
    weeks = list(book["incidents"].iter_rows(min_row=2, values_only=True))
    assert [r[0] for r in weeks] == [w["week"] for w in figures["incidents"]["weeks"]] + ["合计 / Total"]
    assert [r[6] for r in weeks[:-1]] == [w["mttr"] for w in figures["incidents"]["weeks"]]


def test_a_show_without_summary_is_listed_not_summed(recorded, tmp_path):
    data, _ = recorded
    copy = tmp_path / "data"
    shutil.copytree(data, copy)
    store = RecordingStore(copy)
    start = local(monday(1) + timedelta(days=3), 20)
    store.write(snapshots=[{"ts": start + t, "room_id": "room-live", "metrics": {"viewers": 10}, "cdn": {},
                            "show": {"id": "live-1", "start": start}} for t in range(3)])
    store.close()
    result = run("report", "--from", PERIOD[0], "--to", PERIOD[1], "--data-dir", copy, "--out", tmp_path / "r.html",
                 "--json")
    assert result.exit_code == 0, result.output
    figures = json.loads(result.output)
    assert (figures["totals"]["shows"], figures["totals"]["summarized"]) == (5, 4)
    [live] = [s for s in figures["shows"] if s["room_id"] == "room-live"]
    assert live["summarized"] is False and "gmv" not in live
    page = (tmp_path / "r.html").read_text(encoding="utf-8")
    assert "1 场尚无汇总" in page and "not in the sums: 1." in page


def test_clear_errors(recorded, tmp_path):
    data, _ = recorded
    result = run("report", "--from", "2020-01-01", "--to", "2020-01-07", "--data-dir", data, "--out", tmp_path / "r.html",
                 env={"LIVEMON_LANG": "en"})
    assert result.exit_code == 1 and "no shows between 2020-01-01 and 2020-01-07" in result.output
    assert not (tmp_path / "r.html").exists()
    result = run("report", "--from", "yesterday", "--to", PERIOD[1], "--data-dir", data)
    assert result.exit_code == 2 and "--from must be a date like" in result.output
    result = run("report", "--from", PERIOD[0], "--to", PERIOD[1], "--data-dir", tmp_path / "none")
    assert result.exit_code == 1 and "no recording in" in result.output
