"""Closed loop in one process: the simulator's CDN outage -> engine -> AlertService -> failover
command -> the simulated viewers move -> the stall ratio recovers -> resolved notifications.

The CDN vendor's control API is a local HTTP receiver (the only fake: it records the exact signed
request); everything else is the product's code.
"""

import asyncio
import json

from aiohttp import web

from livemon.alerting.config import Receiver, load_config
from livemon.alerting.delivery import verify
from livemon.alerting.service import AlertService, CONTROL_TOPIC
from livemon.engine import Engine, EngineConfig
from livemon.ingest.events import decode
from livemon.simulator.core import Simulation
from tests.fixtures.alertmanager import free_port

SECRET = "cdn-control-secret-42"
FAULT_AT, FAULT_FOR = 45.0, 150.0


def test_cdn_outage_fails_over_once_and_recovers(tmp_path):
    calls = []

    async def vendor_api(request):
        body = await request.read()
        assert verify(SECRET, body, request.headers)
        calls.append(json.loads(body))
        return web.json_response({"ok": True})

    async def main():
        app = web.Application()
        app.router.add_post("/v1/rooms/switch", vendor_api)
        runner = web.AppRunner(app)
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()

        config = load_config("alerts/alerting.yml")
        config = type(config)(**{**config.__dict__, "retry_initial": 0.05, "retry_max": 0.5,
                                 "failover_endpoint": Receiver(
                                     "vendor", f"http://127.0.0.1:{port}/v1/rooms/switch", SECRET,
                                     ("command",))})
        published = []
        service = AlertService(config, data_dir=tmp_path,
                               producer=lambda topic, key, value: published.append(
                                   (topic, key.decode(), json.loads(value))))
        await service.start()

        sim = Simulation("cdn-outage", rooms=2, seed=3, duration=220, rate=200, bad_fraction=0,
                         fault_at=FAULT_AT, fault_for=FAULT_FOR)
        engine = Engine(EngineConfig())
        last, history = None, []
        for message in sim.messages():
            events, _ = decode(message.value, message.topic)
            engine.ingest(events, sim.now)
            if sim.now == last:
                continue
            last = sim.now
            live = engine.live_snapshots(sim.now)
            history.append(live.get("room-001"))
            for record in service.evaluate(live, sim.now):
                if record.get("topic") == CONTROL_TOPIC:
                    sim.apply_failover(record["room_id"], record["to_cdn"], from_cdn=record["from_cdn"])
            await asyncio.sleep(0)                # let delivery run beside the stream
        for _ in range(100):
            if calls:
                break
            await asyncio.sleep(0.05)
        await service.stop()
        await runner.cleanup()
        return sim, service, published, history

    sim, service, published, history = asyncio.run(main())
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
