"""The post-show review served by the control room, in headless Chromium: a show generated as events,
run through the engine (`livemon.replay.replay_lines`, the workers' code), its final snapshots, alerts
and show summary fed to the hub as a worker sends them and recorded; the page's tables are there, and
its export buttons download the show summary's figures."""

from __future__ import annotations

import csv
import io
import zipfile

import pytest

from livemon.replay import replay_lines
from livemon.simulator.core import generate
from tests.fixtures.browser import screenshot

SECTIONS = ("funnel", "by_source", "by_device", "by_region", "age_category", "products", "segments", "promos",
            "promo_types", "spend", "hours", "incidents")


@pytest.fixture(scope="module")
def show():
    lines = [m.value for m in generate("normal", rooms=1, duration=120, rate=200, bad_fraction=0, seed=5)]
    summaries: list[dict] = []
    timeline = list(replay_lines(lines, shows=summaries))
    [summary] = summaries
    return timeline, summary


@pytest.fixture
def recorded(control_room, show):
    timeline, summary = show
    for n in range(0, len(timeline), 20):
        chunk = timeline[n:n + 20]
        control_room.feed_step({"worker": "worker-1", "now": chunk[-1]["ts"], "live": chunk[-1:], "final": chunk})
    start, room = summary["start"], summary["room_id"]
    alert = {"kind": "alert", "id": "a1", "rule": "cdn_stall_ratio_high", "room_id": room, "cdn": "cdn-a",
             "severity": "critical", "summary": "stall ratio on cdn-a above 5%"}
    control_room.feed_alert({**alert, "state": "firing", "active_at": start + 30, "fired_at": start + 40, "ts": start + 40})
    control_room.feed_alert({**alert, "state": "resolved", "resolved_at": start + 90, "ts": start + 90})
    control_room.feed_step({"worker": "worker-1", "now": summary["end"], "summaries": [summary]})
    return summary


def _csv(archive: zipfile.ZipFile, table: str) -> list[list[str]]:
    [name] = [n for n in archive.namelist() if n.endswith(f"-{table}.csv")]
    return list(csv.reader(io.StringIO(archive.read(name).decode("utf-8-sig"))))


def test_review_page_tables_and_export_equal_the_recorded_summary(page, control_room, recorded, tmp_path):
    shows = page.request.get(control_room.url + "/api/shows").json()
    [key] = [s["key"] for s in shows["shows"]]
    # The recorded summary, as the API serves it: what the export must equal.
    summary = page.request.get(control_room.url + f"/api/shows/{key}/summary").json()
    assert summary["totals"] == recorded["totals"] and summary["totals"]["buyers"] > 0
    page.goto(control_room.url + f"/review/{key}")
    for name in SECTIONS:
        assert page.locator(f'table[data-table="{name}"]').count() == 1, name
    assert page.locator('table[data-table="incidents"] tbody tr').count() == 1
    page.click("#lang")                    # English, for the checks below
    assert page.locator("table.kpis.exact").is_visible()
    assert "Time to resolve" in page.locator('table[data-table="incidents"]').inner_text()
    with page.expect_download() as got:
        page.click("#export-zip")
    archive = zipfile.ZipFile(got.value.path())
    kpis = {row[0]: row[2] for row in _csv(archive, "kpis")[1:]}
    totals = summary["totals"]
    for name in ("viewers", "entries", "peak_online", "stayed_60s", "clickers", "buyers", "orders", "refunds"):
        assert int(kpis[name]) == totals[name], name
    for name in ("gmv", "conversion_rate", "uv_value", "gpm", "refund_rate", "avg_watch_seconds"):
        assert (float(kpis[name]) if kpis[name] else None) == pytest.approx(totals[name]), name
    assert int(kpis["incidents"]) == 1 and int(kpis["resolved_within_goal"]) == 1
    assert float(kpis["mean_time_to_resolve"]) == 60
    products = _csv(archive, "products")[1:]
    assert {row[1]: float(row[8]) for row in products} == pytest.approx(
        {pid: p["gmv"] for pid, p in summary["products"].items()})
    assert [int(row[1]) for row in _csv(archive, "funnel")[1:]] == summary["funnel"]
    sources = {row[0]: row for row in _csv(archive, "by_source")[1:]}
    assert {s: int(r[1]) for s, r in sources.items()} == {s: v["viewers"] for s, v in summary["by"]["source"].items()}
    assert len(_csv(archive, "segments")) == 1 + len(summary["segments"])
    openpyxl = pytest.importorskip("openpyxl")
    with page.expect_download() as got:
        page.click("#export-xlsx")
    assert got.value.suggested_filename == f"{key}.xlsx"
    got.value.save_as(tmp_path / "review.xlsx")
    book = openpyxl.load_workbook(tmp_path / "review.xlsx")
    assert [row[1] for row in book["funnel"].iter_rows(min_row=2, values_only=True)] == summary["funnel"]
    assert {row[0]: row[2] for row in book["kpis"].iter_rows(min_row=2, values_only=True)}["gmv"] == pytest.approx(totals["gmv"])
    assert not page.problems, page.problems
    screenshot(page, "review-export")
    # Printed: the buttons and the language switch stay off the paper, the tables are all there.
    page.emulate_media(media="print")
    assert not page.locator("#export-zip").is_visible() and not page.locator("#lang").is_visible()
    assert page.locator('table[data-table="products"]').is_visible()
    assert page.pdf()[:5] == b"%PDF-"
    # Compared (here with itself): the comparison's tables come along, every difference zero.
    compared = page.request.get(control_room.url + f"/review/{key}/export.zip?compare={key}")
    assert compared.status == 200 and compared.headers["content-type"] == "application/zip"
    archive = zipfile.ZipFile(io.BytesIO(compared.body()))
    rows = {row[0]: row for row in _csv(archive, "cmp_kpis")[1:]}
    assert float(rows["gmv"][2]) == float(rows["gmv"][3]) == pytest.approx(totals["gmv"]) and float(rows["gmv"][4]) == 0
    assert {n.rsplit("-", 1)[-1] for n in archive.namelist()} >= {"a_kpis.csv", "b_kpis.csv", "cmp_products.csv"}
    # A show without a summary has nothing to export: a clear 404, not an empty file.
    missing = page.request.get(control_room.url + "/review/no-such-show/export.zip")
    assert missing.status == 404 and "no recorded show" in missing.json()["error"]
