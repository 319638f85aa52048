"""Delivery of notifications and failover calls, off the stream's path.

Each receiver ("sink") has its own durable FIFO (`Outbox`, JSON lines in the data dir) and its own
asyncio task draining it. Enqueueing is a short file append, so the evaluation step never waits on
a network. A receiver that is down keeps its queue; the task retries the head with exponential
backoff and delivers the rest in order once the receiver answers. A restart resumes from the file.
A receiver that rejects a message for good (a 4xx other than 408/429) would otherwise block its
queue forever: that message goes to `<sink>.rejected` and is counted.

Webhook and failover requests are signed: `X-Livemon-Signature: sha256=HMAC(secret, ts + "." + body)`
with `X-Livemon-Timestamp: ts` (Unix seconds), so a receiver can reject both forgeries and replays.
`X-Livemon-Delivery` is stable across retries, for receivers that de-duplicate. They are also
signed the Standard Webhooks way (`webhook-id`, `webhook-timestamp`, `webhook-signature: v1,...`),
so receivers built on a Standard Webhooks library verify them as they are.

A webhook whose URL is a DingTalk or Feishu robot's is sent in that robot's own signed message
format instead (livemon.alerting.robots).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import os
import random
import threading
import time
from collections import deque
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import yarl

from livemon.alerting import robots

log = logging.getLogger("livemon.alerting.delivery")

SIGNATURE_HEADER = "X-Livemon-Signature"
TIMESTAMP_HEADER = "X-Livemon-Timestamp"
DELIVERY_HEADER = "X-Livemon-Delivery"


def sign(secret: str | bytes, timestamp: str, body: bytes) -> str:
    key = secret.encode() if isinstance(secret, str) else secret
    return "sha256=" + hmac.new(key, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def verify(secret: str | bytes, body: bytes, headers, now: float | None = None,
           tolerance: float = 300.0) -> bool:
    """Receiver side: a valid signature over this body, made within `tolerance` seconds."""
    timestamp, signature = headers.get(TIMESTAMP_HEADER), headers.get(SIGNATURE_HEADER)
    if not timestamp or not signature:
        return False
    try:
        age = abs((time.time() if now is None else now) - float(timestamp))
    except ValueError:
        return False
    return age <= tolerance and hmac.compare_digest(sign(secret, timestamp, body), signature)


STANDARD_ID, STANDARD_TIMESTAMP, STANDARD_SIGNATURE = "webhook-id", "webhook-timestamp", "webhook-signature"


def standard_sign(secret: str | bytes, msg_id: str, timestamp: str, body: bytes) -> str:
    """Standard Webhooks: `v1,` + base64(HMAC-SHA256(key, id + "." + timestamp + "." + body)); a
    `whsec_` secret is the base64 of the key, any other secret is the key's bytes."""
    if isinstance(secret, str):
        secret = base64.b64decode(secret[6:]) if secret.startswith("whsec_") else secret.encode()
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(secret, signed, hashlib.sha256).digest()).decode()


