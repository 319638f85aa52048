"""The review with a show summary (SPEC §10): exact figures, the summary's tables, and the export."""

import csv
import json
import re

import orjson
import pytest
from click.testing import CliRunner

from livemon.cli import cli
from livemon.recording.cli import import_summaries, import_timeline
from livemon.recording.export import summary_tables
from livemon.recording.review import build_review, fmt
from livemon.recording.store import RecordingStore
from livemon.replay import replay_lines
from livemon.simulator.core import generate


@pytest.fixture(scope="module")
def replayed(tmp_path_factory):
    """A generated two-minute show replayed: its timeline and summary files."""
    lines = [m.value for m in generate("normal", rooms=1, duration=120, rate=200, bad_fraction=0)]
    summaries: list[dict] = []
    timeline = list(replay_lines(lines, shows=summaries))
    [summary] = summaries
    folder = tmp_path_factory.mktemp("replayed")
    (folder / "timeline.jsonl").write_bytes(b"".join(orjson.dumps(s, option=orjson.OPT_APPEND_NEWLINE) for s in timeline))
    (folder / "shows.jsonl").write_bytes(orjson.dumps(summary, option=orjson.OPT_APPEND_NEWLINE))
    return folder, timeline, summary


def _row(html, label_en):
    return re.search(rf'<tr><th><span class="l-zh">[^<]*</span><span class="l-en">{re.escape(label_en)}</span></th>(.*?)</tr>',
                     html).group(1)


def test_report_shows_the_summary_exact_figures_not_window_means(replayed, tmp_path):
    folder, timeline, summary = replayed
    store = RecordingStore(tmp_path / "data")
    [key] = import_timeline(store, folder / "timeline.jsonl")
    assert import_summaries(store, folder / "shows.jsonl") == 1
    html, _ = build_review(store, key)
    store.close()
    totals = summary["totals"]
    assert totals["buyers"] > 0 and totals["clickers"] > 0
    data = json.loads(re.search(r'id="review-data">(.*?)</script>', html, re.S).group(1))
    exact = data["shows"][0]["exact"]
    for name in ("viewers", "entries", "peak_online", "avg_watch_seconds", "stayed_60s", "clickers", "buyers",
                 "orders", "gmv", "refund_rate", "uv_value", "gpm", "conversion_rate", "stall_ratio", "error_rate"):
        assert exact[name] == totals[name], name
    # Conversion is the share of the show's clickers who paid, a ratio of the show's counts ...
    paid_clickers = round(totals["conversion_rate"] * totals["clickers"])
    assert totals["conversion_rate"] == pytest.approx(paid_clickers / totals["clickers"])
    cells = re.findall(r"<td[^>]*>(.*?)</td>", _row(html, "Conversion (clickers who paid)"))
    assert cells == [fmt(totals["conversion_rate"], "pct")]
    # ... not the mean of the instants' conversion rates, which the report no longer shows.
    assert "<span class=\"l-en\">Conversion</span></th>" not in html.split('class="kpis exact"')[0]
    assert re.findall(r"<td[^>]*>(.*?)</td>", _row(html, "Viewers")) == [fmt(totals["viewers"], "int")]
    assert "Source: the show summary (SPEC §10)" in html and "来源:本场汇总" in html
    window_table = re.search(r'<table class="kpis">.*?</table>', html, re.S).group(0)
    for gone in ("Product CTR", "Interaction", "Stall ratio", "Peak online", "GPM"):
        assert gone not in window_table
    # The summary's tables: funnel, sources, products ranked by GMV, pinned stretches, promotions, hours.
    funnel = re.search(r'data-table="funnel">(.*?)</table>', html, re.S).group(1)
    assert [re.sub(r"<[^>]+>", "", c) for c in re.findall(r"<tr><td>.*?</td><td>(.*?)</td>", funnel)] == \
        [fmt(n, "int") for n in summary["funnel"]]
    sources = re.search(r'data-table="by_source">(.*?)</table>', html, re.S).group(1)
    for source in summary["by"]["source"]:
        assert f"<td>{source}</td>" in sources
    products = re.search(r'data-table="products">(.*?)</table>', html, re.S).group(1)
    best = max(summary["products"], key=lambda p: summary["products"][p]["gmv"])
    assert re.search(r"<tr><td>1</td><td>([^<]+)</td>", products).group(1) == best
    for name in ("segments", "promos", "promo_types", "spend", "hours", "age_category", "by_device", "by_region"):
        assert f'data-table="{name}"' in html, name


