"""The control room of a real running worker, fed by the simulator through the embedded broker."""

import subprocess
import sys

import pytest

from tests.fixtures.browser import TOKEN, screenshot



def simulate(bootstrap, tmp_path, *args):
    return subprocess.Popen(
        [sys.executable, "-m", "livemon", "simulate", "--broker", bootstrap, "--rooms", "4", "--rate", "400", *args],
        stdout=subprocess.DEVNULL, stderr=open(tmp_path / "simulate.log", "wb"), start_new_session=True)


@pytest.fixture
def live_worker(make_broker, start_worker, tmp_path):
    bootstrap = make_broker(partitions=4)
    worker = start_worker(bootstrap, "--recording-dir", str(tmp_path / "rec"), "--token", TOKEN)
    worker.bootstrap = bootstrap
    yield worker


def test_a_running_worker_fills_the_grid_takes_actions_and_shows_an_outage(page, live_worker, tmp_path):
    # The simulator's CDN outage starts 20 s in; until then the grid and charts come up, and a
    # manual failover on the smallest room goes through the broker to the worker's alerting.
    simulator = simulate(live_worker.bootstrap, tmp_path, "--scenario", "cdn-outage", "--duration", "240",
                         "--fault-at", "20", "--fault-for", "200")
    try:
        page.goto(live_worker.url + "/")
        page.wait_for_function("() => document.querySelectorAll('.tile').length === 4", timeout=45_000)
        page.wait_for_function("() => +document.querySelector('.tile .online .value').textContent.replace(/\\D/g, '') > 0",
                               timeout=30_000)
        screenshot(page, "demo-grid")
        small = page.locator(".tile").nth(3).get_attribute("data-room")
        page.click(f'.tile[data-room="{small}"]')
        page.wait_for_selector("#c-online canvas")
        before = int(page.get_attribute("body", "data-points"))
        page.wait_for_function(f"() => +document.body.dataset.points >= {before + 3}", timeout=10_000)
        page.wait_for_function("() => document.querySelectorAll('#fo-to option').length >= 2", timeout=20_000)
        page.fill("#token", TOKEN)
        page.dispatch_event("#token", "change")
        target = page.locator("#fo-to option").nth(1).get_attribute("value")
        page.select_option("#fo-to", target)
        page.click("#fo-go")
        page.click("#fo-confirm")    # the confirmation naming both CDNs
        page.wait_for_selector("#action-status.ok")
        page.wait_for_selector("#failovers li", timeout=20_000)
        assert f"→ {target}" in page.inner_text("#failovers")
        screenshot(page, "demo-room")

        # The outage: a room turns red or orange on the grid, and its CDN is failed over.
        page.goto(live_worker.url + "/")
        bad = '.tile[data-alert="critical"], .tile[data-alert="warning"]'
        page.wait_for_selector(bad, timeout=120_000)
        room = page.get_attribute(bad, "data-room")
        screenshot(page, "demo-grid-outage")
        page.goto(live_worker.url + "/room/" + room)
        page.wait_for_selector("#failovers li.taken", timeout=90_000)
        page.wait_for_timeout(1000)
        screenshot(page, "demo-room-outage")
        assert page.problems == [], page.problems
    finally:
        simulator.terminate()
        simulator.wait(10)
