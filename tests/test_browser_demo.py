"""The control room of a real running worker, fed by the simulator through the embedded broker."""

import subprocess
import sys
import time

import pytest

from tests.fixtures.browser import TOKEN, screenshot

pytest.importorskip("livemon.simulator.cli")


@pytest.fixture
def live_worker(make_broker, start_worker, tmp_path):
    bootstrap = make_broker(partitions=4)
    worker = start_worker(bootstrap, "--recording-dir", str(tmp_path / "rec"), "--token", TOKEN)
    simulator = subprocess.Popen(
        [sys.executable, "-m", "livemon", "simulate", "--broker", bootstrap, "--scenario", "cdn-outage",
         "--rooms", "4", "--rate", "400", "--duration", "150", "--fault-at", "15", "--fault-for", "120"],
        stdout=subprocess.DEVNULL, stderr=open(tmp_path / "simulate.log", "wb"), start_new_session=True)
    yield worker
    simulator.terminate()
    simulator.wait(10)


def test_grid_fills_from_a_running_worker_and_shows_the_outage(page, live_worker):
    page.goto(live_worker.url + "/")
    page.wait_for_function("() => document.querySelectorAll('.tile').length === 4", timeout=45_000)
    page.wait_for_function("() => +document.querySelector('.tile .online .value').textContent.replace(/\\D/g, '') > 0",
                           timeout=30_000)
    screenshot(page, "demo-grid")
    page.click(".tile")      # the busiest room
    page.wait_for_selector("#c-online canvas")
    before = int(page.get_attribute("body", "data-points"))
    page.wait_for_function(f"() => +document.body.dataset.points >= {before + 3}", timeout=10_000)
    screenshot(page, "demo-room")
    # The CDN outage: an alert on the grid, and a failover in the room's history.
    page.goto(live_worker.url + "/")
    page.wait_for_selector('.tile:not([data-alert="ok"])', timeout=90_000)
    room = page.get_attribute('.tile:not([data-alert="ok"])', "data-room")
    screenshot(page, "demo-grid-outage")
    page.goto(live_worker.url + "/room/" + room)
    page.wait_for_selector("#failovers li", timeout=60_000)
    screenshot(page, "demo-room-outage")
    assert page.problems == [], page.problems
