"""Post-show review: the report a team reads after a show, from the recording or a replay timeline."""

import json
import re
import subprocess
import sys

import orjson
import pytest
from click.testing import CliRunner

from livemon.cli import cli
from livemon.recording.review import build_review, kpis, worst_minutes
from livemon.recording.store import RecordingStore
from tests.fixtures.browser import SyntheticShow


def record_show(store, show, seconds=600, outage_at=300, recover_at=400, room="room-snacks"):
    for i in range(seconds):
        ts = show.start + i
        if i == outage_at:
            store.write(records=show.outage(room, "cdn-a", ts))
        if i == recover_at:
            store.write(records=show.recover(room, ts))
        store.write(snapshots=show.step(ts, lateness=0)["final"])


@pytest.fixture
def recorded(tmp_path):
    store = RecordingStore(tmp_path / "data")
    record_show(store, SyntheticShow(rooms=("room-snacks", "room-beauty")))
    other = SyntheticShow(rooms=("room-snacks",), start=1_700_100_000.0, seed=3)
    other.snapshot = lambda room, ts, base=other.snapshot: {**base(room, ts), "show": {"id": "next-day", "start": other.start}}
    record_show(store, other, outage_at=10_000, recover_at=10_000)      # a calm show to compare with
    yield store
    store.close()


def test_kpis_of_a_recorded_show(recorded):
    timeline = recorded.timeline("room-snacks.evening")
    records = recorded.records("room-snacks.evening")
    figures = kpis(timeline, records)
    online = [s["metrics"]["online"] for s in timeline]
    assert figures["peak_online"] == max(online)
    assert figures["avg_online"] == pytest.approx(sum(online) / len(online))
    assert figures["gmv_total"] == timeline[-1]["metrics"]["gmv_total"]
    # Entries are counted once: ten non-overlapping 60 s windows in a 600 s show.
    assert figures["entries"] == sum(s["metrics"]["entries"] for s in timeline[::-1][::60])
    assert figures["gpm"] == pytest.approx(figures["gmv_total"] * 1000 / figures["entries"])
    assert figures["alerts_fired"] == 1 and figures["failovers"] == 1
    assert 0 < figures["stall_ratio"] < 0.2 and 0 < figures["retention_60s"] < 1


def test_worst_minutes_point_at_the_outage_and_say_what_happened(recorded):
    timeline = recorded.timeline("room-snacks.evening")
    rows = worst_minutes(timeline, recorded.records("room-snacks.evening"))
    assert rows, "the outage minutes must stand out"
    outage = [r for r in rows if 5 <= r["minute"] <= 6]
    assert outage and "stall" in outage[0]["why"]
    happened = " ".join(e for r in rows for e in r["events"])
    assert "alert cdn_stall_ratio_high firing on cdn-a" in happened and "failover taken cdn-a → cdn-b" in happened


def test_report_is_self_contained_and_marks_alerts_and_failovers(recorded):
    html, csp = build_review(recorded, "room-snacks.evening")
    # No resource from anywhere: no src/href to another origin, the chart library is inline.
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html)
    assert "uPlot" in html and "<link" not in html and "<script src" not in html
    data = json.loads(re.search(r'<script type="application/json" id="review-data">(.*?)</script>', html, re.S).group(1))
    [show] = data["shows"]
    assert len(show["ts"]) == 600 and set(show["cdn"]) == {"cdn-a", "cdn-b"}
    kinds = sorted(m["kind"] for m in show["markers"])
    assert kinds == ["alert", "alert", "failover"]            # fired, resolved, failover
    for needle in ("Peak online", "Avg watch time", "Retention 60 s", "Interaction", "Product CTR",
                   "Conversion", "GMV", "GPM", "Stall ratio", "Worst minutes"):
        assert needle in html
    assert "'unsafe-inline'" not in csp and "sha256-" in csp


def test_user_text_in_the_report_is_escaped(tmp_path):
    store = RecordingStore(tmp_path)
    show = SyntheticShow(rooms=("room-x",))
    show.snapshot = lambda room, ts, base=show.snapshot: {**base(room, ts), "show": {"id": "s1", "start": show.start, "title": "</script><img src=x onerror=alert(1)>"}}
    for i in range(30):
        store.write(snapshots=show.step(show.start + i)["final"])
    store.write(records=[{"kind": "alert", "rule": "r", "room_id": "room-x", "state": "firing", "ts": show.start + 3,
                          "summary": "<b>bold</b> & </script>"}])
    html, _ = build_review(store, "room-x")
    assert "<img src=x" not in html and "<b>bold" not in html
    assert "&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt;" in html
    assert html.count("</script>") == 2      # the data and the code elements, nothing closed early


def test_comparison_puts_two_shows_side_by_side(recorded):
    html, _ = build_review(recorded, "room-snacks.evening", "room-snacks.next-day")
    data = json.loads(re.search(r'id="review-data">(.*?)</script>', html, re.S).group(1))
    assert [s["key"] for s in data["shows"]] == ["room-snacks.evening", "room-snacks.next-day"]
    table = re.search(r'<table class="kpis">.*?</table>', html, re.S).group(0)
    assert '<span class="l-zh">差值</span><span class="l-en">Difference</span>' in table
    # The calm show had no alert: one fewer alert fired reads as better.
    row = re.search(r'<tr><th><span class="l-zh">触发告警</span><span class="l-en">Alerts fired</span></th>(.*?)</tr>',
                    table).group(1)
    assert re.findall(r"<td[^>]*>(.*?)</td>", row) == ["1", "0", "-1 (-100%)"]
    assert 'class="better">-1' in row


