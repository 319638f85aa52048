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


@pytest.fixture(scope="module")
def two_shows(tmp_path_factory):
    """Two generated shows of one room an hour apart, replayed from one event file: the timeline and
    summaries of both in one pair of files, and each show alone in a pair of its own."""
    lines = [m.value for m in generate("normal", rooms=1, duration=120, rate=200, bad_fraction=0, seed=1)]
    lines += [m.value for m in generate("normal", rooms=1, duration=120, rate=200, bad_fraction=0, seed=2,
                                        start=1_700_003_600.0)]
    summaries: list[dict] = []
    timeline = list(replay_lines(lines, shows=summaries))
    first, second = summaries
    assert first["room_id"] == second["room_id"] and first["start"] < second["start"]
    folder = tmp_path_factory.mktemp("two_shows")

    def write(name, rows):
        (folder / name).write_bytes(b"".join(orjson.dumps(r, option=orjson.OPT_APPEND_NEWLINE) for r in rows))
        return folder / name
    files = {"timeline": write("timeline.jsonl", timeline), "shows": write("shows.jsonl", summaries),
             "events": write("events.jsonl", [orjson.loads(line) for line in lines[:50]])}
    for n, summary in enumerate(summaries, 1):
        files[f"timeline{n}"] = write(f"timeline{n}.jsonl", [s for s in timeline if summary["start"] <= s["ts"] <= summary["end"]])
        files[f"shows{n}"] = write(f"shows{n}.jsonl", [summary])
    return files, first, second


def _csv(directory, suffix):
    [path] = [p for p in directory.glob("*.csv") if p.name.endswith(suffix)]
    return list(csv.reader(path.read_text("utf-8-sig").splitlines()))


def _english(cell):
    """A report cell as an English reader sees it."""
    found = re.search(r'<span class="l-en">(.*?)</span>', cell)
    return found.group(1) if found else re.sub(r"<[^>]+>", "", cell)


def _number(text):
    return None if text == "" else float(text)


def test_a_file_with_two_shows_exports_the_last_unless_told(two_shows, tmp_path):
    files, first, second = two_shows
    args = ["review", str(files["timeline"]), "--shows", str(files["shows"])]
    last = CliRunner().invoke(cli, args + ["--out", str(tmp_path / "last.html"), "--export", str(tmp_path / "last")])
    assert last.exit_code == 0, last.output
    assert "show 2 of 2 of room room-001" in last.output
    assert "show 2 of 2 of room room-001" in (tmp_path / "last.html").read_text()
    kpis = {r[0]: r[2] for r in _csv(tmp_path / "last", "-kpis.csv")[1:]}
    assert float(kpis["gmv"]) == pytest.approx(second["totals"]["gmv"]) and int(kpis["viewers"]) == second["totals"]["viewers"]
    chosen = CliRunner().invoke(cli, args + ["--show", first["show_id"], "--out", str(tmp_path / "first.html"),
                                             "--export", str(tmp_path / "first")])
    assert chosen.exit_code == 0, chosen.output
    assert "show 1 of 2 of room room-001" in chosen.output
    kpis = {r[0]: r[2] for r in _csv(tmp_path / "first", "-kpis.csv")[1:]}
    assert float(kpis["gmv"]) == pytest.approx(first["totals"]["gmv"]) and int(kpis["viewers"]) == first["totals"]["viewers"]
    unknown = CliRunner().invoke(cli, args + ["--show", "matinee", "--out", str(tmp_path / "x.html")])
    assert unknown.exit_code == 2 and "no show 'matinee' of room room-001" in unknown.output
    keys = re.search(r"its shows: (.*)", unknown.output).group(1).split(", ")
    assert len(keys) == 2 and all(k.startswith("room-001.") for k in keys)
    assert "Traceback" not in unknown.output and unknown.output.strip().count("\n") == 0


