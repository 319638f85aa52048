"""AlertService without receivers: operator actions, silences, incidents and their report."""

import json

import pytest

from livemon.alerting.config import ServiceConfig
from livemon.alerting.failover import FailoverConfig
from livemon.alerting.incidents import IncidentBook, report
from livemon.alerting.rules import Rule
from livemon.alerting.service import ALERTS_TOPIC, CONTROL_TOPIC, AlertService

T0 = 1_700_000_000.0
RULES = [Rule("Errors", "error_rate", threshold=0.1, for_=10),
         Rule("CdnErrors", "error_rate", scope="cdn", threshold=0.1, actions=("notify", "failover"))]


def snap(t, error_rate, room="r1", show="show-1", cdn=None):
    return {"ts": T0 + t, "room_id": room, "metrics": {"error_rate": error_rate, "viewers": 100},
            "cdn": cdn or {}, "show": {"id": show, "start": T0}}


def test_incident_lifecycle_ack_and_report(tmp_path):
    published = []
    service = AlertService(ServiceConfig(rules=RULES), data_dir=tmp_path,
                           producer=lambda t, k, v: published.append((t, k, json.loads(v))))
    for t in range(0, 20):
        service.evaluate({"r1": snap(t, 0.5)}, T0 + t + 5)          # wall clock 5 s ahead
    [incident] = service.incidents.open()
    assert (incident.first_bad_ts, incident.fired_ts) == (T0, T0 + 10)
    # The operator acks at wall time T0+30, i.e. event time T0+25 for this room.
    records = service.handle_operator({"action": "ack", "room_id": "r1", "by": "ops-wang"}, T0 + 30)
    assert records[0]["acked_ts"] == T0 + 25 and records[0]["acked_by"] == "ops-wang"
    assert service.handle_operator({"action": "ack", "room_id": "r1"}, T0 + 31) == []  # once
    for t in range(20, 40):
        service.evaluate({"r1": snap(t, 0.0 if t >= 30 else 0.5)}, T0 + t + 5)
    incident = service.incidents.all()[0]
    assert incident.resolved_ts == T0 + 30
    assert incident.durations() == {"time_to_detect": 10, "time_to_acknowledge": 15,
                                    "time_to_resolve": 30}
    kinds = [(v["kind"], v.get("state") or v.get("status")) for t, k, v in published]
    assert kinds == [("alert", "pending"), ("alert", "firing"), ("incident", "open"),
                     ("incident", "acknowledged"), ("alert", "resolved"), ("incident", "resolved")]
    assert all(t == ALERTS_TOPIC and k == b"r1" for t, k, _ in published)
    # Persisted: a restarted service (or `livemon rules incidents`) reads the same incident back.
    [row] = report(IncidentBook(tmp_path / "incidents.jsonl").all(), by="show")
    assert row["group"] == "show-1" and row["incidents"] == 1 and row["resolved_within_goal"] == 1
    assert row["mean_time_to_detect"] == 10
    [row] = service.report(by="period", period=3600)
    assert row["group"] == int(T0 // 3600 * 3600)


def test_silence_keeps_records_but_not_notifications():
    service = AlertService(ServiceConfig(rules=[Rule("Now", "error_rate", threshold=0.1)]))
    service.handle_operator({"action": "silence", "room_id": "r1", "rule": "Now", "duration": 60}, T0)
    out = service.evaluate({"r1": snap(0, 0.5)}, T0)
    assert out[0]["state"] == "firing" and out[0]["silenced"] is True
    assert service.notified == set()
    out = service.evaluate({"r1": snap(100, 0.0)}, T0 + 100)
    out = service.evaluate({"r1": snap(101, 0.5)}, T0 + 101)        # silence over: notified
    assert out[0]["silenced"] is False and service.notified == {out[0]["id"]}


def test_manual_failover_and_cancel_through_operator_actions():
    service = AlertService(ServiceConfig(rules=RULES, failover=FailoverConfig(cooldown=0)))
    healthy = {"a": {"viewers": 50, "error_rate": 0.0}, "b": {"viewers": 50, "error_rate": 0.0}}
    service.evaluate({"r1": snap(0, 0.0, cdn=healthy)}, T0)
    out = service.handle_operator({"action": "failover", "room_id": "r1", "cdn": "a",
                                   "to_cdn": "b", "by": "ops"}, T0 + 1)
    [command] = [r for r in out if r.get("topic") == CONTROL_TOPIC]
    assert (command["from_cdn"], command["to_cdn"]) == ("a", "b")
    assert [r["decision"] for r in out if r.get("kind") == "failover"] == ["taken", "pinned"]
    out = service.handle_operator({"action": "cancel_failover", "room_id": "r1"}, T0 + 2)
    assert [r["decision"] for r in out] == ["unpinned"]
    with pytest.raises(ValueError):
        service.handle_operator({"action": "failover", "room_id": "r1"}, T0 + 3)
    with pytest.raises(ValueError):
        service.handle_operator({"action": "reboot", "room_id": "r1"}, T0 + 3)


def test_hand_over_carries_a_firing_alert_and_its_incident_to_the_next_owner(tmp_path):
    """A room's partition moves to another worker mid-alert (a rebalance, or a crash after the
    last checkpoint): the new owner neither waits `for` again nor opens a second incident, the old
    owner resolves nothing, and the one incident is resolved once, by the new owner."""
    import orjson

    published = []

    def service(name):
        return AlertService(ServiceConfig(rules=RULES, failover=FailoverConfig(cooldown=0)),
                            data_dir=tmp_path / name,
                            producer=lambda t, k, v: published.append((name, json.loads(v))))
    old, new = service("old"), service("new")
    cdn = {"a": {"viewers": 50, "error_rate": 0.5}, "b": {"viewers": 50, "error_rate": 0.0}}
    for t in range(0, 15):
        old.evaluate({"r1": snap(t, 0.5, cdn=cdn), "r2": snap(t, 0.0, room="r2")}, T0 + t)
    [incident] = [i for i in old.incidents.open() if i.rule == "Errors"]
    state = orjson.loads(orjson.dumps(old.export_rooms(["r1"])))  # as a checkpoint stores it
    new.import_rooms(state)
    old.release_rooms(["r1"])
    # The old owner goes on with its other room only, and resolves nothing of r1.
    assert old.evaluate({"r2": snap(15, 0.0, room="r2")}, T0 + 15) == []
    assert not [i for i in old.incidents.open() if i.room_id == "r1"]
    # The new owner: still firing (no new `for` wait, no second incident, no second failover).
    assert new.evaluate({"r1": snap(15, 0.5, cdn=cdn)}, T0 + 15) == []
    assert {(a.rule.name, a.state) for a in new.evaluator.alerts()} == {("Errors", "firing"),
                                                                         ("CdnErrors", "firing")}
    assert new.notified == old_notified_of(published, "r1")
    out = []
    for t in range(16, 20):
        out += new.evaluate({"r1": snap(t, 0.0, cdn={"b": {"viewers": 100, "error_rate": 0.0}})}, T0 + t)
    resolved = [r for r in out if r.get("kind") == "incident" and r["status"] == "resolved"]
    assert sorted(r["rule"] for r in resolved) == ["CdnErrors", "Errors"]
    assert incident.id in {r["id"] for r in resolved}
    records = [r for _, r in published]
    incidents = {r["id"] for r in records if r.get("kind") == "incident"}
    assert len(incidents) == 2  # one per alert, across both owners
    assert sum(r.get("kind") == "failover" and r["decision"] == "taken" for r in records) == 1
    # Each book, read back from its file, agrees: the old owner holds nothing open any more.
    assert IncidentBook(tmp_path / "old" / "incidents.jsonl").open() == []
    assert IncidentBook(tmp_path / "new" / "incidents.jsonl").open() == []


def old_notified_of(published, room):
    return {r["id"] for name, r in published
            if name == "old" and r.get("kind") == "alert" and r["state"] == "firing" and r["room_id"] == room}