def test_cli_lists_shows_and_writes_the_report(recorded, tmp_path):
    runner = CliRunner()
    data_dir = str(recorded.dir)
    listed = runner.invoke(cli, ["shows", "--data-dir", data_dir])
    assert listed.exit_code == 0, listed.output
    assert "room-snacks.evening" in listed.output and "room-beauty.evening" in listed.output
    out = tmp_path / "r.html"
    made = runner.invoke(cli, ["review", "room-snacks.evening", "--compare", "room-snacks.next-day",
                               "--out", str(out), "--data-dir", data_dir])
    assert made.exit_code == 0, made.output
    assert "room-snacks.next-day" in out.read_text()
    missing = runner.invoke(cli, ["review", "no-such-show", "--data-dir", data_dir])
    assert missing.exit_code == 2 and "no recorded show 'no-such-show'" in missing.output
    assert "Traceback" not in missing.output


def test_review_of_a_timeline_file(tmp_path):
    # The SPEC replay-line format, as `livemon replay` writes it.
    show = SyntheticShow(rooms=("room-t",), show_ids=False)
    timeline = tmp_path / "timeline.jsonl"
    with timeline.open("wb") as out:
        for i in range(180):
            snap = show.snapshot("room-t", show.start + i)
            out.write(orjson.dumps(snap, option=orjson.OPT_APPEND_NEWLINE))
    report = tmp_path / "t.html"
    result = CliRunner().invoke(cli, ["review", str(timeline), "--out", str(report)])
    assert result.exit_code == 0, result.output
    assert "Peak online" in report.read_text() and "room-t" in report.read_text()


def test_review_of_a_timeline_computed_by_livemon_replay(tmp_path):
    events = tmp_path / "events.jsonl"
    start = 1_700_000_000
    lines = [{"type": "show", "room_id": "room-r", "action": "start", "show_id": "promo", "title": "Promo night", "ts": start}]
    for second in range(240):
        ts = start + second
        for user in range(second % 40 + 5):
            lines.append({"type": "view", "room_id": "room-r", "user_id": f"u{user}", "action": "heartbeat" if second else "enter", "ts": ts})
        lines.append({"type": "health", "room_id": "room-r", "user_id": "u1", "cdn": "cdn-a", "play_ms": 1000,
                      "stall_ms": 300 if 100 <= second < 130 else 0, "stall_count": 1 if 100 <= second < 130 else 0,
                      "latency_ms": 2000, "ts": ts})
        if second % 20 == 0:
            lines.append({"type": "order", "room_id": "room-r", "user_id": "u2", "order_id": f"o{second}", "product_id": "p1",
                          "amount": 99.0, "status": "paid", "ts": ts})
    events.write_text("".join(json.dumps(l) + "\n" for l in lines))
    timeline = tmp_path / "timeline.jsonl"
    replayed = subprocess.run([sys.executable, "-m", "livemon", "replay", str(events), "--out", str(timeline)],
                              capture_output=True, text=True, timeout=120)
    assert replayed.returncode == 0, replayed.stderr[-2000:]
    report = tmp_path / "replay.html"
    result = CliRunner().invoke(cli, ["review", str(timeline), "--out", str(report)])
    assert result.exit_code == 0, result.output
    html = report.read_text()
    data = json.loads(re.search(r'id="review-data">(.*?)</script>', html, re.S).group(1))
    [show] = data["shows"]
    assert show["key"] == "room-r.promo" and show["title"] == "Promo night"
    assert max(v for v in show["series"]["gmv_total"] if v is not None) == pytest.approx(99.0 * 12)
    assert max(v for v in show["series"]["stall_ratio"] if v is not None) > 0.1


def test_report_opens_in_chinese_with_both_languages_and_amounts_in_wan(recorded, monkeypatch):
    html, _ = build_review(recorded, "room-snacks.evening")
    assert 'data-lang="zh"' in html and 'lang="zh-CN"' in html
    assert "峰值在线人数" in html and "Peak online" in html and "最差的几分钟" in html
    assert "html[data-lang=zh] .l-en" in html          # the other language is hidden, not missing
    assert re.search(r'<span class="l-zh">¥[0-9.,]+万</span><span class="l-en">¥[0-9.,]+K</span>', html)
    assert re.search(r'<time data-ts="[0-9.]+" data-part="dt">', html)   # the reader's script shows local times
    assert 'data-lang="en"' in build_review(recorded, "room-snacks.evening", lang="en")[0]
    monkeypatch.setenv("LIVEMON_LANG", "en")
    assert 'data-lang="en"' in build_review(recorded, "room-snacks.evening")[0]


def test_amounts_in_each_language():
    from livemon.recording.review import money

    assert [money(v) for v in (1285, 128000, 1.2e8, -52000)] == ["¥1,285", "¥12.8万", "¥1.2亿", "-¥5.2万"]
    assert [money(v, "en") for v in (1285, 128000, 1.2e6, 3.4e9)] == ["¥1,285", "¥128K", "¥1.2M", "¥3.4B"]