def test_two_shows_from_replay_files_compared_table_by_table_and_exported(two_shows, tmp_path):
    files, first, second = two_shows
    report, folder = tmp_path / "cmp.html", tmp_path / "cmp"
    result = CliRunner().invoke(cli, ["review", str(files["timeline1"]), "--shows", str(files["shows1"]),
                                      "--compare", str(files["timeline2"]), "--compare-shows", str(files["shows2"]),
                                      "--out", str(report), "--export", str(folder)])
    assert result.exit_code == 0, result.output
    html = report.read_text()
    # Key figures: both shows' exact totals and the difference.
    row = _row(html, "GMV")
    cells = [_english(c) for c in re.findall(r"<td[^>]*>(.*?)</td>", row)]
    assert cells[:2] == [fmt(first["totals"]["gmv"], "money", "en"), fmt(second["totals"]["gmv"], "money", "en")]
    delta = second["totals"]["gmv"] - first["totals"]["gmv"]
    assert cells[2].startswith(("+" if delta >= 0 else "-") + fmt(abs(delta), "money", "en"))
    for name in ("funnel", "by_source", "by_device", "by_region", "age_category", "products", "segments_by_product",
                 "promo_types", "spend", "hours"):
        assert f'data-table="cmp_{name}"' in html, name
    # The exported comparison: every figure of each show and the difference, from the summaries.
    kpis = {r[0]: r[2:] for r in _csv(folder, "-cmp_kpis.csv")[1:]}
    for key in ("viewers", "entries", "buyers", "orders", "gmv", "conversion_rate", "uv_value"):
        a, b, delta, _ = map(_number, kpis[key])
        assert (a, b) == (pytest.approx(first["totals"][key]), pytest.approx(second["totals"][key])), key
        assert delta == pytest.approx(second["totals"][key] - first["totals"][key]), key
    sources = {(r[0], r[1]): r[2:] for r in _csv(folder, "-cmp_by_source.csv")[1:]}
    for source in set(first["by"]["source"]) & set(second["by"]["source"]):
        a, b, delta, _ = map(_number, sources[(source, "观看人数 / Viewers")])
        assert (a, b) == (first["by"]["source"][source]["viewers"], second["by"]["source"][source]["viewers"])
        assert delta == b - a
        assert _number(sources[(source, "UV 价值 / UV value")][0]) == pytest.approx(first["by"]["source"][source]["uv_value"])
    hours = {(r[0], r[1]): r[2:] for r in _csv(folder, "-cmp_hours.csv")[1:]}
    for hour, v in first["hours"].items():
        a, b, *_ = map(_number, hours[(hour, "成交额 / GMV")])
        assert a == pytest.approx(v["gmv"]) and b == pytest.approx((second["hours"].get(hour) or {}).get("gmv")) \
            if hour in second["hours"] else b is None
    # Each show's own tables too.
    assert float({r[0]: r[2] for r in _csv(folder, "-a_kpis.csv")[1:]}["gmv"]) == pytest.approx(first["totals"]["gmv"])
    assert float({r[0]: r[2] for r in _csv(folder, "-b_kpis.csv")[1:]}["gmv"]) == pytest.approx(second["totals"]["gmv"])
    openpyxl = pytest.importorskip("openpyxl")
    [book] = folder.glob("*.xlsx")
    sheets = openpyxl.load_workbook(book).sheetnames
    assert {"cmp_kpis", "cmp_products", "a_products", "b_products", "a_incidents"} <= set(sheets)


def test_two_shows_of_one_file_compared(two_shows, tmp_path):
    files, first, second = two_shows
    result = CliRunner().invoke(cli, ["review", str(files["timeline"]), "--shows", str(files["shows"]),
                                      "--show", first["show_id"], "--compare", "room-001", "--out", str(tmp_path / "c.html"),
                                      "--export", str(tmp_path / "c")])
    assert result.exit_code == 0, result.output
    kpis = {r[0]: r[2:4] for r in _csv(tmp_path / "c", "-cmp_kpis.csv")[1:]}
    assert [float(v) for v in kpis["gmv"]] == [pytest.approx(first["totals"]["gmv"]), pytest.approx(second["totals"]["gmv"])]