def safe_url(url: str) -> str:
    """A URL fit for logs: no credentials, no query (tokens often travel there)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


def rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z")


class Outbox:
    """A durable FIFO: `<name>.log` holds appended items, `<name>.done` the last delivered seq."""

    def __init__(self, directory: str | Path | None, name: str, max_items: int = 100_000):
        self.name, self.max_items = name, max_items
        self.items: deque = deque()
        self.dropped = 0
        self._lock = threading.Lock()
        self.dir = Path(directory) if directory else None
        self.done_seq = 0
        if self.dir:
            self.dir.mkdir(parents=True, exist_ok=True)
            self.log_path, self.done_path = self.dir / f"{name}.log", self.dir / f"{name}.done"
            if self.done_path.exists():
                self.done_seq = int(self.done_path.read_text() or 0)
            if self.log_path.exists():
                for line in self.log_path.read_text(encoding="utf-8").splitlines():
                    try:
                        item = json.loads(line)
                    except ValueError:
                        continue              # a torn last line after a crash
                    if item["seq"] > self.done_seq:
                        self.items.append(item)
        self.next_seq = (self.items[-1]["seq"] if self.items else self.done_seq) + 1

    def __len__(self):
        return len(self.items)

    def append(self, body: dict) -> int:
        with self._lock:
            item = {"seq": self.next_seq, "body": body}
            self.next_seq += 1
            self.items.append(item)
            if self.dir:
                with open(self.log_path, "a", encoding="utf-8") as f:
                    f.write(json.dumps(item, separators=(",", ":")) + "\n")
            while len(self.items) > self.max_items:
                # Bounded memory and disk in a receiver outage of days: the oldest go, counted.
                self.items.popleft()
                self.dropped += 1
            return item["seq"]

    def head(self) -> dict | None:
        with self._lock:
            return self.items[0] if self.items else None

    def done(self, seq: int):
        with self._lock:
            while self.items and self.items[0]["seq"] <= seq:
                self.items.popleft()
            self.done_seq = seq
            if not self.dir:
                return
            tmp = self.done_path.with_suffix(".tmp")
            tmp.write_text(str(seq))
            os.replace(tmp, self.done_path)
            if not self.items and self.log_path.exists() and self.log_path.stat().st_size > 1 << 20:
                self.log_path.write_text("")      # everything delivered: start the log afresh


class Sink:
    """One receiver: its outbox, its retry loop and its counters."""

    kinds: frozenset = frozenset()

    def __init__(self, name: str, outbox_dir, *, timeout: float = 5.0, backoff_initial: float = 0.5,
                 backoff_max: float = 30.0):
        self.name = name
        self.outbox = Outbox(outbox_dir, name)
        self.timeout, self.backoff_initial, self.backoff_max = timeout, backoff_initial, backoff_max
        self.counts = {"delivered": 0, "retried": 0, "rejected": 0}
        self._wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task | None = None
        self._session: aiohttp.ClientSession | None = None
        self.up: bool | None = None

    def wants(self, record: dict) -> bool:
        return record.get("kind") in self.kinds

    def enqueue(self, record: dict):
        self.outbox.append(record)
        self.wake()

    def wake(self):
        if self._loop is not None and self._wake is not None:
            self._loop.call_soon_threadsafe(self._wake.set)

    async def start(self):
        self._loop, self._wake = asyncio.get_running_loop(), asyncio.Event()
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout))
        self._task = asyncio.create_task(self._run(), name=f"livemon-sink-{self.name}")

    async def stop(self, drain: float = 2.0):
        """Give the queue `drain` seconds, then stop; what is left stays in the outbox file."""
        if self._task is None:
            return
        deadline = time.monotonic() + drain
        while len(self.outbox) and self.up is not False and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            pass
        await self._session.close()
        self._task = self._session = self._loop = None

    async def _run(self):
        backoff = self.backoff_initial
        while True:
            item = self.outbox.head()
            if item is None:
                await self.idle()
                self._wake.clear()
                if self.outbox.head() is None:
                    try:
                        await asyncio.wait_for(self._wake.wait(), timeout=self.idle_wait())
                    except asyncio.TimeoutError:
                        pass
                continue
            outcome = await self._attempt(item)
            if outcome == "retry":
                self.counts["retried"] += 1
                # Jitter keeps many workers from hammering a receiver that just came back.
                await asyncio.sleep(backoff * random.uniform(0.8, 1.2))
                backoff = min(backoff * 2, self.backoff_max)
                continue
            backoff = self.backoff_initial
            if outcome == "rejected":
                self.counts["rejected"] += 1
                if self.outbox.dir:
                    with open(self.outbox.dir / f"{self.name}.rejected", "a", encoding="utf-8") as f:
                        f.write(json.dumps(item) + "\n")
            else:
                self.counts["delivered"] += 1
            self.outbox.done(item["seq"])

    async def _attempt(self, item) -> str:
        try:
            status = await self.send(item)
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as error:
            if self.up is not False:
                log.warning("%s: %s unreachable (%s); queueing", self.name, self.where(),
                            type(error).__name__)
            self.up = False
            return "retry"
        if 200 <= status < 300:
            if self.up is False:
                log.info("%s: %s is back; %d queued", self.name, self.where(), len(self.outbox))
            self.up = True
            return "ok"
        if status in (408, 429) or status >= 500:
            self.up = False
            return "retry"
        log.error("%s: %s refused a message with HTTP %d; set aside", self.name, self.where(), status)
        self.up = True
        return "rejected"

    async def post(self, url: str, body: bytes, headers: dict) -> int:
        async with self._session.post(url, data=body, headers=headers) as response:
            await response.read()
            return response.status

    # Subclasses: what to send, where, and what to do while idle.
    async def send(self, item) -> int:
        raise NotImplementedError

    async def idle(self):
        pass

    def idle_wait(self) -> float:
        return 3600.0

    def where(self) -> str:
        return ""


class WebhookSink(Sink):
    """A signed webhook: one POST per record, body = the record as JSON; or, when the URL is a
    DingTalk or Feishu robot's, one robot message in that vendor's signed format."""

    def __init__(self, name, url: str, secret: str | None, outbox_dir, *,
                 kinds=("alert", "incident", "failover"), notify_states=("firing", "resolved"), **kw):
        super().__init__(name, outbox_dir, **kw)
        self.url, self._secret = url, secret
        self.kinds, self.notify_states = frozenset(kinds), frozenset(notify_states)
        self.robot = robots.robot_format(url)

    def __repr__(self):
        return f"WebhookSink({self.name!r}, {self.where()!r})"       # never the secret

    def where(self) -> str:
        return safe_url(self.url)

    def wants(self, record: dict) -> bool:
        if record.get("kind") == "alert" and record.get("state") not in self.notify_states:
            return False
        return super().wants(record)

    async def send(self, item) -> int:
        if self.robot:
            return await self._send_robot(item["body"])
        body = json.dumps(item["body"], separators=(",", ":"), sort_keys=True).encode()
        delivery = f"{self.name}-{item['seq']}"
        headers = {"Content-Type": "application/json", DELIVERY_HEADER: delivery}
        if self._secret:
            timestamp = str(int(time.time()))
            headers[TIMESTAMP_HEADER] = timestamp
            headers[SIGNATURE_HEADER] = sign(self._secret, timestamp, body)
            headers[STANDARD_ID] = delivery
            headers[STANDARD_TIMESTAMP] = timestamp
            headers[STANDARD_SIGNATURE] = standard_sign(self._secret, delivery, timestamp, body)
        return await self.post(self.url, body, headers)

    async def _send_robot(self, record: dict) -> int:
        title, text, firing = robots.record_message(record)
        url, body = robots.request(self.robot, self.url, self._secret, title, text, firing=firing)
        # Signed again at each attempt: both robots refuse a timestamp an hour old.
        # encoded=True: the sign goes out exactly as URL-encoded, not re-normalised by yarl
        async with self._session.post(yarl.URL(url, encoded=True), data=body,
                                      headers={"Content-Type": "application/json; charset=utf-8"}) as response:
            return robots.outcome(response.status, await response.read())


class AlertmanagerSink(Sink):
    """Alertmanager's v2 API, the way Prometheus talks to it.

    Firing alerts carry `endsAt = now + 4 * resend_interval` and are re-sent every
    `resend_interval`, so an Alertmanager that restarts learns them again and one whose sender died
    resolves them by itself; a resolved alert carries its real `endsAt` and is re-sent for
    `resolved_retention` (Prometheus: 15 minutes). Transitions go through the outbox in order, so
    a resolve is never overtaken by its own firing notification.
    """

    kinds = frozenset({"alert"})

    def __init__(self, name, urls: list[str], outbox_dir, *, resend_interval: float = 60.0,
                 resolved_retention: float = 900.0, generator_url: str = "", **kw):
        super().__init__(name, outbox_dir, **kw)
        self.urls = [u.rstrip("/") for u in urls]
        self.resend_interval, self.resolved_retention = resend_interval, resolved_retention
        self.generator_url = generator_url
        self.tracked: dict[str, dict] = {}      # alert id -> last transition record
        self._last_resend = 0.0

    def where(self) -> str:
        return ", ".join(safe_url(u) for u in self.urls)

    def wants(self, record: dict) -> bool:
        return record.get("kind") == "alert" and record.get("state") in ("firing", "resolved")

    def to_alertmanager(self, record: dict, now: float) -> dict:
        annotations = dict(record.get("annotations") or {})
        # Event time, but never ahead of our clock: with producer clocks ahead, a future end would
        # keep a resolved alert active until then, and an end before the start is refused (400).
        starts = min(record["fired_at"], now)
        ends = (max(starts, min(record["resolved_at"], now)) if record["state"] == "resolved"
                else now + 4 * self.resend_interval)
        alert = {"labels": record["labels"], "annotations": annotations,
                 "startsAt": rfc3339(starts), "endsAt": rfc3339(ends)}
        if self.generator_url:
            alert["generatorURL"] = self.generator_url.format(room_id=record["room_id"],
                                                              rule=record["rule"])
        return alert

    async def _post_alerts(self, records: list[dict]) -> int:
        now = time.time()
        body = json.dumps([self.to_alertmanager(r, now) for r in records]).encode()
        status = 0
        # Every Alertmanager of an HA cluster gets every alert (they de-duplicate among themselves).
        for url in self.urls:
            status = max(status, await self.post(f"{url}/api/v2/alerts", body,
                                                 {"Content-Type": "application/json"}))
        return status

    async def send(self, item) -> int:
        record = item["body"]
        status = await self._post_alerts([record])
        if 200 <= status < 300:
            self.tracked[record["id"]] = record
            self._last_resend = self._last_resend or time.monotonic()
        return status

    def idle_wait(self) -> float:
        return self.resend_interval if self.tracked else 3600.0

    def adopt(self, records: list[dict]):
        """Firing alerts another worker notified, now ours to re-send (so they do not expire);
        re-sent at once: Alertmanager de-duplicates an alert it already has."""
        for record in records:
            self.tracked[record["id"]] = record
        if records:
            self._last_resend = 0.0
            self.wake()

    def release(self, alert_ids):
        """Stop re-sending alerts whose room went to another worker."""
        for alert_id in alert_ids:
            self.tracked.pop(alert_id, None)

    async def idle(self):
        if not self.tracked or time.monotonic() - self._last_resend < self.resend_interval:
            return
        now = time.time()
        for alert_id, record in list(self.tracked.items()):
            if record["state"] == "resolved" and now - record["resolved_at"] > self.resolved_retention:
                del self.tracked[alert_id]
        self._last_resend = time.monotonic()
        if self.tracked:
            try:
                await self._post_alerts(list(self.tracked.values()))
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError):
                self.up = False     # the next transition will retry with backoff; resends are best effort
