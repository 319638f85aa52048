"""The room page of a real worker, fed by the simulator (two rooms) and by a show of our own
produced to the broker, in headless Chromium: the show's funnel equals the show summary the API
serves, a pin shows on the tile and on the room page within two steps and as a band on the charts,
the failover confirmation (cancel sends nothing; confirm sends, and the action names the operator),
and a named operator's token.

The produced show (room-live; T = the wall clock when the module starts):
- start at T-80; u0..u29 enter at T-79..T-65 (u0..u11 `paid`, the rest `organic`), and beat every
  10 s from then on (so every one stays present);
- u0..u11 click sku-1 at T-30; u0..u5 order it (created) at T-20, u0..u3 pay 199 each;
- health beacons on cdn-a and cdn-b every second from T-10.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time

import pytest
import requests
from kafka import KafkaProducer

from livemon import processes
from livemon.broker import EmbeddedBroker
from livemon.topics import TOPIC_OF_TYPE
from livemon.web import operators as ops
from tests.fixtures.browser import TOKEN, screenshot

ROOM = "room-live"
STEP = 1.0
USERS = [f"u{i}" for i in range(30)]


class LiveShow:
    """Our room's events, produced to the broker as a client SDK would (key = room id)."""

    def __init__(self, bootstrap: str):
        self.producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.paused = threading.Event()
        self.t0 = time.time()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def send(self, kind: str, ts: float, user: str | None = None, **fields) -> None:
        event = {"type": kind, "room_id": ROOM, "ts": ts, **fields}
        if user is not None:
            event["user_id"] = user
        with self.lock:
            self.producer.send(TOPIC_OF_TYPE[kind], json.dumps(event).encode(), key=ROOM.encode())

    def flush(self):
        with self.lock:
            self.producer.flush()

    @contextlib.contextmanager
    def phase(self, worker, **counts):
        """Events sent in the block, then waited for until the worker has ingested them."""
        before = ingested(worker)
        yield
        self.flush()
        deadline = time.monotonic() + 30
        while any(ingested(worker).get(kind, 0) < before.get(kind, 0) + n for kind, n in counts.items()):
            assert time.monotonic() < deadline, (counts, before, ingested(worker))
            time.sleep(0.2)

    @contextlib.contextmanager
    def quiet(self):
        """No beacons from the room meanwhile: its newest event is the one sent in the block."""
        self.paused.set()
        try:
            yield
        finally:
            self.paused.clear()

    def begin(self, worker):
        """The show so far, phase by phase in time order, each produced once the worker has taken
        the one before (events of several topics are read in any order: a phase sent all at once
        could put a later event's time ahead of an earlier one's by more than the lateness)."""
        t = self.t0
        with self.phase(worker, view=30, show=1):
            self.send("show", t - 80, action="start", show_id="live-1", title="直播测试")
            for i, user in enumerate(USERS):
                self.send("view", t - 79 + i // 2, user, action="enter", source="paid" if i < 12 else "organic",
                          device="mobile")
        with self.phase(worker, view=30):
            for user in USERS:
                self.send("view", t - 40, user, action="heartbeat")
        with self.phase(worker, click=12):
            for user in USERS[:12]:
                self.send("click", t - 30, user, target="product", product_id="sku-1")
        with self.phase(worker, order=10):
            for i, user in enumerate(USERS[:6]):
                self.send("order", t - 20, user, order_id=f"o-{i}", product_id="sku-1", amount=199, status="created")
            for i, user in enumerate(USERS[:4]):
                self.send("order", t - 19, user, order_id=f"o-{i}", product_id="sku-1", amount=199, status="paid")
        self.thread.start()

    def run(self):
        beat = 0
        while not self.stop.wait(STEP):
            if self.paused.is_set():
                continue
            now = time.time()
            for n, cdn in enumerate(("cdn-a", "cdn-b")):
                self.send("health", now, f"u{n}", cdn=cdn, play_ms=1000, stall_ms=0, stall_count=0, latency_ms=1800)
            for user in USERS[beat % 10::10]:
                self.send("view", now, user, action="heartbeat")
            beat += 1
            self.flush()

    def close(self):
        self.stop.set()
        self.thread.join(5)
        self.producer.close()


