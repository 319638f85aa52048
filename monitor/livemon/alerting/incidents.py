"""Incidents: one record per firing alert, from the first bad sample to resolution.

Times are event time (the snapshots' `ts`), so detection delays are measured against the data, not
against when a worker happened to read it. Reports give time to detect (first bad sample -> fired),
to acknowledge (fired -> acknowledged) and to resolve (first bad sample -> resolved), per show or
per period, against the team's goal of resolving within 15 minutes.
"""

from __future__ import annotations

import json
import math
import os
import statistics
from dataclasses import asdict, dataclass
from pathlib import Path

RESOLVE_GOAL_SECONDS = 15 * 60


@dataclass
class Incident:
    id: str
    alert_id: str
    rule: str
    room_id: str
    cdn: str | None
    severity: str
    show_id: str | None
    summary: str
    first_bad_ts: float
    fired_ts: float
    acked_ts: float | None = None
    acked_by: str | None = None
    failover_ts: float | None = None
    failover_command_id: str | None = None
    resolved_ts: float | None = None

    @property
    def status(self) -> str:
        return "resolved" if self.resolved_ts is not None else (
            "acknowledged" if self.acked_ts is not None else "open")

    def durations(self) -> dict:
        def gap(a, b):
            return None if a is None or b is None else round(b - a, 3)
        return {"time_to_detect": gap(self.first_bad_ts, self.fired_ts),
                "time_to_acknowledge": gap(self.fired_ts, self.acked_ts),
                "time_to_resolve": gap(self.first_bad_ts, self.resolved_ts)}

    def record(self) -> dict:
        return {"kind": "incident", **asdict(self), "status": self.status, **self.durations()}

    @classmethod
    def from_record(cls, data: dict) -> "Incident":
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


class IncidentBook:
    """Open incidents by alert, and every incident's latest record; persisted as JSON lines.

    An open incident moves between workers with its room (`adopt` / `hand_over`): the worker that
    takes the room over resolves it, so it stays one incident whoever detected it.
    """

    def __init__(self, path: str | Path | None = None):
        self.path = Path(path) if path else None
        self.incidents: dict[str, Incident] = {}
        self.open_by_alert: dict[str, str] = {}
        if self.path and self.path.exists():
            for line in self.path.read_text(encoding="utf-8").splitlines():
                try:
                    data = json.loads(line)
                except ValueError:
                    continue                       # a torn last line after a crash
                if data.get("kind") == "handover":  # its room went to another worker
                    if self.open_by_alert.get(data.get("alert_id")) == data.get("id"):
                        del self.open_by_alert[data["alert_id"]]
                    continue
                incident = Incident.from_record(data)
                self.incidents[incident.id] = incident
                if incident.resolved_ts is None:
                    self.open_by_alert[incident.alert_id] = incident.id
                else:
                    self.open_by_alert.pop(incident.alert_id, None)

    def _save(self, incident: Incident) -> dict:
        record = incident.record()
        self._append(record)
        return record

    def _append(self, record: dict) -> None:
        if self.path:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")
                f.flush()
                os.fsync(f.fileno())

    def adopt(self, records: list[dict]) -> list[Incident]:
        """Open incidents of rooms taken over from another worker (from its checkpoint)."""
        adopted = []
        for data in records:
            incident = Incident.from_record(data)
            if incident.resolved_ts is not None or self.open_by_alert.get(incident.alert_id) == incident.id:
                continue
            self.incidents[incident.id] = incident
            self.open_by_alert[incident.alert_id] = incident.id
            self._save(incident)
            adopted.append(incident)
        return adopted

    def hand_over(self, rooms) -> list[dict]:
        """Give up the open incidents of `rooms` (unresolved: their new owner carries them on)."""
        rooms = set(rooms)
        given = [i for i in self.open() if i.room_id in rooms]
        for incident in given:
            del self.open_by_alert[incident.alert_id]
            self._append({"kind": "handover", "id": incident.id, "alert_id": incident.alert_id})
        return [incident.record() for incident in given]

    def open_records(self, rooms) -> list[dict]:
        rooms = set(rooms)
        return [i.record() for i in self.open() if i.room_id in rooms]

    def opened(self, transition_record: dict) -> dict:
        r = transition_record
        incident = Incident(
            id=f"{r['id']}-{int(r['fired_at'])}", alert_id=r["id"], rule=r["rule"],
            room_id=r["room_id"], cdn=r["cdn"], severity=r["severity"], show_id=r["show_id"],
            summary=r["summary"], first_bad_ts=r["active_at"], fired_ts=r["fired_at"])
        self.incidents[incident.id] = incident
        self.open_by_alert[incident.alert_id] = incident.id
        return self._save(incident)

    def resolved(self, transition_record: dict) -> dict | None:
        incident = self.open_for(transition_record["id"])
        if incident is None:
            return None
        incident.resolved_ts = transition_record["resolved_at"]
        del self.open_by_alert[incident.alert_id]
        return self._save(incident)

    def acknowledged(self, incident: Incident, ts: float, user: str | None) -> dict | None:
        if incident.acked_ts is not None:
            return None
        incident.acked_ts, incident.acked_by = ts, user
        return self._save(incident)

    def failed_over(self, room_id: str, cdn: str, ts: float, command_id: str) -> list[dict]:
        out = []
        for incident in self.open():
            if incident.room_id == room_id and incident.cdn == cdn and incident.failover_ts is None:
                incident.failover_ts, incident.failover_command_id = ts, command_id
                out.append(self._save(incident))
        return out

    def open_for(self, alert_id: str) -> Incident | None:
        incident_id = self.open_by_alert.get(alert_id)
        return self.incidents.get(incident_id) if incident_id else None

    def open(self) -> list[Incident]:
        return [self.incidents[i] for i in self.open_by_alert.values()]

    def all(self) -> list[Incident]:
        return list(self.incidents.values())


def report(incidents: list[Incident], by: str = "show", period: float = 86400.0, key=None) -> list[dict]:
    """Per show (`by="show"`) or per period of `period` seconds (`by="period"`), or per `key(incident)`
    when given: counts and the mean and 90th percentile of time to detect, acknowledge and resolve."""
    groups: dict = {}
    for incident in incidents:
        if key is not None:
            group = key(incident)
        elif by == "show":
            group = incident.show_id or f"{incident.room_id} (no show)"
        else:
            group = int(incident.first_bad_ts // period * period)
        groups.setdefault(group, []).append(incident)
    rows = []
    for key in sorted(groups, key=str):
        group = groups[key]
        row = {"group": key, "incidents": len(group),
               "resolved": sum(i.resolved_ts is not None for i in group),
               "acknowledged": sum(i.acked_ts is not None for i in group),
               "failovers": sum(i.failover_ts is not None for i in group)}
        for name in ("time_to_detect", "time_to_acknowledge", "time_to_resolve"):
            values = sorted(v for i in group if (v := i.durations()[name]) is not None)
            row[f"mean_{name}"] = round(statistics.fmean(values), 1) if values else None
            row[f"p90_{name}"] = values[max(0, math.ceil(0.9 * len(values)) - 1)] if values else None
        resolved = [i.durations()["time_to_resolve"] for i in group if i.resolved_ts is not None]
        row["resolved_within_goal"] = sum(v <= RESOLVE_GOAL_SECONDS for v in resolved)
        rows.append(row)
    return rows