@pytest.mark.parametrize("case, expected", [
    ("events", ("is not a timeline (one line per room and instant, as `livemon replay --out` writes it): line 1 is "
                "a batch of events; compute its timeline first: livemon replay ")),
    ("one_event_a_line", "line 1 is an event ('show'); compute its timeline first: livemon replay "),
    ("summaries_as_timeline", "line 1 is a show summary (pass it with --shows)"),
    ("timeline_as_summaries", ("is not show summaries (one per line, as `livemon replay --shows` writes them): line 1 "
                               "has no room_id, start and totals (it looks like a timeline: pass it as SHOW)")),
    ("unknown_room", "no room 'room-zzz' in"),
    ("missing", "no such file: "),
    ("missing_shows", "no such file: "),
    ("not_json", "line 2 is not JSON"),
])
def test_clear_errors_one_line_exit_2(two_shows, tmp_path, case, expected):
    files, _, _ = two_shows
    broken = tmp_path / "broken.jsonl"
    broken.write_bytes(files["timeline"].read_bytes().split(b"\n", 1)[0] + b"\n{not json\n")
    flat = tmp_path / "flat.jsonl"
    flat.write_bytes(b"".join(orjson.dumps(e, option=orjson.OPT_APPEND_NEWLINE)
                              for line in files["events"].read_bytes().splitlines() for e in orjson.loads(line)))
    args = {"events": [str(files["events"])], "one_event_a_line": [str(flat)],
            "summaries_as_timeline": [str(files["shows"])],
            "timeline_as_summaries": [str(files["timeline"]), "--shows", str(files["timeline"])],
            "unknown_room": [str(files["timeline"]), "--room", "room-zzz"],
            "missing": [str(tmp_path / "nowhere.jsonl")],
            "missing_shows": [str(files["timeline"]), "--shows", str(tmp_path / "nowhere.jsonl")],
            "not_json": [str(broken)]}[case]
    result = CliRunner().invoke(cli, ["review", *args, "--out", str(tmp_path / "r.html")])
    assert result.exit_code == 2, result.output
    assert expected in result.output
    assert result.output.startswith("Error: ") and result.output.strip().count("\n") == 0
    assert "Traceback" not in result.output and not (tmp_path / "r.html").exists()
    if case == "unknown_room":
        assert result.output.strip().endswith("its rooms: room-001")


def test_incidents_with_time_to_detect_acknowledge_and_resolve_against_the_goal(replayed, tmp_path):
    from livemon.recording.review import review_tables
    from tests.fixtures.browser import SyntheticShow

    _, _, summary = replayed
    show = SyntheticShow(rooms=("room-x",))
    s = show.start
    store = RecordingStore(tmp_path / "data")
    for i in range(0, 1300, 5):
        store.write(snapshots=show.step(s + i, lateness=0)["final"])
    alert = {"kind": "alert", "room_id": "room-x", "severity": "critical", "summary": "bad"}
    store.write(records=[
        {**alert, "id": "a1", "rule": "cdn_stall_ratio_high", "cdn": "cdn-a", "state": "firing", "active_at": s + 100,
         "fired_at": s + 110, "ts": s + 110},
        {"kind": "failover", "room_id": "room-x", "from_cdn": "cdn-a", "to_cdn": "cdn-b", "decision": "taken", "ts": s + 112},
        {"kind": "operator", "action": "ack", "room_id": "room-x", "rule": "cdn_stall_ratio_high", "by": "li", "ts": s + 150},
        {**alert, "id": "b1", "rule": "room_error_rate_high", "cdn": None, "state": "firing", "active_at": s + 200,
         "fired_at": s + 230, "ts": s + 230},
        {"kind": "incident", "room_id": "room-x", "id": "b1-x", "alert_id": "b1", "fired_ts": s + 230, "acked_ts": s + 260,
         "acked_by": "wang", "ts": s + 260},
        {**alert, "id": "a1", "rule": "cdn_stall_ratio_high", "cdn": "cdn-a", "state": "resolved", "resolved_at": s + 400,
         "ts": s + 400},
        {**alert, "id": "c1", "rule": "room_online_drop", "cdn": None, "state": "firing", "active_at": s + 500,
         "fired_at": s + 505, "ts": s + 505},
        {**alert, "id": "b1", "rule": "room_error_rate_high", "cdn": None, "state": "resolved", "resolved_at": s + 1200,
         "ts": s + 1200}])
    key = store.write_summary({**summary, "room_id": "room-x", "start": s, "show_id": None}, open_show=False)
    assert key is not None
    html, _ = build_review(store, key)
    tables, _ = review_tables(store, key)
    store.close()
    [table] = [t for t in tables if t.name == "incidents"]
    by_rule = {row[0]: dict(zip([en for _, en, _ in table.columns], row)) for row in table.rows}
    stall, errors, drop = by_rule["cdn_stall_ratio_high"], by_rule["room_error_rate_high"], by_rule["room_online_drop"]
    assert [stall["Time to detect"], stall["Time to acknowledge"], stall["Time to resolve"]] == [10, 40, 300]
    assert stall["By"] == "li" and stall["Failover"] == s + 112 and stall["15-min goal"].endswith("met")
    assert [errors["Time to detect"], errors["Time to acknowledge"], errors["Time to resolve"]] == [30, 30, 1000]
    assert errors["By"] == "wang" and errors["15-min goal"].endswith("missed")          # 1000 s > 15 min
    assert drop["Time to resolve"] is None and drop["Resolved"] is None and drop["15-min goal"].endswith("open")
    kpis = {row[0]: row[2] for row in tables[0].rows}
    assert kpis["incidents"] == 3 and kpis["resolved_within_goal"] == 1
    assert kpis["mean_time_to_detect"] == pytest.approx((10 + 30 + 5) / 3)
    assert kpis["mean_time_to_acknowledge"] == pytest.approx(35) and kpis["mean_time_to_resolve"] == pytest.approx(650)
    incidents = re.search(r'data-table="incidents">(.*?)</table>', html, re.S).group(1)
    assert incidents.count("<tr>") == 4 and "15-min goal" in incidents
    assert '<span class="l-en">missed</span>' in incidents and '<span class="l-zh">超时</span>' in incidents
    assert re.findall(r"<td[^>]*>(.*?)</td>", _row(html, "Resolved within 15 min")) == ["1"]


