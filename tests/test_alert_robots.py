"""DingTalk and Feishu robots, from the worker's own delivery and from `livemon alert-relay`, each
received by a local stand-in for the vendor's endpoint that checks the exact request and verifies
the signature the way the vendor documents it (written out here, independently of the product)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import time
import urllib.parse

from aiohttp import web

from livemon.alerting.config import Receiver, ServiceConfig
from livemon.alerting.rules import Rule
from livemon.alerting.service import AlertService
from tests.fixtures.alertmanager import free_port
from tests.fixtures.webhook import snapshot, until

DING_SECRET = "SEC0123456789abcdef-ding"
FEISHU_SECRET = "feishu-secret-42"
RULE = Rule("CdnDegradedErrors", "error_rate", threshold=0.1, severity="critical", labels={"team": "stream"},
            annotations={"summary": "Room {room}: errors {value:.0%}", "description": "failover is automatic",
                         "runbook_url": "docs/ALERTING.md#cdndegradederrors"})


def dingtalk_expected_sign(secret: str, timestamp: str) -> str:
    # DingTalk: timestamp + "\n" + secret, HmacSHA256 keyed with the secret, Base64, then urlEncode.
    string_to_sign = f"{timestamp}\n{secret}".encode("utf-8")
    digest = hmac.new(secret.encode("utf-8"), string_to_sign, digestmod=hashlib.sha256).digest()
    return urllib.parse.quote_plus(base64.b64encode(digest))


def feishu_expected_sign(secret: str, timestamp: str) -> str:
    # Feishu: HmacSHA256 keyed with timestamp + "\n" + secret over an empty message, Base64.
    key = f"{timestamp}\n{secret}".encode("utf-8")
    return base64.b64encode(hmac.new(key, b"", digestmod=hashlib.sha256).digest()).decode("utf-8")


class FakeRobots:
    """Stands in for oapi.dingtalk.com and open.feishu.cn only; answers as they do (HTTP 200 and a
    JSON verdict) and keeps each request it accepted."""

    def __init__(self):
        self.port = free_port()
        self.got: list[dict] = []
        self.refused: list[str] = []
        self.answer: dict | None = None        # force an answer (refusal, rate limit)
        self.runner = None

    async def dingtalk(self, request: web.Request):
        raw = dict(pair.split("=", 1) for pair in request.raw_path.partition("?")[2].split("&"))  # as sent
        body = await request.read()
        problem = None
        if request.method != "POST" or request.path != "/robot/send":
            problem = "method/path"
        elif set(raw) != {"access_token", "timestamp", "sign"} or raw["access_token"] != "ding-token":
            problem = f"query {sorted(raw)}"
        elif abs(time.time() * 1000 - int(raw["timestamp"])) > 3600_000:
            problem = "timestamp"
        elif raw["sign"] != dingtalk_expected_sign(DING_SECRET, raw["timestamp"]):
            problem = "sign"
        elif not request.headers["Content-Type"].startswith("application/json"):
            problem = "content type"
        if problem:
            self.refused.append(problem)
            return web.json_response({"errcode": 310000, "errmsg": f"sign not match ({problem})"})
        self.got.append({"vendor": "dingtalk", "body": json.loads(body)})
        return web.json_response(self.answer or {"errcode": 0, "errmsg": "ok"})

    async def feishu(self, request: web.Request):
        body = json.loads(await request.read())
        problem = None
        if request.method != "POST" or request.path != "/open-apis/bot/v2/hook/feishu-token" or request.query_string:
            problem = "method/path/query"
        elif abs(time.time() - int(body.get("timestamp", 0))) > 3600:
            problem = "timestamp"
        elif body.get("sign") != feishu_expected_sign(FEISHU_SECRET, body["timestamp"]):
            problem = "sign"
        elif not request.headers["Content-Type"].startswith("application/json"):
            problem = "content type"
        if problem:
            self.refused.append(problem)
            return web.json_response({"code": 19021, "msg": f"sign match fail ({problem})", "data": {}})
        self.got.append({"vendor": "feishu", "body": body})
        return web.json_response(self.answer or {"code": 0, "msg": "success", "data": {}})

    async def start(self):
        app = web.Application()
        app.router.add_post("/robot/send", self.dingtalk)
        app.router.add_post("/open-apis/bot/v2/hook/feishu-token", self.feishu)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    async def stop(self):
        await self.runner.cleanup()

    @property
    def dingtalk_url(self):
        return f"http://127.0.0.1:{self.port}/robot/send?access_token=ding-token"

    @property
    def feishu_url(self):
        return f"http://127.0.0.1:{self.port}/open-apis/bot/v2/hook/feishu-token"


def service(*hooks: Receiver) -> AlertService:
    return AlertService(ServiceConfig(rules=[RULE], webhooks=hooks, retry_initial=0.05, retry_max=0.2, timeout=2.0))


def test_worker_delivery_to_dingtalk_and_feishu_robots_is_signed_as_the_vendors_document(caplog):
    async def run():
        robots = FakeRobots()
        await robots.start()
        svc = service(Receiver("ding", robots.dingtalk_url, DING_SECRET, ("alert",)),
                      Receiver("feishu", robots.feishu_url, FEISHU_SECRET, ("alert",)))
        await svc.start()
        svc.evaluate({"room-7": snapshot("room-7", 1000.0, 0.3)}, now=1000.0)
        svc.evaluate({"room-7": snapshot("room-7", 1001.0, 0.0)}, now=1001.0)
        await until(lambda: len(robots.got) == 4)
        await svc.stop()
        await robots.stop()
        return robots

    with caplog.at_level(logging.DEBUG):
        robots = asyncio.run(run())
    assert robots.refused == []
    ding = [g["body"] for g in robots.got if g["vendor"] == "dingtalk"]
    feishu = [g["body"] for g in robots.got if g["vendor"] == "feishu"]
    assert [set(b) for b in ding] == [{"msgtype", "markdown"}] * 2
    assert ding[0]["msgtype"] == "markdown" and set(ding[0]["markdown"]) == {"title", "text"}
    assert ding[0]["markdown"]["title"] == "[FIRING] CdnDegradedErrors room-7"
    assert "Room room-7: errors 30%" in ding[0]["markdown"]["text"]
    assert "docs/ALERTING.md#cdndegradederrors" in ding[0]["markdown"]["text"]
    assert ding[1]["markdown"]["title"] == "[RESOLVED] CdnDegradedErrors room-7"
    assert [set(b) for b in feishu] == [{"timestamp", "sign", "msg_type", "card"}] * 2
    assert feishu[0]["msg_type"] == "interactive"
    assert feishu[0]["card"]["header"]["template"] == "red" and feishu[1]["card"]["header"]["template"] == "green"
    assert "Room room-7: errors 30%" in feishu[0]["card"]["elements"][0]["content"]
    ours = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("livemon"))
    for secret in (DING_SECRET, FEISHU_SECRET, "ding-token", "feishu-token"):
        assert secret not in ours       # (the fake vendor's own access log is not ours)


def test_a_robot_refusal_is_set_aside_and_a_rate_limit_is_retried(tmp_path):
    async def run():
        robots = FakeRobots()
        await robots.start()
        wrong = Receiver("ding", robots.dingtalk_url, "SECwrong", ("alert",))
        svc = service(wrong)
        await svc.start()
        svc.evaluate({"room-7": snapshot("room-7", 1000.0, 0.3)}, now=1000.0)
        sink = svc.sinks[0]
        await until(lambda: sink.counts["rejected"] == 1)         # bad sign: HTTP 200, errcode 310000
        await svc.stop()
        robots.answer = {"errcode": 130101, "errmsg": "send too fast"}
        svc = service(Receiver("ding", robots.dingtalk_url, DING_SECRET, ("alert",)))
        await svc.start()
        svc.evaluate({"room-8": snapshot("room-8", 1000.0, 0.3)}, now=1000.0)
        sink = svc.sinks[0]
        await until(lambda: sink.counts["retried"] >= 2)
        robots.answer = None
        await until(lambda: sink.counts["delivered"] == 1)
        await svc.stop()
        await robots.stop()
        return robots

    robots = asyncio.run(run())
    assert robots.refused == ["sign"]


def test_relay_resigns_alertmanager_webhooks_for_each_robot(tmp_path, monkeypatch):
    from livemon.alerting.relay import RelayConfig, make_app

    async def run():
        robots = FakeRobots()
        await robots.start()
        monkeypatch.setenv("TEST_DING_URL", robots.dingtalk_url)
        monkeypatch.setenv("TEST_DING_SECRET", DING_SECRET)
        (tmp_path / "relay.yml").write_text(f"""
