"""alerts/alertmanager.yml pages the right people: each class of alert reaches exactly its receivers
(amtool's own routing), no inhibition lets a warning mute a critical (structurally, and in a real
Alertmanager), and the WeCom receiver sends what WeCom's API expects (a real Alertmanager against a
local stand-in for qyapi.weixin.qq.com)."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
import urllib.request
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml

from tests.fixtures.alertmanager import BINARY, Alertmanager, free_port

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "alerts" / "alertmanager.yml"
AMTOOL = shutil.which("amtool")

pytestmark = pytest.mark.skipif(AMTOOL is None, reason="amtool is not installed (apt-get install prometheus-alertmanager)")


def receivers(*labels: str, config: Path = CONFIG) -> set[str]:
    result = subprocess.run([AMTOOL, "config", "routes", "test", f"--config.file={config}", *labels],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr
    return set(result.stdout.strip().split(","))


def test_check_config():
    result = subprocess.run([AMTOOL, "check-config", str(CONFIG)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0 and "SUCCESS" in result.stdout, result.stdout + result.stderr


@pytest.mark.parametrize("labels, expected", [
    # critical stream alerts page on-call, per room and per CDN
    (["alertname=RoomHighStallRatio", "severity=critical", "team=stream", "room=r1"], {"oncall-pager"}),
    (["alertname=CdnDegradedErrors", "severity=critical", "team=stream", "room=r1", "cdn=cdn-a"], {"oncall-pager"}),
    # stream warnings go to the on-call chat, not the pager
    (["alertname=CdnDegradedLatency", "severity=warning", "team=stream", "room=r1"], {"oncall-chat"}),
    (["alertname=RoomHighLatencyP95", "severity=warning", "team=stream", "room=r1"], {"oncall-chat"}),
    # business: field control first, and the payments team as well (continue)
    (["alertname=OrdersStopped", "severity=critical", "team=payments", "room=r1"], {"field-control", "payments-oncall"}),
    (["alertname=ViewerDrop", "severity=critical", "team=live-ops", "room=r1"], {"field-control"}),
    (["alertname=InteractionCollapse", "severity=warning", "team=live-ops", "room=r1"], {"field-control"}),
    # the monitor itself: its owners, whatever the severity, never the chat
    (["alertname=MonitorWorkerDown", "severity=critical", "team=monitor", "instance=w1"], {"monitor-owners"}),
    (["alertname=LivemonConsumerLagGrowing", "severity=warning", "team=monitor", "instance=w1"], {"monitor-owners"}),
    # anything unknown still reaches a human
    (["alertname=SomethingNew"], {"oncall-chat"}),
])
def test_each_class_of_alert_reaches_exactly_its_receivers(labels, expected):
    assert receivers(*labels) == expected


def test_every_shipped_rule_has_a_route_other_than_the_default():
    """Each rule of the product and of Prometheus carries a team that a route claims."""
    prometheus = yaml.safe_load((ROOT / "alerts/prometheus/alerts.yml").read_text())
    stream = yaml.safe_load((ROOT / "alerts/rules.yml").read_text())["rules"]
    rules = [(r["alert"], r["labels"]) for g in prometheus["groups"] for r in g["rules"] if "alert" in r]
    rules += [(r["name"], {"severity": r["severity"], **r.get("labels", {})}) for r in stream]
    for name, labels in rules:
        got = receivers(f"alertname={name}", *(f"{k}={v}" for k, v in labels.items()))
        if labels["team"] == "stream" and labels["severity"] != "critical":
            assert got == {"oncall-chat"}, name
        else:
            assert "oncall-chat" not in got, name


def _severity(matchers: list[str]) -> str | None:
    for matcher in matchers:
        if matcher.replace(" ", "").startswith("severity="):
            return matcher.split("=", 1)[1].strip("\"'")
    return None


def test_no_inhibition_lets_a_warning_mute_a_critical():
    """Each inhibit rule either targets warnings only, or takes critical sources only."""
    rules = yaml.safe_load(CONFIG.read_text())["inhibit_rules"]
    assert rules
    for rule in rules:
        source, target = _severity(rule["source_matchers"]), _severity(rule["target_matchers"])
        assert target in ("warning", "info") or source == "critical", rule
        assert rule.get("equal"), rule  # scoped: never across rooms or instances


def _alert(name, severity, team="stream", **labels):
    now = datetime.now(timezone.utc)
    return {"labels": {"alertname": name, "severity": severity, "team": team, **labels},
            "annotations": {"summary": name},
            "startsAt": now.isoformat(), "endsAt": (now + timedelta(minutes=5)).isoformat()}


def _post(am, alerts):
    request = urllib.request.Request(f"{am.url}/api/v2/alerts", data=json.dumps(alerts).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.status == 200


def _states(am) -> dict[tuple, str]:
    return {(a["labels"]["alertname"], a["labels"]["room"]): a["status"]["state"] for a in am.alerts()}


def test_real_alertmanager_a_warning_never_mutes_a_critical_stall(alertmanager):
    _post(alertmanager, [
        # room a: only the latency warning of a CDN; the critical stall and errors must stay active
        _alert("CdnDegradedLatency", "warning", room="a", cdn="cdn-a"),
        _alert("RoomHighStallRatio", "critical", room="a"),
        _alert("RoomPlaybackErrorSpike", "critical", room="a"),
        _alert("RoomHighLatencyP95", "warning", room="a"),
        # room b: a critical CDN stall explains the room's stall
        _alert("CdnDegradedStall", "critical", room="b", cdn="cdn-a"),
        _alert("RoomHighStallRatio", "critical", room="b"),
    ])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        states = _states(alertmanager)
        if states.get(("RoomHighStallRatio", "b")) == "suppressed":
            break
        time.sleep(0.2)
    assert states[("RoomHighStallRatio", "a")] == "active"
    assert states[("RoomPlaybackErrorSpike", "a")] == "active"
    assert states[("RoomHighLatencyP95", "a")] == "suppressed"   # warning by warning: fine
    assert states[("CdnDegradedLatency", "a")] == "active"
    assert states[("RoomHighStallRatio", "b")] == "suppressed"
    assert states[("CdnDegradedStall", "b")] == "active"


class FakeWeCom:
    """Stands in for https://qyapi.weixin.qq.com/cgi-bin/ only: `gettoken`, then `message/send`."""

    TOKEN = "access-token-123"

    def __init__(self):
        self.port, self.requests = free_port(), []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self, body: dict):
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                fake.requests.append(("GET", self.path, None))
                self._answer({"errcode": 0, "errmsg": "ok", "access_token": FakeWeCom.TOKEN,
                              "expires_in": 7200})

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                fake.requests.append(("POST", self.path, body))
                self._answer({"errcode": 0, "errmsg": "ok"})

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.skipif(BINARY is None, reason="prometheus-alertmanager is not installed")
def test_wecom_receiver_sends_what_the_wecom_api_expects(tmp_path):
    wecom = FakeWeCom()
    config = yaml.safe_load(CONFIG.read_text())
    config["global"].update(wechat_api_url=f"http://127.0.0.1:{wecom.port}/cgi-bin/",
                            wechat_api_corp_id="corp-1", wechat_api_secret="secret-1")
    config["route"]["group_wait"] = "0s"
    for route in config["route"]["routes"]:
        route["group_wait"] = "0s"
    (tmp_path / "alertmanager.yml").write_text(yaml.safe_dump(config))
    shutil.copytree(CONFIG.parent / "templates", tmp_path / "templates")
    am = Alertmanager(tmp_path / "alertmanager.yml", tmp_path)
    try:
        _post(am, [_alert("OrdersStopped", "critical", team="payments", room="r9")])
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and not any(m == "POST" for m, _, _ in wecom.requests):
            time.sleep(0.1)
    finally:
        am.stop()
        wecom.stop()
    gets = [urlsplit(p) for m, p, _ in wecom.requests if m == "GET"]
    posts = [(urlsplit(p), b) for m, p, b in wecom.requests if m == "POST"]
    assert gets and gets[0].path == "/cgi-bin/gettoken"
    assert parse_qs(gets[0].query) == {"corpid": ["corp-1"], "corpsecret": ["secret-1"]}
    url, body = posts[0]
    assert url.path == "/cgi-bin/message/send" and parse_qs(url.query) == {"access_token": [FakeWeCom.TOKEN]}
    assert body["msgtype"] == "text" and body["totag"] == "WECOM_TAG_FIELD_CONTROL"   # field control
    assert body["agentid"] == "WECOM_AGENT_ID"
    assert "OrdersStopped" in body["text"]["content"] and "FIRING" in body["text"]["content"]
