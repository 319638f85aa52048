"""End to end with real parts: embedded broker, a `livemon worker`, `livemon simulate` with a CDN
outage, a real Alertmanager and a signed webhook receiver that only comes up after the fault.

Runs in real time (about 100 s), so it is marked slow: `pytest -m slow tests/test_alert_e2e.py`.
"""

import subprocess
import sys
import time

import pytest

from tests.fixtures.alertmanager import alerting_config
from tests.fixtures.webhook import SignedWebhook, wait_for

SECRET = "e2e-webhook-secret"


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_cdn_outage_end_to_end(make_broker, start_worker, alertmanager, tmp_path):
    bootstrap = make_broker(4)
    hook = SignedWebhook(SECRET)
    config = alerting_config(tmp_path / "alerting.yml", alertmanager.url, hook.url, SECRET, "10s")
    worker = start_worker(bootstrap, "--alerts-config", str(config), "--data-dir",
                          str(tmp_path / "data"), "--window", "20", "--no-web-page")
    sim = subprocess.Popen(
        [sys.executable, "-m", "livemon", "simulate", "--broker", bootstrap, "--scenario",
         "cdn-outage", "--rooms", "2", "--rate", "200", "--duration", "150", "--fault-at", "20",
         "--fault-for", "120", "--bad-fraction", "0", "--quiet"],
        stdout=subprocess.DEVNULL, stderr=open(tmp_path / "sim.log", "w"))
    started = time.time()
    try:
        # The alert reaches Alertmanager while the webhook receiver is still down.
        alerts = wait_for(lambda: alertmanager.alerts(alertname="CdnDegradedErrors"), 90,
                          "the CDN alert at Alertmanager")
        assert alerts[0]["labels"]["room"] == "room-001" and alerts[0]["labels"]["cdn"] == "cdn-a"
        detected = time.time() - started
        hook.start()
        try:
            wait_for(lambda: any(r.get("kind") == "failover" for r in hook.got), 30, "queued records")
            # Recovery: the room's viewers moved; the resolve follows at both receivers.
            wait_for(lambda: any(r.get("rule") == "CdnDegradedErrors" and r.get("state") == "resolved"
                                 for r in hook.got), 120, "the resolved notification")
            wait_for(lambda: not alertmanager.alerts(alertname="CdnDegradedErrors"), 30,
                     "the resolve at Alertmanager")
            stall = worker.value("livemon_room_stall_ratio", room="room-001")
            assert stall is not None and stall < 0.05
        finally:
            hook.stop()
    finally:
        sim.terminate()
        sim.wait(timeout=20)
    failovers = [r for r in hook.got if r.get("kind") == "failover"]
    assert [(f["decision"], f["room_id"], f["from_cdn"]) for f in failovers] == [
        ("taken", "room-001", "cdn-a")]
    states = [r["state"] for r in hook.got if r.get("rule") == "CdnDegradedErrors"]
    assert states == ["firing", "resolved"]                     # in order, once each
    assert worker.value("livemon_cdn_failovers_total", room="room-001", from_cdn="cdn-a",
                        to_cdn=failovers[0]["to_cdn"]) == 1
    assert detected < 20 + 15 + 20                              # fault at 20 s, `for` 15 s
