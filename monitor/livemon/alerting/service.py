"""`AlertService`: the alerting layer as the worker sees it.

    service = AlertService.from_config("alerts/alerting.yml", data_dir=..., producer=send)
    await service.start()                 # delivery tasks (Alertmanager, webhooks, CDN endpoint)
    service.evaluate(live_snapshots, now) # every step: rules, incidents, failover; never blocks
    service.handle_operator(action, now)  # ack | silence | failover | cancel_failover
    await service.stop()

`producer(topic: str, key: bytes, value: bytes)` publishes one message; it may be a plain function
or return an awaitable (then the service awaits it in order from a background task).
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import time
from collections import Counter
from pathlib import Path
from typing import Callable

from livemon.alerting.config import ServiceConfig, load_config
from livemon.alerting.delivery import AlertmanagerSink, Sink, WebhookSink
from livemon.alerting.evaluator import Evaluator, Transition, alert_id
from livemon.alerting.failover import Decision, FailoverController
from livemon.alerting.incidents import IncidentBook, report
from livemon.topics import ALERTS_TOPIC, CONTROL_TOPIC, OPERATOR_TOPIC  # noqa: F401 - CONTROL_TOPIC re-exported

log = logging.getLogger("livemon.alerting")


Producer = Callable[[str, bytes, bytes], object]


def _firing_record(alert) -> dict:
    return Transition(alert, "firing", "pending", alert.fired_at, alert.value, None,
                      alert.annotations()).record()


def _json(value: dict) -> bytes:
    return json.dumps(value, separators=(",", ":"), default=str).encode()


class AlertService:
    def __init__(self, config: ServiceConfig, *, data_dir: str | Path | None = None,
                 producer: Producer | None = None):
        self.config = config
        self.data_dir = Path(data_dir) if data_dir else None
        self.producer = producer
        self.evaluator = Evaluator(config.rules, config.targets)
        self.failover = (FailoverController(config.failover, config.rules)
                         if config.failover is not None else None)
        self.incidents = IncidentBook(self.data_dir / "incidents.jsonl" if self.data_dir else None)
        outbox = self.data_dir / "outbox" if self.data_dir else None
        retry = {"timeout": config.timeout, "backoff_initial": config.retry_initial,
                 "backoff_max": config.retry_max}
        self.sinks: list[Sink] = []
        if config.alertmanager_urls:
            self.sinks.append(AlertmanagerSink(
                "alertmanager", list(config.alertmanager_urls), outbox,
                resend_interval=config.resend_interval, resolved_retention=config.resolved_retention,
                generator_url=config.generator_url, **retry))
        for hook in config.webhooks:
            self.sinks.append(WebhookSink(f"webhook-{hook.name}", hook.url, hook.secret, outbox,
                                          kinds=hook.kinds, **retry))
        if config.failover_endpoint is not None:
            ep = config.failover_endpoint
            self.sinks.append(WebhookSink(f"failover-{ep.name}", ep.url, ep.secret, outbox,
                                          kinds=("command",), **retry))
        self.silences: list[dict] = []
        self.notified: set[str] = set()          # alert ids whose firing went to the receivers
        self.fired = Counter()                   # rule -> firings
        self.failovers = Counter()               # (room, from, to) -> taken failovers
        self.decisions = Counter()               # (decision, mode) -> count
        self._offset: dict[str, float] = {}      # room -> wall clock minus event time
        self._queue: asyncio.Queue | None = None
        self._publisher: asyncio.Task | None = None

    @classmethod
    def from_config(cls, path: str | Path, *, data_dir: str | Path | None = None,
                    producer: Producer | None = None) -> "AlertService":
        return cls(load_config(path), data_dir=data_dir, producer=producer)

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self):
        self._queue = asyncio.Queue()
        self._publisher = asyncio.create_task(self._publish_loop(), name="livemon-alert-publisher")
        for sink in self.sinks:
            await sink.start()

    async def stop(self, drain: float = 2.0):
        for sink in self.sinks:
            await sink.stop(drain)
        if self._publisher is not None:
            try:
                await asyncio.wait_for(self._queue.join(), timeout=drain)
            except asyncio.TimeoutError:
                log.warning("stopping with %d records not yet published", self._queue.qsize())
            self._publisher.cancel()
            try:
                await self._publisher
            except asyncio.CancelledError:
                pass
            self._publisher = self._queue = None

    # -- the step -----------------------------------------------------------------------------

    def evaluate(self, live: dict[str, dict], now: float | None = None) -> list[dict]:
        """Evaluate the live snapshots of one step; returns the records it published."""
        now = time.time() if now is None else now
        out: list[dict] = []
        transitions: list[Transition] = []
        for room_id in [r for r in self.evaluator.last_ts if r not in live]:
            transitions += self.evaluator.forget_room(room_id)
            self._offset.pop(room_id, None)
            if self.failover is not None:
                self.failover.rooms.pop(room_id, None)
        for room_id, snapshot in live.items():
            self._offset[room_id] = now - float(snapshot["ts"])
            transitions += self.evaluator.evaluate(snapshot)
        for transition in transitions:
            self._on_transition(transition, out)
        if self.failover is not None:
            for decision in self.failover.step(live, self.evaluator.alerts()):
                self._on_decision(decision, out)
        return out

    def _on_transition(self, t: Transition, out: list):
        record = t.record()
        silenced = self._silenced(record)
        record["silenced"] = silenced is not None
        self._emit(record, out, notify=False)
        notify = (t.state == "firing" and silenced is None) or (
            t.state == "resolved" and record["id"] in self.notified)
        if notify:
            self._fan_out(record)
            if t.state == "firing":
                self.notified.add(record["id"])
            else:
                self.notified.discard(record["id"])
        if t.state == "firing":
            self.fired[t.alert.rule.name] += 1
            self._emit(self.incidents.opened(record), out)
        elif t.state == "resolved":
            incident = self.incidents.resolved(record)
            if incident is not None:
                self._emit(incident, out)

    def _on_decision(self, d: Decision, out: list):
        self.decisions[(d.decision, d.mode)] += 1
        if d.decision == "taken":
            self.failovers[(d.room_id, d.from_cdn, d.to_cdn)] += 1
            command = d.command()
            self._publish(CONTROL_TOPIC, d.room_id, command)
            for sink in self.sinks:
                if "command" in sink.kinds:
                    sink.enqueue(command)
            out.append({"topic": CONTROL_TOPIC, **command})
        self._emit(d.record(), out)
        if d.decision == "taken" and d.from_cdn is not None:
            for incident in self.incidents.failed_over(d.room_id, d.from_cdn, d.ts, d.command_id):
                self._emit(incident, out)

    def _emit(self, record: dict, out: list, notify: bool = True):
        """Publish a record to `liveroom.alerts` and, if asked, to the receivers that want it."""
        self._publish(ALERTS_TOPIC, record["room_id"], record)
        out.append(record)
        if notify:
            self._fan_out(record)

    def _fan_out(self, record: dict):
        for sink in self.sinks:
            if sink.wants(record):
                sink.enqueue(record)

    def _publish(self, topic: str, key: str, value: dict):
        if self.producer is None:
            return
        message = (topic, key.encode(), _json(value))
        if self._queue is not None:
            self._queue.put_nowait(message)
            return
        result = self.producer(*message)
        if inspect.isawaitable(result):
            asyncio.ensure_future(result)       # not started: best effort, in a running loop

    async def _publish_loop(self):
        while True:
            topic, key, value = await self._queue.get()
            for attempt in range(5):
                try:
                    result = self.producer(topic, key, value)
                    if inspect.isawaitable(result):
                        await result
                    break
                except asyncio.CancelledError:
                    raise
                except Exception as error:      # the broker is down: wait a little, keep order
                    log.warning("publishing to %s failed (%s), attempt %d", topic,
                                type(error).__name__, attempt + 1)
                    await asyncio.sleep(0.5 * 2 ** attempt)
            self._queue.task_done()

    # -- hand-over: a room's alert state travels with its partition's checkpoint ---------------

    def export_rooms(self, rooms) -> dict:
        """Everything the alerting layer knows of `rooms`, as plain JSON values: alert series in
        progress, anomaly baselines, open incidents, which firings were notified, failover state
        and silences. Taken together with the rooms' engine state, at the same instant."""
        rooms = set(rooms)
        state = self.evaluator.export_rooms(rooms)
        ids = {alert_id(a["rule"], a["room_id"], a["cdn"], a.get("product")) for a in state["alerts"]}
        state.update(incidents=self.incidents.open_records(rooms), notified=sorted(self.notified & ids),
                     failover=self.failover.export_rooms(rooms) if self.failover else {},
                     silences=[s for s in self.silences if s["room_id"] in rooms],
                     offset={r: self._offset[r] for r in rooms if r in self._offset})
        return state

    def import_rooms(self, state: dict) -> None:
        """Carry on the alert state of rooms taken over (see `export_rooms`): a firing alert goes
        on firing with no second `for` wait, its open incident is resolved here, once, and
        Alertmanager keeps getting it re-sent from here."""
        alerts = self.evaluator.import_rooms(state)
        notified = set(state.get("notified", ())) & {a.id for a in alerts}
        self.notified |= notified
        self.incidents.adopt(state.get("incidents", ()))
        if self.failover is not None:
            self.failover.import_rooms(state.get("failover", {}))
        self.silences += state.get("silences", [])
        self._offset.update(state.get("offset", {}))
        firing = [_firing_record(a) for a in alerts if a.id in notified]
        for sink in self.sinks:
            if isinstance(sink, AlertmanagerSink):
                sink.adopt(firing)

    def release_rooms(self, rooms) -> None:
        """Rooms handed to another worker: forget their alert state without resolving anything
        (the new owner carries it on from the checkpoint) and stop re-sending their alerts."""
        rooms = set(rooms)
        ids = {a.id for a in self.evaluator.release_rooms(rooms)}
        self.notified -= ids
        self.incidents.hand_over(rooms)
        if self.failover is not None:
            self.failover.release_rooms(rooms)
        self.silences = [s for s in self.silences if s["room_id"] not in rooms]
        for room in rooms:
            self._offset.pop(room, None)
        for sink in self.sinks:
            if isinstance(sink, AlertmanagerSink):
                sink.release(ids)

    # -- operator actions ---------------------------------------------------------------------

    def handle_operator(self, action: dict, now: float | None = None) -> list[dict]:
        """An action from `liveroom.operator`. Raises ValueError for a malformed one."""
        now = time.time() if now is None else now
        kind = action.get("action")
        room_id = action.get("room_id")
        user = action.get("by")  # the operator, as the web page names them
        if not isinstance(room_id, str) or not room_id:
            raise ValueError("an operator action needs a room_id")
        ts = now - self._offset.get(room_id, 0.0)     # operator time on the room's event-time axis
        out: list[dict] = []
        if kind == "ack":
            for incident in self._matching_incidents(action):
                record = self.incidents.acknowledged(incident, ts, user)
                if record is not None:
                    self._emit(record, out)
        elif kind == "silence":
            duration = float(action.get("duration") or self.config.silence_default)
            silence = {"room_id": room_id, "rule": action.get("rule"), "cdn": action.get("cdn"),
                       "until": ts + duration, "by": user}
            self.silences.append(silence)
            self._emit({"kind": "silence", **silence, "ts": ts}, out, notify=False)
        elif kind in ("failover", "cancel_failover"):
            if self.failover is None:
                raise ValueError("CDN failover is not configured")
            if kind == "failover":
                to_cdn = action.get("to_cdn")
                if not isinstance(to_cdn, str) or not to_cdn:
                    raise ValueError("a failover action needs to_cdn")
                decisions = self.failover.pin(room_id, to_cdn, ts, action.get("cdn"), user)
            else:
                decisions = self.failover.unpin(room_id, ts, user)
            for decision in decisions:
                self._on_decision(decision, out)
        else:
            raise ValueError(f"unknown operator action {kind!r}")
        return out

    def _matching_incidents(self, action: dict):
        wanted = action.get("incident_id")
        for incident in self.incidents.open():
            if wanted is not None:
                if incident.id == wanted:
                    yield incident
            elif incident.room_id == action["room_id"] and all(
                    action.get(k) in (None, getattr(incident, k)) for k in ("rule", "cdn")):
                yield incident

    def _silenced(self, record: dict) -> dict | None:
        self.silences = [s for s in self.silences if s["until"] > record["ts"]]
        for silence in self.silences:
            if silence["room_id"] == record["room_id"] and all(
                    silence[k] in (None, record[k]) for k in ("rule", "cdn")):
                return silence
        return None

    # -- reporting ----------------------------------------------------------------------------

    def counters(self) -> dict:
        """Counter values for the worker's exposition: name -> [(labels, value)]."""
        return {
            "livemon_alerts_fired_total": [({"alert": k}, v) for k, v in self.fired.items()],
            "livemon_cdn_failovers_total": [({"room": r, "from_cdn": f, "to_cdn": t}, v)
                                            for (r, f, t), v in self.failovers.items()],
            "livemon_cdn_failover_decisions_total": [({"decision": d, "mode": m}, v)
                                                     for (d, m), v in self.decisions.items()],
            "livemon_alert_notifications_total": [
                ({"receiver": s.name, "outcome": outcome}, v)
                for s in self.sinks for outcome, v in s.counts.items()],
        }

    def gauges(self) -> dict:
        return {
            "livemon_alert_queue_depth": [({"receiver": s.name}, len(s.outbox)) for s in self.sinks],
            "livemon_alerts_active": [({"alert": rule, "state": state}, n) for (rule, state), n
                                      in Counter((a.rule.name, a.state)
                                                 for a in self.evaluator.alerts()).items()],
        }

    def collector(self):
        from livemon.alerting.metrics import AlertCollector
        return AlertCollector(self)

    def report(self, by: str = "show", period: float = 86400.0) -> list[dict]:
        return report(self.incidents.all(), by=by, period=period)
