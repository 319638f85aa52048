"""Alert receivers and the CDN failover endpoint down while a CDN outage plays out.

The simulator's CDN outage drives the real alerting service (rules of alerts/alerting.yml,
failover, incidents, durable outboxes); the on-call webhook and the CDN vendor's control API are
real HTTP servers on loopback that are not listening when the alerts fire and the failover is
decided, and start later. Once they are back every notification and command arrives, signed, in
the order it was decided, exactly once per transition. The default run keeps them down for a few
seconds with short retry settings; the slow run for 5 minutes with the shipped retry settings.
"""

import asyncio
import json
import time

import pytest
from aiohttp import web

from livemon.alerting.config import Receiver, load_config
from livemon.alerting.delivery import DELIVERY_HEADER, verify
from livemon.alerting.service import CONTROL_TOPIC, AlertService
from livemon.engine import Engine, EngineConfig
from livemon.ingest.events import decode
from livemon.simulator.core import Simulation
from tests.fixtures.alertmanager import free_port

SECRET = "whsec-faults-7c1e"
VENDOR_SECRET = "cdn-vendor-secret-91"


class Endpoint:
    """A receiver that checks signatures and keeps what it got, in order."""

    def __init__(self, secret: str):
        self.secret, self.port, self.got, self.forged, self.runner = secret, free_port(), [], 0, None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/in"

    async def handle(self, request):
        body = await request.read()
        if not verify(self.secret, body, request.headers):
            self.forged += 1
            return web.Response(status=401)
        self.got.append((request.headers[DELIVERY_HEADER], json.loads(body)))
        return web.Response(status=200)

    async def start(self):
        app = web.Application()
        app.router.add_post("/in", self.handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()


def expected_deliveries(out: list[dict]) -> tuple[list, list]:
    """What the webhook and the vendor API must get, from the records the service decided, in order:
    alert firings and the resolutions of notified alerts, incident and failover records; commands."""
    hook, vendor, fired = [], [], set()
    for record in out:
        if record.get("topic") == CONTROL_TOPIC:
            vendor.append({k: v for k, v in record.items() if k != "topic"})
        elif record["kind"] == "alert":
            if record["state"] == "firing":
                fired.add(record["id"])
                hook.append(record)
            elif record["state"] == "resolved" and record["id"] in fired:
                hook.append(record)
        elif record["kind"] in ("incident", "failover"):
            hook.append(record)
    return hook, vendor


@pytest.mark.parametrize("down, fast_retry", [pytest.param(5, True, id="5s"),
                                              pytest.param(300, False, id="5min", marks=pytest.mark.slow)])
def test_receivers_down_then_back_get_everything_once_in_order(tmp_path, down, fast_retry):
    hook, vendor = Endpoint(SECRET), Endpoint(VENDOR_SECRET)

    async def main():
        config = load_config("alerts/alerting.yml")
        retry = {"retry_initial": 0.05, "retry_max": 0.4} if fast_retry else {}
        config = type(config)(**{**config.__dict__, **retry, "alertmanager_urls": (),
                                 "webhooks": (Receiver("oncall", hook.url, SECRET, ("alert", "incident", "failover")),),
                                 "failover_endpoint": Receiver("vendor", vendor.url, VENDOR_SECRET, ("command",))})
        service = AlertService(config, data_dir=tmp_path)
        await service.start()
        started = time.monotonic()
        sim = Simulation("cdn-outage", rooms=2, seed=3, duration=220, rate=200, bad_fraction=0,
                         fault_at=45, fault_for=150)
        engine, last, out = Engine(EngineConfig()), None, []
        for message in sim.messages():
            events, _ = decode(message.value, message.topic)
            engine.ingest(events, sim.now)
            if sim.now == last:
                continue
            last = sim.now
            for record in service.evaluate(engine.live_snapshots(sim.now), sim.now):
                out.append(record)
                if record.get("topic") == CONTROL_TOPIC:
                    sim.apply_failover(record["room_id"], record["to_cdn"], from_cdn=record["from_cdn"])
            await asyncio.sleep(0)
        want_hook, want_vendor = expected_deliveries(out)
        assert want_vendor and any(r["kind"] == "incident" for r in want_hook)
        assert not hook.got and not vendor.got
        await asyncio.sleep(max(0.0, down - (time.monotonic() - started)))
        assert all(sink.counts["retried"] > 0 and sink.counts["delivered"] == 0 for sink in service.sinks)
        await hook.start()
        await vendor.start()
        deadline = time.monotonic() + (10 if fast_retry else 60)
        while (len(hook.got), len(vendor.got)) != (len(want_hook), len(want_vendor)):
            assert time.monotonic() < deadline, (len(hook.got), len(want_hook), len(vendor.got))
            await asyncio.sleep(0.1)
        await asyncio.sleep(1.0)  # and nothing more comes
        await service.stop()
        await hook.runner.cleanup()
        await vendor.runner.cleanup()
        return want_hook, want_vendor

    want_hook, want_vendor = asyncio.run(main())
    roundtrip = [json.loads(json.dumps(r, default=str)) for r in want_hook]
    assert [body for _, body in hook.got] == roundtrip
    assert [body for _, body in vendor.got] == want_vendor
    assert len({delivery for delivery, _ in hook.got}) == len(hook.got)  # each once
    assert hook.forged == vendor.forged == 0
    # Each incident transition once: opened (firing), failed over, resolved.
    incidents = [body for _, body in hook.got if body["kind"] == "incident"]
    assert len({json.dumps(i, sort_keys=True) for i in incidents}) == len(incidents)
    assert any(i.get("failover_command_id") == want_vendor[0]["command_id"] for i in incidents)
    final = {i["id"]: i for i in incidents}  # the last update of each incident: all resolved
    assert final and all(i["resolved_ts"] is not None for i in final.values())
