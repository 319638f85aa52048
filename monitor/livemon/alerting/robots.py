"""Group-chat robots: DingTalk (钉钉) and Feishu/Lark (飞书) custom robots, with their signatures.

Both vendors sign with the robot's secret (the "加签" security setting) and a timestamp:

* DingTalk: `sign = urlencode(base64(HMAC-SHA256(key=secret, msg=timestamp + "\\n" + secret)))`,
  timestamp in milliseconds, both sent as the `timestamp` and `sign` query parameters next to
  `access_token`; body `{"msgtype": "markdown", "markdown": {"title", "text"}}`.
* Feishu: `sign = base64(HMAC-SHA256(key=timestamp + "\\n" + secret, msg=""))`, timestamp in
  seconds, both in the JSON body next to `msg_type` ("interactive" card here).

Both answer HTTP 200 even when they refuse a message; the verdict is the JSON body's code
(`errcode` / `code`), which `outcome` maps to an HTTP-like status for the outbox's retry logic.

Used by the worker's own delivery (`WebhookSink`, chosen by the robot's URL) and by
`livemon alert-relay` (Alertmanager webhooks re-signed for a robot).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import time
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

DINGTALK, FEISHU = "dingtalk", "feishu"
FORMATS = (DINGTALK, FEISHU)

# Codes meaning "too many messages, try later": DingTalk 130101 (send too fast), Feishu 11232
# (frequency limited). Everything else non-zero is a refusal (bad sign, keyword, token).
_RATE_LIMITED = {130101, 11232}


def robot_format(url: str) -> str | None:
    """The robot a webhook URL belongs to, from the vendor's documented URL shapes."""
    path = urlsplit(url).path
    if path.endswith("/robot/send"):
        return DINGTALK                                  # oapi.dingtalk.com/robot/send?access_token=
    if "/open-apis/bot/v2/hook/" in path:
        return FEISHU                                    # open.feishu.cn | open.larksuite.com
    return None


def dingtalk_sign(secret: str, timestamp_ms: str) -> str:
    """Base64 of HMAC-SHA256 keyed with the secret over `timestamp + "\\n" + secret` (not yet
    URL-encoded: urlencode does that when it goes into the query)."""
    string_to_sign = f"{timestamp_ms}\n{secret}".encode()
    return base64.b64encode(hmac.new(secret.encode(), string_to_sign, hashlib.sha256).digest()).decode()


def feishu_sign(secret: str, timestamp: str) -> str:
    """Base64 of HMAC-SHA256 keyed with `timestamp + "\\n" + secret` over an empty message."""
    key = f"{timestamp}\n{secret}".encode()
    return base64.b64encode(hmac.new(key, b"", hashlib.sha256).digest()).decode()


def request(kind: str, url: str, secret: str | None, title: str, text: str, *, firing: bool = True,
            now: float | None = None) -> tuple[str, bytes]:
    """(URL, JSON body) of one robot message, signed when the robot has a secret."""
    now = time.time() if now is None else now
    if kind == DINGTALK:
        body = {"msgtype": "markdown", "markdown": {"title": title, "text": text}}
        if secret:
            timestamp = str(int(now * 1000))
            url = _with_query(url, timestamp=timestamp, sign=dingtalk_sign(secret, timestamp))
    elif kind == FEISHU:
        body = {"msg_type": "interactive",
                "card": {"header": {"title": {"tag": "plain_text", "content": title},
                                    "template": "red" if firing else "green"},
                         "elements": [{"tag": "markdown", "content": text}]}}
        if secret:
            timestamp = str(int(now))
            body = {"timestamp": timestamp, "sign": feishu_sign(secret, timestamp), **body}
    else:
        raise ValueError(f"unknown robot {kind!r} (expected: {', '.join(FORMATS)})")
    return url, json.dumps(body, ensure_ascii=False).encode()


def outcome(status: int, answer: bytes) -> int:
    """The robot's verdict as an HTTP status: 200 accepted, 429 rate limited, 400 refused."""
    if not 200 <= status < 300:
        return status
    try:
        reply = json.loads(answer or b"{}")
    except ValueError:
        return 502                              # not the robot answering (a proxy page): retry
    code = reply.get("errcode", reply.get("code", reply.get("StatusCode", 0)))
    if code in (0, None):
        return 200
    return 429 if code in _RATE_LIMITED else 400


def _with_query(url: str, **params) -> str:
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k not in params] + list(params.items())
    return urlunsplit(parts._replace(query=urlencode(query)))


def runbook_link(runbook_url: str, base: str | None = None) -> str:
    """runbook_url annotations are relative to the repository (docs/ALERTING.md#...): prefix the
    deployment's base (LIVEMON_RUNBOOK_BASE_URL, e.g. https://git.example.com/livemon/blob/main/)."""
    base = os.environ.get("LIVEMON_RUNBOOK_BASE_URL", "") if base is None else base
    if not runbook_url or "://" in runbook_url or not base:
        return runbook_url
    return base.rstrip("/") + "/" + runbook_url.lstrip("/")


# -- message text ----------------------------------------------------------------------------------

_STATE = {"firing": "🔴 告警 FIRING", "resolved": "✅ 恢复 RESOLVED"}


def record_message(record: dict, runbook_base: str | None = None) -> tuple[str, str, bool]:
    """(title, markdown, firing) of one record of the worker's alerting (alert or failover)."""
    if record.get("kind") == "failover":
        title = f"CDN 切换 failover {record.get('decision')}: {record.get('room_id')}"
        text = (f"### 🔀 {title}\n\n**{record.get('from_cdn')} → {record.get('to_cdn') or '-'}** "
                f"({record.get('mode')})\n\n- reason: {record.get('reason')}")
        return title, text, record.get("decision") == "declined"
    if record.get("kind") != "alert":
        title = f"{record.get('kind')}: {record.get('room_id', '')}"
        return title, f"### {title}\n\n```\n{json.dumps(record, ensure_ascii=False)[:1500]}\n```", False
    annotations = record.get("annotations") or {}
    return alert_message(record.get("state", "firing"), record.get("rule", ""), record.get("labels") or {},
                         {"summary": record.get("summary") or annotations.get("summary", ""), **annotations},
                         runbook_base)


def alert_message(state: str, name: str, labels: dict, annotations: dict,
                  runbook_base: str | None = None) -> tuple[str, str, bool]:
    where = " · ".join(f"{k}: {labels[k]}" for k in ("room", "cdn", "instance") if labels.get(k))
    title = f"[{state.upper()}] {name}" + (f" {labels['room']}" if labels.get("room") else "")
    lines = [f"### {_STATE.get(state, state)} · {name}", "", f"**{annotations.get('summary', '')}**", ""]
    lines.append(f"- severity: {labels.get('severity', '-')}" + (f" · {where}" if where else ""))
    if annotations.get("description"):
        lines.append(f"- {annotations['description']}")
    if annotations.get("runbook_url"):
        lines.append(f"- [Runbook 处理手册]({runbook_link(annotations['runbook_url'], runbook_base)})")
    return title, "\n".join(lines), state == "firing"