def test_tables_of_a_summary(replayed):
    _, _, summary = replayed
    tables = {t.name: t for t in summary_tables(summary)}
    assert [r[1] for r in tables["funnel"].rows] == summary["funnel"]
    assert tables["funnel"].rows[2][2] == pytest.approx(summary["totals"]["clickers"] / summary["totals"]["viewers"])
    assert len(tables["by_source"].rows) == len(summary["by"]["source"])
    gmvs = [r[8] for r in tables["products"].rows]
    assert gmvs == sorted(gmvs, reverse=True) and len(gmvs) == len(summary["products"])
    per_minute = [r[9] or 0 for r in tables["segments"].rows]
    assert per_minute == sorted(per_minute, reverse=True) and len(per_minute) == len(summary["segments"])
    assert len(tables["by_region"].rows) <= 10
    assert tables["spend"].rows[-1][1:] == [summary["spend_total"], summary["totals"]["gmv"], summary["roi"]]
    assert sum(r[5] for r in tables["hours"].rows) == pytest.approx(summary["totals"]["gmv"])


def test_cli_reviews_a_replay_with_its_summaries_and_exports(replayed, tmp_path):
    folder, _, summary = replayed
    report, export_dir = tmp_path / "r.html", tmp_path / "export"
    result = CliRunner().invoke(cli, ["review", str(folder / "timeline.jsonl"), "--shows", str(folder / "shows.jsonl"),
                                      "--room", summary["room_id"], "--out", str(report), "--export", str(export_dir)])
    assert result.exit_code == 0, result.output
    assert 'class="kpis exact"' in report.read_text()
    csvs = sorted(export_dir.glob("*.csv"))
    names = {p.name.rsplit("-", 1)[-1].removesuffix(".csv") for p in csvs}
    assert {"kpis", "funnel", "by_source", "products", "segments", "promos", "spend", "hours"} <= names
    raw = next(p for p in csvs if p.name.endswith("-products.csv")).read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")                         # the BOM Excel needs for Chinese
    rows = list(csv.reader(raw.decode("utf-8-sig").splitlines()))
    assert rows[0][:2] == ["排名 / Rank", "商品 / Product"]
    assert len(rows) == 1 + len(summary["products"])
    assert float(rows[1][8]) == max(p["gmv"] for p in summary["products"].values())
    kpi_rows = {r[0]: r[2] for r in csv.reader(next(p for p in csvs if p.name.endswith("-kpis.csv"))
                                               .read_text("utf-8-sig").splitlines()[1:])}
    assert float(kpi_rows["conversion_rate"]) == pytest.approx(summary["totals"]["conversion_rate"])
    assert int(kpi_rows["buyers"]) == summary["totals"]["buyers"]
    openpyxl = pytest.importorskip("openpyxl")
    [book_path] = export_dir.glob("*.xlsx")
    book = openpyxl.load_workbook(book_path)
    assert {"kpis", "funnel", "by_source", "products", "hours"} <= set(book.sheetnames)
    sheet = book["funnel"]
    assert [row[1] for row in sheet.iter_rows(min_row=2, values_only=True)] == summary["funnel"]


def test_export_needs_a_summary(replayed, tmp_path):
    folder, _, _ = replayed
    result = CliRunner().invoke(cli, ["review", str(folder / "timeline.jsonl"), "--out", str(tmp_path / "r.html"),
                                      "--export", str(tmp_path / "x")])
    assert result.exit_code == 2 and "--export needs the show summary" in result.output
