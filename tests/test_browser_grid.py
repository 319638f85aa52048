"""The big-screen grid and the languages in headless Chromium: Chinese by default with a remembered
English switch, 万/亿 amounts, tiles updated in place, sort, filter and search, the banner of
critical alerts, targets set by an operator, and the failover confirmation."""

import json

import requests

from tests.fixtures.browser import TOKEN, screenshot
from tests.test_browser_control_room import Feeder, no_problems, show  # noqa: F401 - the fixture


def tile_count(page, n):
    page.wait_for_function(f"() => document.querySelectorAll('.tile').length === {n}")


def test_chinese_by_default_and_the_english_switch_is_remembered(page, control_room, show):
    page.goto(control_room.url + "/")
    tile_count(page, 4)
    assert page.inner_text("h1") == "直播间"
    assert page.evaluate("document.documentElement.lang") == "zh-CN"
    assert "在线" in page.inner_text(".tile .online")
    assert "本场成交额" in page.inner_text(".tiles")          # a catalogue name, in Chinese
    page.click("#lang")
    page.wait_for_function("() => document.querySelector('h1').textContent === 'Live rooms'")
    tile_count(page, 4)
    assert "GMV (show)" in page.inner_text(".tiles")
    page.reload()
    page.wait_for_function("() => document.querySelector('h1').textContent === 'Live rooms'")
    page.goto(control_room.url + "/room/room-snacks")        # every page follows the choice
    page.wait_for_selector(".kpi")
    assert page.locator(".kpi").first.inner_text().startswith("Online")
    page.click("#lang")
    page.wait_for_function("() => document.querySelector('.back').textContent === '← 直播间'")
    no_problems(page)


def test_amounts_in_wan_and_yi_and_in_english_units(page, control_room, show):
    page.goto(control_room.url + "/")
    tile_count(page, 4)
    values = [128000, 1.2e8, 1285, 99999, -52000, None]
    assert page.evaluate("(vs) => vs.map((v) => LM.money(v))", values) == \
        ["¥12.8万", "¥1.2亿", "¥1,285", "¥10万", "-¥5.2万", "–"]
    page.evaluate("() => localStorage.setItem('livemon-lang', 'en')")
    page.reload()
    tile_count(page, 4)
    assert page.evaluate("(vs) => vs.map((v) => LM.money(v))", [128000, 1.2e6, 1285, 3.4e9]) == \
        ["¥128K", "¥1.2M", "¥1,285", "¥3.4B"]
    no_problems(page)


def test_tiles_are_updated_in_place(page, control_room, show):
    page.goto(control_room.url + "/")
    tile_count(page, 4)
    page.evaluate("""() => { window.held = document.querySelector('.tile[data-room="room-phones"]');
                             window.heldText = window.held.querySelector('.online .value').textContent;
                             window.heldFrames = +document.body.dataset.frames; }""")
    page.wait_for_function("() => +document.body.dataset.frames >= window.heldFrames + 5", timeout=10_000)
    page.wait_for_function("""() => window.held.querySelector('.online .value').textContent !== window.heldText""",
                           timeout=10_000)
    assert page.evaluate("""() => window.held === document.querySelector('.tile[data-room="room-phones"]')
                                  && window.held.isConnected""")
    no_problems(page)


def test_sort_filter_and_search(page, control_room, show):
    page.goto(control_room.url + "/")
    tile_count(page, 4)
    page.select_option("#sort", "room_id")
    page.click("#dir")                           # ascending
    order = json.dumps(sorted(show.show.rooms), separators=(",", ":"))
    page.wait_for_function(f"() => JSON.stringify([...document.querySelectorAll('.tile')].map((t) => t.dataset.room))"
                           f" === {json.dumps(order)}")
    page.select_option("#sort", "stall_ratio")
    page.wait_for_timeout(600)
    page.fill("#q", "SNA")                       # search: id or title, any case
    tile_count(page, 1)
    assert page.get_attribute(".tile", "data-room") == "room-snacks"
    page.fill("#q", "")
    tile_count(page, 4)
    control_room.feed_alert(show.show.outage("room-phones", "cdn-a", show.t)[0])
    page.select_option("#state", "critical")
    tile_count(page, 1)
    assert page.get_attribute(".tile", "data-room") == "room-phones"
    page.reload()                                # the view is remembered
    tile_count(page, 1)
    assert page.input_value("#sort") == "stall_ratio"
    # Through the API: a page of the view, and the whole matched count.
    grid = requests.get(control_room.url + "/api/rooms?sort=online&desc=0&limit=2&offset=1", timeout=5).json()
    online = [t["metrics"]["online"] for t in grid["rooms"]]
    assert len(online) == 2 and online == sorted(online) and grid["matched"] == 4
    assert requests.get(control_room.url + "/api/rooms?sort=nope", timeout=5).status_code == 400
    no_problems(page)


def test_stall_is_coloured_by_the_rule_threshold_with_a_symbol(page, control_room, show):
    thresholds = requests.get(control_room.url + "/api/thresholds", timeout=5).json()["lines"]
    assert thresholds["stall_ratio"]["crit"] == 0.05 and thresholds["stall_ratio"]["warn"] == 0.03
    # cdn-a degrades while it still serves most of the room (no failover): its stall ratio is 8-14%,
    # steadily above the 5% line, so every render of the cell is "bad".
    show.show.broken["room-beauty"] = "cdn-a"
    page.goto(control_room.url + "/")
    cell = '.tile[data-room="room-beauty"] .metric[data-metric="stall_ratio"]'
    page.wait_for_selector(cell + '[data-level="bad"]', timeout=10_000)
    assert "✖" in page.inner_text(cell)               # not colour alone
    assert page.get_attribute('.tile[data-room="room-snacks"] .metric[data-metric="stall_ratio"]', "data-level") == "ok"
    no_problems(page)


