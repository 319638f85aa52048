"""CDN failover: the pure decision core. Snapshots and active alerts in, decisions out.

Traffic model: a room's viewers play from one or more CDNs of its pool. When a failover rule (a
per-CDN rule with the `failover` action) fires on a CDN that still carries the room's traffic, the
controller moves that traffic to the healthiest other CDN of the pool and marks the failed CDN
*drained*. It fails back to a drained CDN only after that CDN has looked healthy for
`failback_after` seconds. Guards against flapping: one automatic move per room per `cooldown`,
never onto a CDN with an active (pending or firing) failover alert, and an operator pin that
suspends automatic moves. Every decision, taken or declined, comes back with its reason.

Health of a CDN for a room: its own per-CDN values in the room's snapshot when the CDN carries
enough viewers there; otherwise what the other rooms see of that CDN; with no evidence at all it is
`unknown` (a valid target only if `allow_unknown`, ranked last; never a failback target).
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field

from livemon.alerting.evaluator import Alert
from livemon.alerting.rules import Rule


@dataclass(frozen=True)
class FailoverConfig:
    cooldown: float = 300.0
    failback_after: float | None = 600.0     # None: never fail back automatically
    allow_unknown: bool = True
    pools: dict = field(default_factory=dict)   # room_id or "*" -> ordered CDN names


@dataclass(frozen=True)
class Decision:
    room_id: str
    from_cdn: str | None
    to_cdn: str | None
    decision: str            # taken | declined | pinned | unpinned
    reason: str
    ts: float
    mode: str = "auto"       # auto | failback | manual
    trigger: str | None = None
    command_id: str | None = None
    candidates: dict = field(default_factory=dict)

    def record(self) -> dict:
        return {"kind": "failover", "room_id": self.room_id, "from_cdn": self.from_cdn,
                "to_cdn": self.to_cdn, "decision": self.decision, "reason": self.reason,
                "ts": self.ts, "mode": self.mode, "trigger": self.trigger,
                "command_id": self.command_id, "candidates": self.candidates}

    def command(self) -> dict:
        """The `liveroom.control` message of a taken decision."""
        return {"room_id": self.room_id, "from_cdn": self.from_cdn, "to_cdn": self.to_cdn,
                "reason": self.reason, "ts": self.ts, "command_id": self.command_id}


@dataclass
class _Room:
    pool: list
    moved: dict = field(default_factory=dict)        # drained cdn -> cdn now holding its traffic
    last_move: float | None = None
    pinned: str | None = None
    healthy_since: dict = field(default_factory=dict)
    last_decline: dict = field(default_factory=dict)   # from_cdn -> reason code


class FailoverController:
    def __init__(self, config: FailoverConfig, rules: list[Rule]):
        self.config = config
        self.rules = [r for r in rules if "failover" in r.actions]
        self.rooms: dict[str, _Room] = {}
        self._seq = 0

    # -- the step -----------------------------------------------------------------------------

    def step(self, snapshots: dict[str, dict], alerts: list[Alert]) -> list[Decision]:
        names = {r.name for r in self.rules}
        active: dict[tuple, list[Alert]] = {}
        for a in alerts:
            if a.rule.name in names:
                active.setdefault((a.room_id, a.cdn), []).append(a)
        health = self._health(snapshots, active)
        out = []
        for room_id, snap in snapshots.items():
            room = self._room(room_id, snap)
            ts = float(snap["ts"])
            for cdn in room.pool:
                state = self._assess(room_id, cdn, health)[0]
                if state == "healthy":
                    room.healthy_since.setdefault(cdn, ts)
                else:
                    room.healthy_since.pop(cdn, None)
            out += self._decide(room_id, room, ts, active, health)
        return out

    def _decide(self, room_id, room: _Room, ts, active, health) -> list[Decision]:
        triggers = []
        for (r, cdn), cdn_alerts in active.items():
            firing = sorted((a for a in cdn_alerts if a.state == "firing"),
                            key=lambda a: (a.fired_at, a.rule.name))
            if r == room_id and firing and cdn not in room.moved:
                triggers.append(firing[0])      # the first rule that fired names the reason
        for cdn in set(room.last_decline) - {a.cdn for a in triggers}:
            del room.last_decline[cdn]         # that episode is over
        out = []
        for alert in sorted(triggers, key=lambda a: a.cdn):
            src = alert.cdn
            reason = f"{alert.rule.name} firing on {src}"
            ranked, table = self._candidates(room_id, room, src, health)
            if room.pinned is not None:
                out += self._decline(room_id, room, src, ts, "pinned",
                                     f"{reason}; room pinned to {room.pinned} by an operator",
                                     alert.rule.name, table)
            elif len(room.pool) < 2:
                out += self._decline(room_id, room, src, ts, "single",
                                     f"{reason}; no other CDN in the room's pool",
                                     alert.rule.name, table)
            elif not ranked:
                out += self._decline(room_id, room, src, ts, "none_healthy",
                                     f"{reason}; no healthy CDN (all of {', '.join(room.pool)} "
                                     "degraded, drained or without data)", alert.rule.name, table)
            elif room.last_move is not None and ts - room.last_move < self.config.cooldown:
                out += self._decline(room_id, room, src, ts, "cooldown",
                                     f"{reason}; cooldown until {room.last_move + self.config.cooldown:.0f}",
                                     alert.rule.name, table)
            else:
                out.append(self._take(room_id, room, src, ranked[0], ts, reason, "auto",
                                      alert.rule.name, table))
        if out or room.pinned is not None or self.config.failback_after is None:
            return out
        # Failback: a drained CDN healthy long enough takes its traffic back.
        for drained in list(room.moved):
            since = room.healthy_since.get(drained)
            if since is None or ts - since < self.config.failback_after:
                continue
            if room.last_move is not None and ts - room.last_move < self.config.cooldown:
                continue
            holder = self._holder(room, drained)
            reason = f"{drained} healthy for {ts - since:.0f}s; failing back"
            out.append(self._take(room_id, room, holder, drained, ts, reason, "failback", None, {}))
            break
        return out

    def _take(self, room_id, room, src, dst, ts, reason, mode, trigger, table) -> Decision:
        self._seq += 1
        command_id = hashlib.sha1(f"{room_id}|{src}|{dst}|{ts}|{self._seq}".encode()).hexdigest()[:16]
        if mode == "failback":
            # The drained CDN gets back its own traffic and what was moved onto it.
            room.moved = {k: (dst if v == src and k != dst else v)
                          for k, v in room.moved.items() if k != dst}
        else:
            for k, v in list(room.moved.items()):
                if v == src:
                    room.moved[k] = dst      # traffic moved onto src follows it to dst
            room.moved.pop(dst, None)
            room.moved[src] = dst
        room.last_move = ts
        room.last_decline.pop(src, None)
        why = f"{reason}; moving to {dst}" if mode == "auto" else reason
        return Decision(room_id, src, dst, "taken", why, ts, mode, trigger, command_id, table)

    def _decline(self, room_id, room, src, ts, code, reason, trigger, table) -> list[Decision]:
        # One record per reason per episode; the controller re-tries every step silently.
        if room.last_decline.get(src) == code:
            return []
        room.last_decline[src] = code
        return [Decision(room_id, src, None, "declined", reason, ts, "auto", trigger, None, table)]

    @staticmethod
    def _holder(room: _Room, cdn: str) -> str:
        seen = {cdn}
        while cdn in room.moved and room.moved[cdn] not in seen:
            cdn = room.moved[cdn]
            seen.add(cdn)
        return cdn

    # -- hand-over: a room's failover state travels with its partition's checkpoint ------------

    def export_rooms(self, rooms) -> dict:
        return {room_id: asdict(self.rooms[room_id]) for room_id in rooms if room_id in self.rooms}

    def import_rooms(self, state: dict) -> None:
        for room_id, data in state.items():
            self.rooms[room_id] = _Room(**data)

    def release_rooms(self, rooms) -> None:
        for room_id in rooms:
            self.rooms.pop(room_id, None)

    # -- operator overrides -------------------------------------------------------------------

    def pin(self, room_id: str, to_cdn: str, ts: float, from_cdn: str | None = None,
            user: str | None = None, snapshot: dict | None = None) -> list[Decision]:
        """Manual failover: move the room's traffic to `to_cdn` now and suspend automatic moves."""
        room = self._room(room_id, snapshot)
        if to_cdn not in room.pool:
            room.pool.append(to_cdn)
        by = f" by {user}" if user else ""
        sources = [from_cdn] if from_cdn else [c for c in room.pool
                                               if c != to_cdn and c not in room.moved]
        out = []
        for src in sources:
            if src != to_cdn:
                out.append(self._take(room_id, room, src, to_cdn, ts,
                                      f"manual failover{by}", "manual", None, {}))
        room.pinned = to_cdn
        out.append(Decision(room_id, None, to_cdn, "pinned", f"pinned to {to_cdn}{by}", ts, "manual"))
        return out

    def unpin(self, room_id: str, ts: float, user: str | None = None) -> list[Decision]:
        """Give the room back to automatic control; failback follows the usual rule."""
        room = self.rooms.get(room_id)
        if room is None or room.pinned is None:
            return []
        pinned, room.pinned = room.pinned, None
        room.last_decline.clear()
        by = f" by {user}" if user else ""
        return [Decision(room_id, None, pinned, "unpinned", f"automatic control resumed{by}", ts,
                         "manual")]

    # -- health -------------------------------------------------------------------------------

    def _room(self, room_id: str, snap: dict | None) -> _Room:
        room = self.rooms.get(room_id)
        if room is None:
            configured = self.config.pools.get(room_id) or self.config.pools.get("*") or []
            room = self.rooms[room_id] = _Room(list(configured))
        if snap:
            by_viewers = sorted((snap.get("cdn") or {}).items(),
                                key=lambda kv: -((kv[1] or {}).get("viewers") or 0))
            for cdn, _ in by_viewers:
                if cdn not in room.pool:
                    room.pool.append(cdn)      # learned: a CDN the room is seen playing from
        return room

    def _sample(self, values: dict) -> tuple[str, float] | None:
        """(healthy|degraded, score) of one (room, cdn) sample, or None without enough volume."""
        score, evidence, bad = 0.0, False, False
        for rule in self.rules:
            if rule.threshold is None:
                continue
            volume = values.get(rule.volume_metric) if rule.volume_metric else 1
            value = rule.worst(values)  # a rule with a short window: the worse of its two windows
            if value is None or volume is None or volume < rule.volume_min:
                continue
            evidence = True
            # Healthy means inside the clear line, so a CDN just under the fire line does not count.
            bad = bad or rule.breaches(value, firing=True)
            limit = rule.threshold or 1e-9
            # Sum of each value relative to its fire line: every symptom counts toward the choice.
            score += value / limit if rule.op in (">", ">=") else limit / max(value, 1e-9)
        if not evidence:
            return None
        return ("degraded" if bad else "healthy"), score

    def _health(self, snapshots, active) -> dict:
        """(room, cdn) -> (state, score) for every CDN sample with volume, plus alert states."""
        health = {}
        for room_id, snap in snapshots.items():
            for cdn, values in (snap.get("cdn") or {}).items():
                sample = self._sample(values or {})
                if sample is not None:
                    health[(room_id, cdn)] = sample
        for room_id, cdn in active:
            health[(room_id, cdn)] = ("degraded", float("inf"))
        return health

    def _assess(self, room_id: str, cdn: str, health: dict) -> tuple[str, float]:
        own = health.get((room_id, cdn))
        if own is not None:
            return own
        elsewhere = [v for (r, c), v in health.items() if c == cdn and r != room_id]
        if any(state == "degraded" for state, _ in elsewhere):
            return "degraded", float("inf")
        if elsewhere:
            return "healthy", sum(s for _, s in elsewhere) / len(elsewhere)
        return "unknown", float("inf")

    def _candidates(self, room_id, room: _Room, src: str, health) -> tuple[list[str], dict]:
        table, ranked = {}, []
        for cdn in room.pool:
            if cdn == src:
                continue
            state, score = self._assess(room_id, cdn, health)
            if cdn in room.moved:
                state = "drained"
            table[cdn] = {"state": state, "score": None if score == float("inf") else round(score, 4)}
            if state == "healthy" or (state == "unknown" and self.config.allow_unknown):
                ranked.append((state != "healthy", score, cdn))
        return [cdn for *_, cdn in sorted(ranked)], table
