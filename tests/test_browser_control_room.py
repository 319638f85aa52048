"""The control room in headless Chromium: what a field controller sees and does during a show.

The hub is fed in-process with step records shaped like the workers' (see SyntheticShow); the test
against a running demo is in test_browser_demo.py.
"""

import json
import threading
import time

import pytest

from tests.fixtures.browser import TOKEN, SyntheticShow, screenshot


class Feeder:
    """Plays a show into the control room in the background: one step of show time per tick."""

    def __init__(self, room, show, tick=0.25):
        self.room, self.show, self.tick = room, show, tick
        self.t = show.start
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def steps(self, n):
        for _ in range(n):
            self.room.feed_step(self.show.step(self.t))
            self.t += 1

    def run(self):
        while not self.stop.wait(self.tick):
            self.steps(1)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(5)


@pytest.fixture
def show(control_room):
    show = SyntheticShow()
    feeder = Feeder(control_room, show)
    feeder.steps(120)
    with feeder:
        yield feeder


# Conditions are written as functions: a bare expression would be evaluated with eval(), which the
# page's CSP forbids (as it should).


def english(page):
    """Switch the page to English before it loads, as the language switch would remember it."""
    page.add_init_script("localStorage.setItem('livemon-lang', 'en')")


def no_problems(page, expected=()):
    problems = [p for p in page.problems if not any(e in p for e in expected)]
    assert problems == [], problems   # no script error, no CSP violation


def test_grid_fills_with_live_rooms_sorted_by_online(page, control_room, show):
    page.goto(control_room.url + "/")
    page.wait_for_function("() => document.querySelectorAll('.tile').length === 4")
    names = page.locator(".tile .name").all_inner_texts()
    assert set(names) == set(show.show.rooms)
    online = [int(v.replace(",", "")) for v in page.locator(".tile .online .value").all_inner_texts()]
    assert online == sorted(online, reverse=True)
    # A room that comes on air appears without a reload.
    show.show.rooms.append("room-new")
    show.show.size["room-new"] = 50
    show.show.gmv_total["room-new"] = 0.0
    show.show.serving["room-new"] = "cdn-a"
    page.wait_for_selector('.tile[data-room="room-new"]', timeout=5000)
    page.wait_for_function("() => document.querySelector('.tile canvas').width > 0")
    screenshot(page, "grid")
    no_problems(page)


def test_room_view_charts_update(page, control_room, show):
    page.goto(control_room.url + "/room/room-snacks")
    page.wait_for_selector("#c-online canvas")
    assert page.locator(".chart canvas").count() >= 5     # online, retention, GMV, stall, latency
    before = int(page.get_attribute("body", "data-points"))
    page.wait_for_function(f"() => +document.body.dataset.points >= {before + 4}", timeout=5000)
    first = page.locator("#c-online canvas").screenshot()
    page.wait_for_function(f"() => +document.body.dataset.points >= {before + 8}", timeout=5000)
    assert page.locator("#c-online canvas").screenshot() != first   # the chart moved
    # No show summary fed here: the funnel waits for one (its figures come from the engine only).
    assert page.locator(".funnel .step").count() == 0 and page.inner_text("#funnel-note") == "等待本场汇总…"
    assert page.locator(".kpi").first.inner_text().startswith("在线人数")   # Chinese by default
    screenshot(page, "room")
    no_problems(page)


def test_cdn_outage_shows_as_alert_and_failover(page, control_room, show):
    english(page)
    for rec in show.show.outage("room-snacks", "cdn-a", show.t):
        control_room.feed_alert(rec)
    page.goto(control_room.url + "/")
    page.wait_for_selector('.tile[data-room="room-snacks"][data-alert="critical"]')
    assert page.locator('.tile[data-room="room-beauty"]').get_attribute("data-alert") == "ok"
    screenshot(page, "grid-outage")
    page.click('.tile[data-room="room-snacks"]')
    page.wait_for_selector("#active-alerts li.firing")
    assert "cdn_stall_ratio_high on cdn-a" in page.inner_text("#active-alerts")
    assert "taken cdn-a → cdn-b" in page.inner_text("#failovers")
    assert page.inner_text("#room-state").lower() == "critical"
    page.wait_for_timeout(2500)          # a few seconds of the degraded CDN on the stall chart
    screenshot(page, "room-outage")
    for rec in show.show.recover("room-snacks", show.t):
        control_room.feed_alert(rec)
    page.wait_for_function("() => document.getElementById('room-state').textContent === 'ok'", timeout=5000)
    assert "resolved" in page.inner_text("#alert-feed")
    no_problems(page)