def test_banner_for_a_firing_critical_alert(page, control_room, show):
    page.goto(control_room.url + "/")
    tile_count(page, 4)
    assert page.locator("#banner.hidden").count() == 1 and not page.is_visible("#banner")
    for rec in show.show.outage("room-snacks", "cdn-a", show.t):
        control_room.feed_alert(rec)
    page.wait_for_selector("#banner:not(.hidden)")
    assert "room-snacks · cdn_stall_ratio_high (cdn-a)" in page.inner_text("#banner")
    assert "1 条严重告警" in page.inner_text("#banner")
    screenshot(page, "grid-banner")
    # Sound is off until switched on, and the choice is remembered.
    assert page.get_attribute("#sound", "aria-pressed") == "false"
    page.click("#sound")
    page.reload()
    page.wait_for_selector('#sound[aria-pressed="true"]')
    # Acknowledged: it leaves the banner.
    control_room.feed_alert({"kind": "operator", "action": "ack", "room_id": "room-snacks",
                             "rule": "cdn_stall_ratio_high", "cdn": "cdn-a", "by": "web", "ts": show.t})
    page.wait_for_selector("#banner", state="hidden")
    no_problems(page)


def test_targets_through_the_api_with_the_token_and_on_the_tile(page, control_room, show):
    url = control_room.url + "/api/targets"
    body = {"room_id": "room-beauty", "gmv": 100000, "online": 5000, "conversion": 0.5}
    assert requests.post(url, json=body, timeout=5).status_code == 401
    assert requests.post(url, json=body, headers={"Authorization": "Bearer wrong-" + TOKEN}, timeout=5).status_code == 401
    auth = {"Authorization": "Bearer " + TOKEN}
    bad = requests.post(url, json={**body, "conversion": 3}, headers=auth, timeout=5)
    assert bad.status_code == 400 and "conversion" in bad.json()["error"]
    assert requests.post(url, json={"room_id": "room-beauty", "nope": 1}, headers=auth, timeout=5).status_code == 400
    ok = requests.post(url, json=body, headers=auth, timeout=5)
    assert ok.status_code == 200 and ok.json()["target"] == {"gmv": 100000, "online": 5000, "conversion": 0.5}
    assert requests.get(url, timeout=5).json()["rooms"]["room-beauty"]["gmv"] == 100000
    page.goto(control_room.url + "/")
    tile = '.tile[data-room="room-beauty"]'
    page.wait_for_selector(tile + " .progress:not(.hidden)")
    text = page.inner_text(tile + " .progress")
    assert "目标 ¥10万" in text and "完成" in text
    assert page.get_attribute(tile + " .online", "data-level") == "bad"      # about 1,600 online of 5,000
    assert page.get_attribute(tile + ' .metric[data-metric="conversion_rate"]', "data-level") == "bad"
    screenshot(page, "grid-targets")
    # A show's target wins over the room's; null removes one.
    requests.post(url, json={"room_id": "room-beauty", "show": "evening", "online": 100}, headers=auth, timeout=5)
    page.wait_for_selector(tile + ' .online[data-level="ok"]')
    requests.post(url, json={"room_id": "room-beauty", "gmv": None}, headers=auth, timeout=5)
    page.wait_for_selector(tile + " .progress.hidden", state="attached")
    no_problems(page)


def test_failover_asks_for_confirmation(page, control_room, show):
    page.goto(control_room.url + "/room/room-snacks")
    page.wait_for_function("() => document.querySelectorAll('#fo-to option').length >= 2")
    page.fill("#token", TOKEN)
    page.dispatch_event("#token", "change")
    page.select_option("#fo-from", "cdn-a")
    page.select_option("#fo-to", "cdn-b")
    page.click("#fo-go")
    page.wait_for_selector("#fo-dialog[open]")
    assert "cdn-a" in page.inner_text("#fo-question") and "cdn-b" in page.inner_text("#fo-question")
    screenshot(page, "failover-confirm")
    page.click("#fo-abort")                       # cancelled: nothing sent
    page.wait_for_selector("#fo-dialog:not([open])", state="attached")
    assert control_room.published == []
    page.click("#fo-go")
    page.click("#fo-confirm")
    page.wait_for_selector("#action-status.ok")
    [(topic, key, value)] = control_room.published
    assert json.loads(value)["action"] == "failover" and json.loads(value)["to_cdn"] == "cdn-b"
    no_problems(page)


def test_acknowledge_button_stays_the_same_node_while_frames_stream(page, control_room, show):
    for rec in show.show.outage("room-snacks", "cdn-a", show.t):
        control_room.feed_alert(rec)
    page.goto(control_room.url + "/room/room-snacks")
    page.wait_for_selector("#active-alerts button.ack")
    page.evaluate("() => { window.ackButton = document.querySelector('#active-alerts button.ack'); "
                  "window.points = +document.body.dataset.points; }")
    # Frames with new points and a new alert record come in; the button is not replaced.
    control_room.feed_alert({**show.show.outage("room-snacks", "cdn-a", show.t)[0], "value": 0.2})
    page.wait_for_function("() => +document.body.dataset.points >= window.points + 4", timeout=10_000)
    assert page.evaluate("() => window.ackButton === document.querySelector('#active-alerts button.ack') "
                         "&& window.ackButton.isConnected")
    no_problems(page)