def test_pinned_stretches_ranked_by_gmv_per_minute_and_by_conversion():
    t0 = 1_700_000_000
    segments = [  # (product, minutes, clickers, orders, gmv)
        {"product_id": "a", "start": t0, "end": t0 + 600, "entries": 50, "clickers": 40, "orders": 4, "gmv": 3000, "gmv_all": 3100},
        {"product_id": "b", "start": t0 + 600, "end": t0 + 720, "entries": 9, "clickers": 10, "orders": 5, "gmv": 1000, "gmv_all": 1000},
        {"product_id": "a", "start": t0 + 720, "end": t0 + 1020, "entries": 20, "clickers": 0, "orders": 0, "gmv": 0, "gmv_all": 80},
    ]
    [table] = [t for t in summary_tables({"totals": {}, "segments": segments}) if t.name == "segments"]
    columns = [en for _, en, _ in table.columns]
    rows = [dict(zip(columns, r)) for r in table.rows]
    # GMV per minute: b 1000/2 = 500, a 3000/10 = 300, a again 0.
    assert [(r["Product"], r["GMV per minute"]) for r in rows] == [("b", 500), ("a", 300), ("a", 0)]
    assert [r["Orders per clicker"] for r in rows] == [0.5, 0.1, None]
    assert [r["Rank by orders per clicker"] for r in rows] == [1, 2, 3]


def test_options_of_a_timeline_file_with_a_recorded_show(recorded_dir, tmp_path):
    result = CliRunner().invoke(cli, ["review", "room-x", "--room", "room-x", "--data-dir", str(recorded_dir),
                                      "--out", str(tmp_path / "r.html")])
    assert result.exit_code == 2 and "--room, --show and --shows go with a timeline file" in result.output
    assert result.output.strip().count("\n") == 0


@pytest.fixture
def recorded_dir(tmp_path):
    from tests.fixtures.browser import SyntheticShow

    show = SyntheticShow(rooms=("room-x",))
    store = RecordingStore(tmp_path / "data")
    for i in range(30):
        store.write(snapshots=show.step(show.start + i, lateness=0)["final"])
    store.close()
    return tmp_path / "data"
