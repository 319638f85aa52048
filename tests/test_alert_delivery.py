"""Delivery with real receivers: a real Alertmanager and signed webhooks that go down and come back."""

import asyncio
import json
import logging
import time

from aiohttp import web

from livemon.alerting.config import Receiver, ServiceConfig
from livemon.alerting.delivery import DELIVERY_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, verify
from livemon.alerting.rules import Rule
from livemon.alerting.service import AlertService
from tests.fixtures.alertmanager import free_port
from tests.fixtures.webhook import snapshot, until

SECRET = "whsec-test-0123456789"
RULE = Rule("HighErrors", "error_rate", threshold=0.1, severity="critical",
            labels={"team": "stream"},
            annotations={"summary": "{room}: errors {value:.0%}", "runbook": "check the CDN"})
RETRY = {"retry_initial": 0.05, "retry_max": 0.4, "timeout": 2.0}


class Receiver_:
    """A real HTTP receiver on loopback that checks signatures and keeps what it got, in order."""

    def __init__(self, port, status=200):
        self.port, self.status = port, status
        self.got, self.bad_signatures, self.runner = [], 0, None

    async def handle(self, request):
        body = await request.read()
        if not verify(SECRET, body, request.headers):
            self.bad_signatures += 1
            return web.Response(status=401)
        self.got.append((request.headers[DELIVERY_HEADER], json.loads(body), dict(request.headers),
                         body))
        return web.Response(status=self.status)

    async def start(self):
        app = web.Application()
        app.router.add_post("/hook", self.handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    async def stop(self):
        await self.runner.cleanup()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}/hook"


def test_alertmanager_receives_firing_then_resolved(alertmanager):
    async def main():
        config = ServiceConfig(rules=[RULE], alertmanager_urls=(alertmanager.url,),
                               resend_interval=1.0, generator_url="http://127.0.0.1:8080/?room={room_id}",
                               **RETRY)
        service = AlertService(config)
        await service.start()
        t = time.time()
        service.evaluate({"room-7": snapshot("room-7", t, 0.3)}, t)
        await until(lambda: alertmanager.alerts(alertname="HighErrors"))
        [alert] = alertmanager.alerts(alertname="HighErrors")
        assert alert["labels"] == {"alertname": "HighErrors", "room": "room-7",
                                   "severity": "critical", "team": "stream"}
        assert alert["annotations"] == {"summary": "room-7: errors 30%", "runbook": "check the CDN"}
        assert alert["generatorURL"] == "http://127.0.0.1:8080/?room=room-7"
        assert alert["status"]["state"] == "active"
        first_end = alert["endsAt"]
        # Firing alerts are re-sent (as Prometheus does), pushing endsAt forward.
        await until(lambda: alertmanager.alerts(alertname="HighErrors")[0]["endsAt"] != first_end,
                    timeout=5)
        service.evaluate({"room-7": snapshot("room-7", t + 5, 0.0)}, t + 5)
        await until(lambda: not alertmanager.alerts(alertname="HighErrors"))
        await service.stop()
        counts = dict((s["receiver"], v) for s, v in service.counters()[
            "livemon_alert_notifications_total"] if s["outcome"] == "delivered")
        assert counts == {"alertmanager": 2}
    asyncio.run(main())


def fire_and_resolve(service, rooms, t):
    """Each room fires and resolves: 2 notifications per room, in this order."""
    for i, room in enumerate(rooms):
        service.evaluate({room: snapshot(room, t + 2 * i, 0.5)}, t + 2 * i)
        service.evaluate({room: snapshot(room, t + 2 * i + 1, 0.0)}, t + 2 * i + 1)


def test_webhook_is_signed_and_verifiable():
    async def main():
        receiver = Receiver_(free_port())
        await receiver.start()
        service = AlertService(ServiceConfig(
            rules=[RULE], webhooks=(Receiver("ops", receiver.url, SECRET),), **RETRY))
        await service.start()
        fire_and_resolve(service, ["room-1"], time.time())
        await until(lambda: len(receiver.got) == 2)
        await service.stop()
        await receiver.stop()
        (_, firing, headers, body), (_, resolved, _, _) = receiver.got
        assert (firing["state"], resolved["state"]) == ("firing", "resolved")
        assert firing["room_id"] == "room-1" and firing["kind"] == "alert"
        assert abs(int(headers[TIMESTAMP_HEADER]) - time.time()) < 30
        assert headers[SIGNATURE_HEADER].startswith("sha256=")
        assert receiver.bad_signatures == 0
        # The signature covers the body and the timestamp: any change breaks it.
        assert not verify(SECRET, body.replace(b"room-1", b"room-2"), headers)
        assert not verify("another-secret", body, headers)
        assert not verify(SECRET, body, headers, now=time.time() + 3600)   # a replay, later
    asyncio.run(main())