runbook_base_url: https://git.example.com/livemon/blob/main/
robots:
  field-control: {{kind: dingtalk, url: "${{TEST_DING_URL}}", secret: "${{TEST_DING_SECRET}}"}}
  oncall-chat: {{kind: feishu, url: "{robots.feishu_url}", secret: "{FEISHU_SECRET}"}}
  disabled: {{kind: feishu, url: "${{UNSET_URL:-}}"}}
""")
        config = RelayConfig.load(tmp_path / "relay.yml")
        assert set(config.robots) == {"field-control", "oncall-chat"}
        runner = web.AppRunner(make_app(config))
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        payload = {
            "version": "4", "status": "firing", "receiver": "field-control", "groupKey": "{}:{room=\"r1\"}",
            "commonLabels": {"alertname": "OrdersStopped", "room": "r1"},
            "alerts": [{"status": "firing", "labels": {"alertname": "OrdersStopped", "room": "r1",
                                                        "severity": "critical", "team": "payments"},
                        "annotations": {"summary": "【支付订单中断】Room r1: paid orders stopped",
                                        "runbook_url": "docs/ALERTING.md#ordersstopped"},
                        "startsAt": "2024-01-01T00:00:00Z", "endsAt": "0001-01-01T00:00:00Z"}]}
        import aiohttp
        async with aiohttp.ClientSession() as session:
            statuses = []
            for name in ("field-control", "oncall-chat", "nobody"):
                async with session.post(f"http://127.0.0.1:{port}/alertmanager/{name}", json=payload) as r:
                    statuses.append(r.status)
            robots.answer = {"errcode": 310000, "errmsg": "keywords not in content"}
            async with session.post(f"http://127.0.0.1:{port}/alertmanager/field-control", json=payload) as r:
                statuses.append(r.status)
        await runner.cleanup()
        await robots.stop()
        return robots, statuses

    robots, statuses = asyncio.run(run())
    # delivered, delivered, unknown robot, refused by the robot (Alertmanager logs it, no retry)
    assert statuses == [200, 200, 404, 400]
    assert robots.refused == []
    ding, feishu = robots.got[0]["body"], robots.got[1]["body"]
    assert ding["msgtype"] == "markdown" and ding["markdown"]["title"] == "[FIRING] OrdersStopped r1"
    assert "【支付订单中断】Room r1: paid orders stopped" in ding["markdown"]["text"]
    assert "https://git.example.com/livemon/blob/main/docs/ALERTING.md#ordersstopped" in ding["markdown"]["text"]
    assert feishu["msg_type"] == "interactive" and feishu["card"]["header"]["template"] == "red"
