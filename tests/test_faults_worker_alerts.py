"""A worker SIGKILLed while its rooms' alerts fire: every alert stays one incident, resolved once.

Real parts throughout: the embedded broker, three `livemon worker` processes with the alerting
service, a real Alertmanager, a signed webhook receiver, and `livemon simulate` playing a CDN
outage that the workers fail over. Once the owner of firing alerts has checkpointed them, it is
killed. The worker that takes its partitions over must carry the alerts on from the checkpoint:
no second `for` wait and no second firing, no second incident, no second failover command, and
the incident the dead worker opened is resolved, once, by its successor. Alertmanager ends with
nothing of them firing.
"""

import json
import subprocess
import sys
import time
from collections import Counter

import pytest
from kafka import KafkaConsumer

from tests.fixtures.alertmanager import alerting_config
from tests.fixtures.webhook import SignedWebhook, wait_for

SECRET = "kill-test-webhook-secret"


def alert_records(bootstrap: str) -> list[dict]:
    """Everything on `liveroom.alerts` so far, in order per room."""
    consumer = KafkaConsumer("liveroom.alerts", bootstrap_servers=bootstrap, group_id=None,
                             auto_offset_reset="earliest", consumer_timeout_ms=3000)
    try:
        return [json.loads(message.value) for message in consumer]
    finally:
        consumer.close()


def firing_now(records: list[dict], rooms: set[str]) -> set[str]:
    """Ids of the alerts of `rooms` that have fired and not resolved."""
    state = {}
    for record in records:
        if record.get("kind") == "alert" and record["room_id"] in rooms:
            state[record["id"]] = record["state"]
    return {alert for alert, s in state.items() if s == "firing"}


def owned_rooms(worker) -> set[str]:
    return {dict(labels)["room"] for (name, labels), _ in worker.metrics().items()
            if name == "livemon_room_online"}


@pytest.mark.timeout(300)
def test_sigkill_while_alerts_fire_keeps_one_incident_per_alert(make_broker, start_worker, alertmanager,
                                                                tmp_path):
    bootstrap = make_broker()
    hook = SignedWebhook(SECRET).start()
    config = alerting_config(tmp_path / "alerting.yml", alertmanager.url, hook.url, SECRET, "5s")
    args = ("--alerts-config", str(config), "--window", "20", "--checkpoint-interval", "2", "--no-web-page")
    workers = [start_worker(bootstrap, *args, "--data-dir", str(tmp_path / f"data-{i}"), wait=False)
               for i in range(3)]
    for worker in workers:
        worker.wait_ready()
    sim = subprocess.Popen(
        [sys.executable, "-m", "livemon", "simulate", "--broker", bootstrap, "--scenario", "cdn-outage",
         "--rooms", "6", "--rate", "600", "--duration", "150", "--speed", "2", "--fault-at", "20",
         "--fault-for", "300", "--bad-fraction", "0", "--no-end-show", "--quiet"],
        stdout=subprocess.DEVNULL, stderr=open(tmp_path / "sim.log", "w"))
    try:
        # The owner of firing alerts, once it has checkpointed them (a round follows any change
        # within about a second; we give it three).
        def victim():
            records = alert_records(bootstrap)
            for worker in workers:
                rooms = owned_rooms(worker)
                ids = firing_now(records, rooms)
                if ids:
                    return worker, rooms, ids
            return None
        killed, rooms, ids = wait_for(victim, 120, "a firing alert")
        time.sleep(3)
        ids = firing_now(alert_records(bootstrap), rooms)
        killed.kill()
        survivors = [w for w in workers if w is not killed]
        # The killed worker's rooms are served again, and its firing alerts end: resolved by the
        # worker that took them over.
        wait_for(lambda: rooms <= set().union(*(owned_rooms(w) for w in survivors)), 60,
                 "the killed worker's rooms on the survivors")
        wait_for(lambda: not firing_now(alert_records(bootstrap), rooms) & ids, 150,
                 "the taken-over alerts to resolve")
    finally:
        sim.terminate()
        sim.wait(timeout=20)
    # Each alert's episode that was going on at the kill (a later, new episode of the same
    # series may follow: the simulated outage goes on).
    records = alert_records(bootstrap)
    for alert in ids:
        states = [r for r in records if r.get("kind") == "alert" and r["id"] == alert
                  and r["state"] in ("firing", "resolved")]
        assert [r["state"] for r in states[:2]] == ["firing", "resolved"], [r["state"] for r in states]
        fired, resolved = states[0]["fired_at"], states[1]["resolved_at"]
        incidents = {(r["id"], r["status"]) for r in records if r.get("kind") == "incident"
                     and r["alert_id"] == alert and r["fired_ts"] <= resolved}
        assert {incident for incident, _ in incidents} == {f"{alert}-{int(fired)}"}, incidents
        assert ("{}-{}".format(alert, int(fired)), "resolved") in incidents
        # The on-call webhook got that episode's firing once, then its resolve once.
        wait_for(lambda: [r["state"] for r in hook.got if r.get("kind") == "alert" and r["id"] == alert
                          and r["fired_at"] == fired] == ["firing", "resolved"], 30,
                 f"the webhook to get {alert} fired and resolved, once each")
        # Alertmanager holds it no more.
        if len(states) == 2:  # (a later episode of the series is rightly active there)
            wait_for(lambda: not alertmanager.alerts(**states[0]["labels"]), 30, "the resolve at Alertmanager")
    hook.stop()
    # One failover command per failed CDN and room, whoever took it.
    taken = Counter((r["room_id"], r["from_cdn"]) for r in records
                    if r.get("kind") == "failover" and r["decision"] == "taken")
    assert taken and max(taken.values()) == 1, taken