def ingested(worker) -> dict[str, float]:
    from prometheus_client.parser import text_string_to_metric_families

    status, body = worker.get("/metrics")
    assert status == 200
    return {sample.labels.get("type"): sample.value for family in text_string_to_metric_families(body.decode())
            for sample in family.samples if sample.name == "livemon_events_total"}


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("room-live")
    lin = ops.new_token("lin")
    ops.write_file(tmp / "operators.toml", {"lin": ops.hash_secret(lin.partition(".")[2])})
    broker = EmbeddedBroker(partitions=2).start()
    worker = simulator = show = None
    try:
        worker = processes.WorkerProcess(
            broker.bootstrap, ["--group", "room-live", "--recording-dir", str(tmp / "rec"), "--token", TOKEN,
                               "--summary-interval", "1", "--step", str(STEP)],
            str(tmp / "worker.log"), env={**os.environ, "LIVEMON_OPERATORS_FILE": str(tmp / "operators.toml")})
        worker.wait_healthy(90)
        show = LiveShow(broker.bootstrap)
        show.begin(worker)
        simulator = subprocess.Popen(
            [sys.executable, "-m", "livemon", "simulate", "--broker", broker.bootstrap, "--rooms", "2", "--rate", "150",
             "--duration", "900", "--seed", "5", "--quiet"],
            stdout=subprocess.DEVNULL, stderr=open(tmp / "simulate.log", "wb"), start_new_session=True)
        worker.lin, worker.show = lin, show
        deadline = time.monotonic() + 60
        while requests.get(worker.url + f"/api/rooms/{ROOM}/summary", timeout=5).status_code != 200:
            assert time.monotonic() < deadline, worker.log_tail()
            time.sleep(0.5)
        yield worker
    finally:
        if show is not None:
            show.close()
        if simulator is not None:
            simulator.terminate()
            simulator.wait(10)
        if worker is not None:
            worker.stop()
        broker.stop()


def no_problems(page, expected=()):
    problems = [p for p in page.problems if not any(e in p for e in expected)]
    assert problems == [], problems


def funnel_on_page(page) -> dict:
    return page.evaluate("""() => Object.fromEntries([...document.querySelectorAll('#c-funnel .step')].map((s) =>
        [s.dataset.stage, [s.querySelector('.name').textContent, s.querySelector('.num').textContent,
                           s.querySelector('.conv').textContent]]))""")


def test_the_funnel_is_the_show_summary(page, live):
    page.goto(live.url + f"/room/{ROOM}")
    page.wait_for_function("() => document.querySelectorAll('#c-funnel .step').length === 5", timeout=20_000)
    # The page and the API read the same summary once both have the newest one (a new one comes
    # every second, and the first ones may predate the orders): compare until they agree on one
    # that has the whole produced show; they must within a few summaries.
    deadline = time.monotonic() + 20
    while True:
        summary = requests.get(live.url + f"/api/rooms/{ROOM}/summary", timeout=5).json()
        shown = funnel_on_page(page)
        if [int(v[1].replace(",", "")) for v in shown.values()] == summary["funnel"] \
                and summary["totals"]["orders"] == 4:
            break
        assert time.monotonic() < deadline, (shown, summary["funnel"])
        page.wait_for_timeout(300)
    assert summary["show_id"] == "live-1" and summary["provisional"] is True
    totals = summary["totals"]
    assert summary["funnel"] == [totals[k] for k in ("viewers", "stayed_60s", "clickers", "ordering", "buyers")]
    # What the produced show says: 30 viewers, all present for over 60 s, 12 clickers, 6 ordering, 4 paying.
    assert summary["funnel"] == [30, 30, 12, 6, 4]
    assert list(shown) == ["viewers", "stayed_60s", "clickers", "ordering", "buyers"]
    assert [v[0] for v in shown.values()] == ["观看人数", "停留 60 秒", "点击商品", "下单", "支付"]
    assert [v[2] for v in shown.values()] == ["", "转化 100%", "转化 40%", "转化 50%", "转化 66.7%"]
    assert "本场汇总" in page.inner_text("#funnel-note")
    screenshot(page, "room-live-funnel")
    # In English: the same figures, named in English.
    page.evaluate("() => localStorage.setItem('livemon-lang', 'en')")
    page.reload()
    page.wait_for_function("() => document.querySelectorAll('#c-funnel .step').length === 5")
    shown = funnel_on_page(page)
    assert [v[0] for v in shown.values()] == ["Viewers", "Stayed 60 s", "Clicked a product", "Ordered", "Paid"]
    assert [v[2] for v in shown.values()][1:] == ["100% of previous", "40% of previous", "50% of previous",
                                                  "66.7% of previous"]
    assert page.locator("#marks-legend .mark").all_inner_texts() == ["Presenting", "Promotion", "Alert", "Resolved",
                                                                     "CDN failover"]
    no_problems(page)


