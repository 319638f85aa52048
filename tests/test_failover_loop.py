"""Closed loop in one process: the simulator's CDN outage -> engine -> AlertService -> failover
command -> the simulated viewers move -> the stall ratio recovers -> resolved notifications.

The loop is `livemon bench-alerts`' own (`livemon.alerting.latency.run_outage`). The CDN vendor's
control API and the webhook are local HTTP receivers (the only stand-ins: they verify and record the
exact signed requests); everything else is the product's code.
"""

import asyncio

from livemon.alerting.latency import run_outage, summarize
from livemon.alerting.service import CONTROL_TOPIC

FAULT_AT, FAULT_FOR = 45.0, 150.0


def test_cdn_outage_fails_over_once_and_recovers(tmp_path):
    run = asyncio.run(run_outage(tmp_path, fault_at=FAULT_AT, fault_for=FAULT_FOR))
    sim, service, published, history = run.sim, run.service, run.published, run.history
    calls = [command for _, command in run.vendor]
    fault = sim.start + FAULT_AT
    commands = [value for topic, _, value in published if topic == CONTROL_TOPIC]
    alerts = [value for topic, _, value in published if value.get("kind") == "alert"]
    decisions = [value for topic, _, value in published if value.get("kind") == "failover"]

    # Exactly one command, for the hot room, off the failed CDN; the vendor API got that same one.
    assert len(commands) == 1
    [command] = commands
    assert (command["room_id"], command["from_cdn"]) == ("room-001", "cdn-a")
    assert command["to_cdn"] in ("cdn-b", "cdn-c")
    assert calls == [command]
    assert [d["decision"] for d in decisions] == ["taken"]
    # Within the triggering rule's `for` (15 s) plus 5 s of the first bad beacon.
    assert command["ts"] - fault <= 15 + 5

    firing = [a for a in alerts if a["state"] == "firing"]
    resolved = [a for a in alerts if a["state"] == "resolved"]
    assert {"CdnDegradedErrors", "RoomPlaybackErrorSpike"} <= {a["rule"] for a in firing}
    assert all(a["room_id"] == "room-001" for a in firing)           # no other room pages
    assert sorted(a["id"] for a in firing) == sorted(a["id"] for a in resolved)
    first = min(a["ts"] for a in firing)
    assert first - fault <= 15 + 5

    # Viewers moved: the room's stall ratio and errors are back to normal while the fault lasts.
    during_fault_after_move = [s for s in history if s and command["ts"] + 75 <= s["ts"] < fault + FAULT_FOR]
    assert during_fault_after_move
    assert all(s["metrics"]["stall_ratio"] < 0.05 for s in during_fault_after_move)
    assert all(s["metrics"]["error_rate"] < 0.02 for s in during_fault_after_move)

    # The incident of the triggering alert records detection, failover and resolution.
    [incident] = [i for i in service.incidents.all() if i.rule == "CdnDegradedErrors"]
    assert incident.failover_command_id == command["command_id"]
    assert incident.first_bad_ts < incident.fired_ts <= incident.failover_ts < incident.resolved_ts
    assert dict(((s["room"], s["from_cdn"], s["to_cdn"]), v) for s, v in
                service.counters()["livemon_cdn_failovers_total"]) == {
        ("room-001", "cdn-a", command["to_cdn"]): 1}


def test_bench_alerts_reports_detection_within_for_plus_5(tmp_path):
    summary = summarize(asyncio.run(run_outage(tmp_path)))
    assert summary["failover"]["commands"] == 1 and summary["failover"]["within_for_plus_5"]
    trigger = summary["alerts"]["CdnDegradedErrors"]
    assert trigger["within_for_plus_5"] and trigger["delivery_wall_s"] is not None