def test_receiver_down_then_back_gets_everything_in_order_once(tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    rooms = [f"room-{i}" for i in range(6)]

    async def main():
        receiver = Receiver_(free_port())
        service = AlertService(ServiceConfig(
            rules=[RULE], webhooks=(Receiver("ops", receiver.url, SECRET),), **RETRY),
            data_dir=tmp_path)
        await service.start()
        t = time.time()
        started = time.perf_counter()
        fire_and_resolve(service, rooms, t)
        # The stream never waits for a receiver: 12 evaluations with the receiver down.
        assert time.perf_counter() - started < 0.5
        await asyncio.sleep(2.0)                  # several failed attempts with backoff
        [sink] = service.sinks
        assert sink.counts["retried"] >= 3 and len(sink.outbox) == 12
        await receiver.start()                    # the receiver comes back
        await until(lambda: len(receiver.got) == 12)
        await asyncio.sleep(0.5)                  # nothing more arrives
        await service.stop()
        await receiver.stop()
        return receiver

    receiver = asyncio.run(main())
    got = [(body["room_id"], body["state"]) for _, body, _, _ in receiver.got]
    assert got == [(room, state) for room in rooms for state in ("firing", "resolved")]
    assert len({delivery for delivery, *_ in receiver.got}) == 12
    assert SECRET not in caplog.text
    assert "unreachable" in caplog.text


def test_queue_survives_a_restart(tmp_path):
    async def main():
        port = free_port()
        config = ServiceConfig(rules=[RULE], webhooks=(Receiver("ops", f"http://127.0.0.1:{port}/hook",
                                                                 SECRET),), **RETRY)
        first = AlertService(config, data_dir=tmp_path)
        await first.start()
        fire_and_resolve(first, ["room-a", "room-b"], time.time())
        await asyncio.sleep(0.3)
        await first.stop(drain=0.1)               # the worker restarts with the receiver down
        receiver = Receiver_(port)
        await receiver.start()
        second = AlertService(config, data_dir=tmp_path)
        await second.start()
        await until(lambda: len(receiver.got) == 4)
        await asyncio.sleep(0.3)
        await second.stop()
        third = AlertService(config, data_dir=tmp_path)   # delivered items are not sent again
        assert len(third.sinks[0].outbox) == 0
        await receiver.stop()
        return receiver

    receiver = asyncio.run(main())
    assert [(b["room_id"], b["state"]) for _, b, _, _ in receiver.got] == [
        ("room-a", "firing"), ("room-a", "resolved"), ("room-b", "firing"), ("room-b", "resolved")]


def test_a_refused_message_is_set_aside_and_the_queue_moves_on(tmp_path):
    async def main():
        receiver = Receiver_(free_port(), status=422)
        await receiver.start()
        service = AlertService(ServiceConfig(
            rules=[RULE], webhooks=(Receiver("ops", receiver.url, SECRET),), **RETRY), data_dir=tmp_path)
        await service.start()
        fire_and_resolve(service, ["room-1"], time.time())
        await until(lambda: len(receiver.got) == 2)
        await service.stop()
        await receiver.stop()
        assert service.sinks[0].counts["rejected"] == 2
    asyncio.run(main())
    rejected = (tmp_path / "outbox" / "webhook-ops.rejected").read_text().splitlines()
    assert [json.loads(line)["body"]["state"] for line in rejected] == ["firing", "resolved"]


def test_webhook_is_also_signed_the_standard_webhooks_way():
    """webhook-id, webhook-timestamp, webhook-signature: `v1,` base64 HMAC-SHA256 over
    id.timestamp.body, keyed with the base64-decoded part of a `whsec_` secret (standardwebhooks.com)."""
    import base64
    import hashlib
    import hmac

    key = b"0123456789abcdef0123456789abcdef"
    standard_secret = "whsec_" + base64.b64encode(key).decode()

    async def run():
        got = []

        async def handle(request):
            got.append((dict(request.headers), await request.read()))
            return web.Response()

        app = web.Application()
        app.router.add_post("/hook", handle)
        runner = web.AppRunner(app)
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        service = AlertService(ServiceConfig(
            rules=[RULE], webhooks=(Receiver("std", f"http://127.0.0.1:{port}/hook", standard_secret, ("alert",)),), **RETRY))
        await service.start()
        service.evaluate({"room-7": snapshot("room-7", 1000.0, 0.3)}, now=1000.0)
        await until(lambda: got)
        await service.stop()
        await runner.cleanup()
        return got

    (headers, body), = asyncio.run(run())
    msg_id, timestamp = headers["webhook-id"], headers["webhook-timestamp"]
    assert msg_id == headers[DELIVERY_HEADER] and abs(time.time() - int(timestamp)) < 60
    expected = base64.b64encode(hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()).decode()
    assert headers["webhook-signature"] == f"v1,{expected}"
    assert verify(standard_secret, body, headers)          # and the X-Livemon signature as before