def test_a_pin_shows_on_the_tile_and_the_room_page_within_two_steps(page, live):
    room_page = page.context.new_page()
    room_page.problems = []
    room_page.on("pageerror", lambda error: room_page.problems.append(str(error)))
    page.goto(live.url + "/")
    room_page.goto(live.url + f"/room/{ROOM}")
    page.wait_for_selector(f'.tile[data-room="{ROOM}"]', timeout=20_000)
    room_page.wait_for_function("() => document.querySelector('#c-online') && +document.body.dataset.points > 2")
    # The room's newest event is the pin for a moment: its live instant is the pin's own (a busy
    # machine could otherwise take the pin in one batch with later beacons and show a later instant).
    with live.show.quiet():
        pinned_at = time.time()
        live.show.send("show", pinned_at, action="pin", product_id="sku-9")
        live.show.send("show", pinned_at + 0.001, action="promo_start", promo_id="flash-1", promo_type="seckill",
                       product_id="sku-9")
        live.show.flush()
        # The instant of the first figures showing the pin: event time, not wall time.
        tile_ts = page.wait_for_function(
            f"""() => {{ const t = document.querySelector('.tile[data-room="{ROOM}"]');
                        return t.querySelector('.pin').textContent.includes('sku-9') && +t.dataset.ts; }}""",
            timeout=20_000).json_value()
        room_ts = room_page.wait_for_function(
            "() => document.getElementById('pin-now').textContent.includes('sku-9') && +document.body.dataset.ts",
            timeout=20_000).json_value()
    for seen in (tile_ts, room_ts):
        assert pinned_at <= seen <= pinned_at + 2 * STEP, (pinned_at, seen)
    assert "讲解中 sku-9" in page.locator(f'.tile[data-room="{ROOM}"] .pin').inner_text()
    # On the charts: the pinned stretch as a band from the pin on, and the promotion (from the show
    # summary, a second or so later), with the legend.
    room_page.wait_for_function("""() => JSON.parse(document.querySelector('#c-online .uplot').dataset.marks || '[]')
                                           .includes('讲解 sku-9')""", timeout=10_000)
    room_page.wait_for_function("""() => JSON.parse(document.querySelector('#c-online .uplot').dataset.marks || '[]')
                                           .includes('秒杀 flash-1 · sku-9')""", timeout=15_000)
    view = requests.get(live.url + f"/api/rooms/{ROOM}", timeout=5).json()
    pin = [m for m in view["marks"] if m["kind"] == "pin" and m["product_id"] == "sku-9"][-1]
    assert pin["end"] is None and pinned_at <= pin["ts"] <= pinned_at + 2 * STEP
    promo = [m for m in view["marks"] if m["kind"] == "promo"][-1]
    assert (promo["promo_id"], promo["promo_type"], promo["product_id"]) == ("flash-1", "seckill", "sku-9")
    assert promo["ts"] == pytest.approx(pinned_at + 0.001)
    assert room_page.locator("#marks-legend .mark").all_inner_texts() == ["讲解", "促销", "告警", "恢复", "CDN 切换"]
    screenshot(room_page, "room-live-pin")
    # Unpinned: the band closes where the pin ended.
    with live.show.quiet():
        unpinned_at = time.time()
        live.show.send("show", unpinned_at, action="unpin")
        live.show.flush()
        room_page.wait_for_function("() => document.getElementById('pin-now').textContent === '当前没有讲解中的商品'",
                                    timeout=20_000)
    view = requests.get(live.url + f"/api/rooms/{ROOM}", timeout=5).json()
    pin = [m for m in view["marks"] if m["kind"] == "pin" and m["product_id"] == "sku-9"][-1]
    assert unpinned_at <= pin["end"] <= unpinned_at + 2 * STEP
    no_problems(page)
    assert room_page.problems == []
    room_page.close()


