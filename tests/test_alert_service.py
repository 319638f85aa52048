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
