"""The pure alert evaluator: snapshots in, alert transitions out. No I/O, no clock.

Time is the snapshot's `ts` (event time). Per series (rule, room[, cdn]) the lifecycle follows
Prometheus alerting rules where they overlap:

* the condition becomes true at `ts` -> pending, `active_at = ts` (the first bad sample);
* pending and `ts - active_at >= for` -> firing (`for: 0` fires on the first bad sample);
* the condition becomes false while pending -> dropped (state `inactive`, never notified);
* the condition becomes false while firing -> resolved, unless `keep_firing_for` holds it: it keeps
  firing while `ts - keep_firing_since < keep_firing_for`, `keep_firing_since` being the first false
  sample (reset by any true sample).

Beyond Prometheus: a firing threshold alert holds its condition until the value crosses the separate
`clear` threshold (hysteresis); a sample below the rule's minimum volume, a null value or a series
missing from the snapshot is "no data", which counts as false (as an absent series does in PromQL).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import asdict, dataclass, field, fields
from typing import Iterable

from livemon import catalogue
from livemon.alerting.rules import Anomaly, Rule
from livemon.alerting.targets import DERIVED, EMPTY, derived

# A flat series has no deviation; keep z-scores meaningful with a floor relative to the mean.
DEVIATION_FLOOR = 0.02


def alert_id(rule: str, room_id: str, cdn: str | None, product: str | None = None) -> str:
    key = f"{rule}\0{room_id}\0{cdn or ''}" + (f"\0{product}" if product is not None else "")
    return hashlib.sha1(key.encode()).hexdigest()[:16]


def pinned_values(snapshot: dict) -> dict:
    """The pinned product's figures (scope `pinned`): {product: its catalogue figures in the
    window}, a product without an entry taking the catalogue's absent values; {} when none is pinned."""
    product = (snapshot.get("show") or {}).get("pinned")
    if product is None:
        return {}
    entry = (snapshot.get("products") or {}).get(product) or {}
    return {product: {m.name: entry.get(m.name, m.absent) for m in catalogue.scoped("product")}}


@dataclass
class Baseline:
    """EWMA mean and variance of one series, with irregular sample spacing."""

    mean: float
    var: float
    start: float
    last: float
    anomalous_since: float | None = None

    def update(self, ts: float, value: float, halflife: float):
        alpha = 1.0 - math.exp(-max(ts - self.last, 0.0) * math.log(2) / halflife)
        diff = value - self.mean
        self.mean += alpha * diff
        self.var = (1 - alpha) * (self.var + alpha * diff * diff)
        self.last = ts

    def deviation(self) -> float:
        return max(math.sqrt(self.var), DEVIATION_FLOOR * abs(self.mean), 1e-9)


@dataclass
class Alert:
    rule: Rule
    room_id: str
    cdn: str | None
    state: str                      # pending | firing
    active_at: float
    value: float | None = None
    threshold: float | None = None
    baseline: float | None = None
    fired_at: float | None = None
    keep_firing_since: float | None = None
    show_id: str | None = None
    last_ts: float = 0.0
    product: str | None = None      # scope `pinned`: the product the series is of

    @property
    def id(self) -> str:
        return alert_id(self.rule.name, self.room_id, self.cdn, self.product)

    def labels(self) -> dict:
        labels = {"alertname": self.rule.name, "room": self.room_id, "severity": self.rule.severity}
        if self.cdn is not None:
            labels["cdn"] = self.cdn
        if self.product is not None:
            labels["product"] = self.product
        labels.update(self.rule.labels)
        return labels

    def annotations(self) -> dict:
        fields = {"rule": self.rule.name, "room": self.room_id, "cdn": self.cdn or "", "product": self.product or "",
                  "severity": self.rule.severity, "value": _num(self.value),
                  "threshold": _num(self.threshold), "baseline": _num(self.baseline)}
        return {k: self.rule.render(v, **fields) for k, v in self.rule.annotations.items()}


def _num(value):
    return float("nan") if value is None else value


@dataclass(frozen=True)
class Transition:
    alert: Alert
    state: str                       # pending | firing | resolved | inactive
    previous: str                    # inactive | pending | firing
    ts: float
    value: float | None
    resolved_at: float | None = None
    annotations: dict = field(default_factory=dict)

    def record(self) -> dict:
        """The JSON record published to `liveroom.alerts`."""
        a = self.alert
        return {
            "kind": "alert", "id": a.id, "rule": a.rule.name, "room_id": a.room_id, "cdn": a.cdn, "product": a.product,
            "state": self.state, "previous": self.previous, "severity": a.rule.severity,
            "value": self.value, "threshold": a.threshold, "baseline": a.baseline, "ts": self.ts,
            "active_at": a.active_at, "fired_at": a.fired_at, "resolved_at": self.resolved_at,
            "show_id": a.show_id, "summary": self.annotations.get("summary", ""),
            "labels": a.labels(), "annotations": self.annotations,
            "actions": list(a.rule.actions),
        }