def test_control_action_is_refused_without_the_token_and_works_with_it(page, control_room, show):
    english(page)
    for rec in show.show.outage("room-snacks", "cdn-a", show.t):
        control_room.feed_alert(rec)
    page.goto(control_room.url + "/room/room-snacks")
    page.wait_for_selector("#active-alerts button.ack")
    page.click("#active-alerts button.ack")
    page.wait_for_selector("#action-status.error")
    assert "Refused" in page.inner_text("#action-status")
    assert control_room.published == []
    screenshot(page, "action-refused")

    page.fill("#token", TOKEN)
    page.dispatch_event("#token", "change")
    page.click("#active-alerts button.ack")
    page.wait_for_selector("#action-status.ok")
    page.select_option("#fo-from", "cdn-b")
    page.select_option("#fo-to", "cdn-a")
    page.click("#fo-go")
    page.click("#fo-confirm")
    page.wait_for_function("() => document.getElementById('action-status').textContent.includes('failover')")
    sent = [json.loads(value) for topic, key, value in control_room.published]
    assert [(s["action"], s["rule"], s["cdn"], s["to_cdn"]) for s in sent] == [
        ("ack", "cdn_stall_ratio_high", "cdn-a", None), ("failover", None, "cdn-b", "cdn-a")]
    assert all(s["room_id"] == "room-snacks" for s in sent)
    page.wait_for_selector("#active-alerts :text('acknowledged by operator')")   # the shared token's name
    assert TOKEN not in page.content()       # the token never lands in the page
    screenshot(page, "action-sent")
    no_problems(page, expected=["401 (Unauthorized)"])   # the refused action


def test_user_text_is_shown_as_text(page, control_room, show):
    evil = '<img src=x id=pwned onerror="document.title=1">'
    base = show.show.snapshot
    show.show.snapshot = lambda room, ts: {**base(room, ts), "show": {"id": "evening", "start": show.show.start, "title": evil}}
    control_room.feed_alert({"kind": "alert", "rule": "viewer_drop", "room_id": "room-snacks", "state": "firing",
                             "severity": "warning", "ts": show.t, "summary": evil})
    page.goto(control_room.url + "/")
    page.wait_for_selector(".tile .show-title")
    assert evil in page.inner_text(".tile .show-title")
    page.goto(control_room.url + "/room/room-snacks")
    page.wait_for_selector("#active-alerts li")
    page.wait_for_function("() => document.getElementById('room-summary').textContent.includes('<img')")
    assert evil in page.inner_text("#active-alerts")
    assert page.locator("#pwned").count() == 0
    no_problems(page)


def test_review_page_renders_its_charts(page, control_room, show):
    english(page)
    for rec in show.show.outage("room-snacks", "cdn-a", show.show.start + 60):
        control_room.feed_alert(rec)
    show.steps(120)
    page.goto(control_room.url + "/review/")
    page.wait_for_selector("#shows tr")
    assert page.locator("#shows tr").count() == 4
    page.click("a:text('room-snacks.evening')")
    page.wait_for_function("() => +document.body.dataset.charts >= 6")
    assert "Worst minutes" in page.content()
    assert page.locator("figure.chart").count() == 6
    screenshot(page, "review")
    no_problems(page)
    page.goto(control_room.url + "/review/")
    page.wait_for_selector("#shows tr")
    page.check('input[value="room-snacks.evening"]')
    page.check('input[value="room-beauty.evening"]')
    page.click("#compare")
    page.wait_for_function("() => +document.body.dataset.charts >= 8")
    assert "Difference" in page.inner_text("table.kpis")
    screenshot(page, "review-compare")
    no_problems(page)


def test_a_named_operator_acknowledges_while_updates_stream_and_alerts_are_marked_on_the_charts(
        page, tmp_path, monkeypatch):
    from livemon.web import operators
    from tests.fixtures.browser import ControlRoomServer

    lin = operators.new_token("lin")
    operators.write_file(tmp_path / "operators.toml", {"lin": operators.hash_secret(lin.partition(".")[2])})
    monkeypatch.setenv("LIVEMON_OPERATORS_FILE", str(tmp_path / "operators.toml"))
    room = ControlRoomServer(tmp_path / "data")
    try:
        feeder = Feeder(room, SyntheticShow())
        feeder.steps(60)
        with feeder:
            for rec in feeder.show.outage("room-snacks", "cdn-a", feeder.t - 30):
                room.feed_alert(rec)
            page.goto(room.url + "/room/room-snacks")
            page.wait_for_selector("#active-alerts button.ack")
            # The alert and the failover on every chart, with their labels.
            page.wait_for_function("""() => { const m = JSON.parse(document.querySelector('#c-online .uplot').dataset.marks || '[]');
                                              return m.includes('告警 cdn_stall_ratio_high 于 cdn-a') && m.includes('切换 cdn-a→cdn-b'); }""")
            page.fill("#token", lin)
            page.dispatch_event("#token", "change")
            frames = int(page.get_attribute("body", "data-points"))
            page.wait_for_function(f"() => +document.body.dataset.points > {frames}")   # frames keep coming
            page.click("#active-alerts button.ack")
            page.wait_for_selector("#action-status.ok")
            page.wait_for_selector("#active-alerts :text('已确认,确认人 lin')")
            assert "操作人 lin" in page.inner_text("#operator")
            assert "null" not in page.inner_text("#active-alerts")     # absent fields leave no trace
            sent = [json.loads(value) for _, _, value in room.published]
            assert [(s["action"], s["rule"], s["by"]) for s in sent] == [("ack", "cdn_stall_ratio_high", "lin")]
            assert lin not in page.content()
            screenshot(page, "room-named-ack")
            # Resolved: a dashed line of its own.
            for rec in feeder.show.recover("room-snacks", feeder.t):
                room.feed_alert(rec)
            page.wait_for_function("""() => JSON.parse(document.querySelector('#c-online .uplot').dataset.marks || '[]')
                                              .includes('恢复 cdn_stall_ratio_high 于 cdn-a')""")
        no_problems(page)
    finally:
        room.close()