def test_failover_confirmation_and_the_named_operator(page, live):
    posts = []
    page.on("request", lambda r: posts.append(r.post_data) if r.method == "POST" else None)
    page.goto(live.url + f"/room/{ROOM}")
    page.wait_for_function("() => document.querySelectorAll('#fo-to option').length === 2", timeout=20_000)
    page.fill("#token", live.lin)
    page.dispatch_event("#token", "change")
    page.select_option("#fo-from", "cdn-a")
    page.select_option("#fo-to", "cdn-b")
    # Cancel in the confirmation: nothing is sent.
    page.click("#fo-go")
    assert page.locator("#fo-dialog").is_visible()
    assert page.inner_text("#fo-question") == f"将直播间 {ROOM} 的观众从 cdn-a 切换到 cdn-b?"
    screenshot(page, "room-live-confirm")
    page.click("#fo-abort")
    assert not page.locator("#fo-dialog").is_visible()
    page.wait_for_timeout(500)
    assert posts == [] and page.inner_text("#action-status") == ""
    # Confirm: the action goes through the broker to the worker's failover, named after lin.
    page.click("#fo-go")
    page.click("#fo-confirm")
    page.wait_for_selector("#action-status.ok")
    assert [json.loads(p) for p in posts] == [{"action": "failover", "cdn": "cdn-a", "to_cdn": "cdn-b", "room_id": ROOM}]
    page.wait_for_selector("#failovers li.pinned", timeout=20_000)
    assert "pinned to cdn-b by lin" in page.inner_text("#failovers")
    page.wait_for_selector("#operator li")
    assert page.inner_text("#operator li").endswith("failover cdn-a → cdn-b · 操作人 lin")
    # The failover on the charts, and the records: the operator action and the failover decision
    # name lin, in the page's view and in the recording.
    page.wait_for_function("""() => JSON.parse(document.querySelector('#c-online .uplot').dataset.marks || '[]')
                                      .includes('切换 ?→cdn-b')""", timeout=10_000)
    view = requests.get(live.url + f"/api/rooms/{ROOM}", timeout=5).json()
    assert view["operator"][0]["by"] == "lin" and view["operator"][0]["action"] == "failover"
    assert view["failovers"][0]["decision"] == "pinned" and "by lin" in view["failovers"][0]["reason"]
    screenshot(page, "room-live-failover")
    # Back to automatic control, by the shared token this time: its name is "operator".
    cancel = requests.post(live.url + "/api/actions", json={"action": "cancel_failover", "room_id": ROOM},
                           headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
    assert cancel.status_code == 202 and cancel.json()["action"]["by"] == "operator"
    page.wait_for_selector("#failovers li.unpinned", timeout=20_000)
    assert "automatic control resumed by operator" in page.inner_text("#failovers li.unpinned")
    no_problems(page)