class Evaluator:
    """Feed it snapshots in event-time order per room; it returns the transitions they cause."""

    def __init__(self, rules: Iterable[Rule], targets: dict | None = None):
        self.rules = list(rules)
        self.targets = targets  # show targets, for the rules on figures of targets (targets.DERIVED)
        self._derive = any(name in DERIVED for rule in self.rules for name in (rule.metric, rule.volume_metric))
        self.active: dict[tuple, Alert] = {}
        self.baselines: dict[tuple, Baseline] = {}
        self.last_ts: dict[str, float] = {}
        self.pinned: dict[tuple, str] = {}   # (rule, room) -> the product its `pinned` series is of

    def evaluate(self, snapshot: dict) -> list[Transition]:
        room, ts = snapshot["room_id"], float(snapshot["ts"])
        if ts < self.last_ts.get(room, -math.inf):
            return []                      # out of order: event time never goes back
        self.last_ts[room] = ts
        show = (snapshot.get("show") or {}).get("id")
        metrics = snapshot.get("metrics") or {}
        if self._derive:
            metrics = {**metrics, **derived(self.targets or EMPTY, snapshot)}
        cdns = snapshot.get("cdn") or {}
        out: list[Transition] = []
        for rule in self.rules:
            if rule.scope == "room":
                self._series(rule, room, None, ts, metrics, show, out)
            else:
                series = cdns if rule.scope == "cdn" else pinned_values(snapshot)
                seen = set(series)
                if rule.scope == "pinned":
                    self._repinned(rule.name, room, next(iter(series), None))
                for sub, values in series.items():
                    self._series(rule, room, sub, ts, values or {}, show, out)
                # A CDN gone from the room's window (a product no longer pinned) is no data for its series.
                for key in [k for k in self.active if k[0] == rule.name and k[1] == room
                            and k[2] not in seen]:
                    self._series(rule, room, key[2], ts, {}, show, out)
        return out

    def _repinned(self, rule: str, room: str, product: str | None) -> None:
        """Another product pinned (or none): the previous one's baseline is no longer needed."""
        before = self.pinned.get((rule, room))
        if before == product:
            return
        self.baselines.pop((rule, room, before), None)
        if product is None:
            self.pinned.pop((rule, room), None)
        else:
            self.pinned[(rule, room)] = product

    def forget_room(self, room_id: str) -> list[Transition]:
        """The room left the live set (idle past its show): resolve at its last instant."""
        ts = self.last_ts.pop(room_id, None)
        out = []
        for key in [k for k in self.active if k[1] == room_id]:
            alert = self.active.pop(key)
            out.append(self._leave(alert, ts if ts is not None else alert.last_ts, None))
        for key in [k for k in self.baselines if k[1] == room_id]:
            del self.baselines[key]
        for key in [k for k in self.pinned if k[1] == room_id]:
            del self.pinned[key]
        return out

    # -- hand-over: a room's series travel with its partition's checkpoint ----------------------

    def export_rooms(self, rooms) -> dict:
        """The state of `rooms`' series as plain JSON values: active alerts, baselines, last ts."""
        rooms = set(rooms)
        alerts = [{**{f.name: getattr(a, f.name) for f in fields(Alert) if f.name != "rule"},
                   "rule": a.rule.name} for a in self.active.values() if a.room_id in rooms]
        baselines = [[*key, asdict(b)] for key, b in self.baselines.items() if key[1] in rooms]
        return {"alerts": alerts, "baselines": baselines,
                "last_ts": {r: ts for r, ts in self.last_ts.items() if r in rooms}}

    def import_rooms(self, state: dict) -> list[Alert]:
        """Take over series exported by `export_rooms` (of another worker); returns the alerts.
        A series whose rule is no longer configured is dropped."""
        rules = {rule.name: rule for rule in self.rules}
        taken = []
        for data in state.get("alerts", ()):
            rule = rules.get(data["rule"])
            if rule is None:
                continue
            alert = Alert(**{**data, "rule": rule})
            self.active[(rule.name, alert.room_id, alert.cdn if alert.cdn is not None else alert.product)] = alert
            taken.append(alert)
        for name, room, cdn, base in state.get("baselines", ()):
            if name in rules:
                self.baselines[(name, room, cdn)] = Baseline(**base)
        self.last_ts.update(state.get("last_ts", {}))
        return taken

    def release_rooms(self, rooms) -> list[Alert]:
        """Drop `rooms`' series without resolving them (their new owner carries them on)."""
        rooms = set(rooms)
        dropped = [self.active.pop(k) for k in [k for k in self.active if k[1] in rooms]]
        for key in [k for k in self.baselines if k[1] in rooms]:
            del self.baselines[key]
        for key in [k for k in self.pinned if k[1] in rooms]:
            del self.pinned[key]
        for room in rooms:
            self.last_ts.pop(room, None)
        return dropped

    def firing(self) -> list[Alert]:
        return [a for a in self.active.values() if a.state == "firing"]

    def alerts(self) -> list[Alert]:
        return list(self.active.values())

    # -- one series ---------------------------------------------------------------------------

    def _series(self, rule: Rule, room: str, cdn: str | None, ts: float, values: dict,
                show: str | None, out: list):
        key = (rule.name, room, cdn)
        alert = self.active.get(key)
        value = rule.worst(values)
        has_volume = rule.volume_metric is None or (
            values.get(rule.volume_metric) is not None
            and values[rule.volume_metric] >= rule.volume_min)
        firing = alert is not None and alert.state == "firing"
        threshold = baseline = None
        if value is None or not has_volume:
            holds = False
        elif rule.anomaly is not None:
            holds, threshold, baseline = self._anomaly(rule.anomaly, key, ts, float(value), firing)
        else:
            holds = rule.breaches(value, firing=firing)
            threshold = rule.clear if firing and rule.clear is not None else rule.threshold

        if holds:
            if alert is None:
                alert = self.active[key] = Alert(rule, room, cdn if rule.scope == "cdn" else None, "pending", ts,
                                                 show_id=show, product=cdn if rule.scope == "pinned" else None)
            alert.value, alert.threshold, alert.baseline = value, threshold, baseline
            alert.keep_firing_since, alert.last_ts = None, ts
            alert.show_id = alert.show_id or show
            if alert.state == "pending" and ts - alert.active_at >= rule.for_:
                alert.state, alert.fired_at = "firing", ts
                out.append(Transition(alert, "firing", "inactive" if ts == alert.active_at
                                      else "pending", ts, value, None, alert.annotations()))
            elif alert.state == "pending" and ts == alert.active_at:
                out.append(Transition(alert, "pending", "inactive", ts, value, None,
                                      alert.annotations()))
            return
        if alert is None:
            return
        alert.last_ts = ts
        if alert.state == "firing" and rule.keep_firing_for > 0:
            if alert.keep_firing_since is None:
                alert.keep_firing_since = ts
            if ts - alert.keep_firing_since < rule.keep_firing_for:
                return
        del self.active[key]
        out.append(self._leave(alert, ts, value))

    @staticmethod
    def _leave(alert: Alert, ts: float, value) -> Transition:
        if alert.state == "pending":
            return Transition(alert, "inactive", "pending", ts, value, None, alert.annotations())
        if value is not None:
            alert.value = value
        return Transition(alert, "resolved", "firing", ts, value, ts, alert.annotations())

    def _anomaly(self, spec: Anomaly, key: tuple, ts: float, value: float, firing: bool):
        """(holds, threshold line, baseline mean). The baseline does not learn anomalous samples,
        so a sustained drop stays visible, until `relearn_after` accepts it as the new level."""
        base = self.baselines.get(key)
        if base is None:
            self.baselines[key] = Baseline(value, 0.0, ts, ts)
            return False, None, None
        mean, dev = base.mean, base.deviation()
        # A firing anomaly holds until the value is back within half the change (hysteresis).
        change = spec.min_change / 2 if firing else spec.min_change
        z = 0.0 if firing else spec.z
        if spec.direction == "drop":
            line = mean * (1 - change)
            bad = value < line and (value - mean) / dev < -z
        else:
            line = mean * (1 + change)
            bad = value > line and (value - mean) / dev > z
        bad = bad and ts - base.start >= spec.warmup and mean >= spec.min_baseline and mean > 0
        if bad:
            base.anomalous_since = base.anomalous_since if base.anomalous_since is not None else ts
            base.last = ts
            if spec.relearn_after is not None and ts - base.anomalous_since >= spec.relearn_after:
                self.baselines[key] = Baseline(value, 0.0, ts - spec.warmup, ts)
                return False, line, mean
            return True, line, mean
        base.anomalous_since = None
        base.update(ts, value, spec.halflife)
        return False, line if ts - base.start >= spec.warmup else None, mean
