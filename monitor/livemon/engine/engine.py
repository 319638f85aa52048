"""The metric engine: validated events in, snapshots out. No I/O and no clock of its own.

Time comes from the events (event time). A room's watermark is its newest `ts` less the allowed
lateness (SPEC §3); the instants before it are final. So that a silent room shows its silence, a
room's clock runs on from its newest `ts` along a reference time once no newer event has come:
the driver's wall clock in a worker, the newest `ts` of any room in a replay (which keeps a replay
independent of reading speed). The room's live instant is its clock less the lateness (or its
newest `ts`, whichever is later), and its watermark follows the live instant, one lateness behind.

Rooms are admitted, not assumed (any client can put any room id on a beacon): a room is tracked
once it has a show `start` or `admit_events` events before its watermark passes its first event's
ts + `admit_within`. Until then a small `Candidate` holds its accepted events, with the clock a
room would have; on admission they are applied as if the room had been tracked from the first,
so admission only delays when a room is materialised and never changes its numbers. A candidate
that misses is forgotten (`advance`) and its events rejected `room_unadmitted` (`take_rejected`).
Caps on rooms and candidates, per engine (`EngineConfig`) and per worker (`RoomBudget`), reject
what is over them `room_limit`.
"""

from __future__ import annotations

import gc
import heapq
import math
import operator
import weakref
from collections import deque
from typing import Any, Callable, Iterable

import msgspec
from array import array

from ..ingest.events import (FUTURE, LATE, ROOM_LIMIT, ROOM_UNADMITTED, SHOW_LIMIT, AnyEvent, Click, Danmaku,
                             Health, Order, Show, View)
from . import legacy, state
from . import ledger as L
from .audience import pack
from .config import EngineConfig
from .room import (BEACONS, C_BEACONS, C_ERRORS, C_PLAY_MS, C_STALL_MS, DANMAKU, ERRORS, EVENTS, PLAY_MS,
                   STALL_MS, STALLS, CdnStats, Room, make_lean)
from .state import Field, from_state, to_state
from .windows import LatencySketch


# Held events rejected (candidates that missed or hit a cap) kept for `take_rejected`: a driver that
# never collects them cannot make the engine grow.
MAX_HELD_REJECTIONS = 50_000

_TS_KEY = operator.itemgetter("ts")


class _Held:
    """A candidate's held events in a checkpoint: [event as its SPEC object, its watermark]."""

    @staticmethod
    def encode(held):
        return [[msgspec.to_builtins(event), watermark] for event, watermark in held]

    @staticmethod
    def decode(data):
        return [(msgspec.convert(event, AnyEvent), watermark) for event, watermark in data]


class Candidate:
    """A room not admitted yet: the clock a Room would have (so that the late rule is the same)
    and its accepted events, applied on admission as if the room had been tracked from the first."""

    __slots__ = ("id", "max_ts", "seen_at", "frontier", "deadline", "held")
    # Checkpoints (see state.py); `seen_at` is not kept: see `_candidate_watermark`.
    STATE = (Field("id"), Field("max_ts"), Field("frontier"), Field("deadline"), Field("held", _Held()))

    def __init__(self, room_id: str, ts: float, seen_at: float | None, frontier: int, deadline: float):
        self.id = room_id
        self.max_ts = ts
        self.seen_at = seen_at
        self.frontier = frontier  # moved by `advance` as a Room's frontier would be
        self.deadline = deadline  # first event's ts + admit_within: forgotten once the watermark passes it
        self.held: list[tuple[AnyEvent, float]] = []  # (event, its watermark), in arrival order

    def _restored(self):
        self.seen_at = None  # restored: its clock waits until it is heard from


class RoomBudget:
    """Caps on live rooms and candidates shared by the engines of one worker (one per partition).

    Pure bookkeeping: it counts the rooms of the engines built with it (`Engine(config, budget)`),
    weakly, so an engine dropped with its partition stops counting; `detach` says so at once.
    None for a cap: none."""

    def __init__(self, max_rooms: int | None = 4000, max_candidates: int | None = 50000):
        self.max_rooms = max_rooms
        self.max_candidates = max_candidates
        self._engines: weakref.WeakSet[Engine] = weakref.WeakSet()

    def attach(self, engine: "Engine") -> None:
        self._engines.add(engine)

    def detach(self, engine: "Engine") -> None:
        self._engines.discard(engine)

    @property
    def rooms(self) -> int:
        return sum(len(engine.rooms) for engine in self._engines)

    @property
    def candidates(self) -> int:
        return sum(len(engine.candidates) for engine in self._engines)

    def room_free(self) -> bool:
        return self.max_rooms is None or self.rooms < self.max_rooms

    def candidate_free(self) -> bool:
        return self.max_candidates is None or self.candidates < self.max_candidates


class Engine:
    def __init__(self, config: EngineConfig | None = None, budget: RoomBudget | None = None):
        self.config = config or EngineConfig()
        self.rooms: dict[str, Room] = {}
        self.candidates: dict[str, Candidate] = {}  # rooms not admitted yet
        self.clock: float | None = None  # newest accepted ts of any room
        # Rooms and candidates whose clock a catch-up restarted: their `seen_at` is in event time
        # until `end_catch_up` moves it to the wall clock.
        self._caught_up: set[str] = set()
        self._catch_up_time: float | None = None
        self.budget = budget
        if budget is not None:
            budget.attach(self)
        # Final snapshots of rooms admitted since the last `advance`: instants that a room tracked
        # from its first event would have made final already.
        self._finals_due: list[dict] = []
        self._held_rejections: deque[tuple[AnyEvent, str]] = deque()
        self._summaries: list[dict] = []  # of rooms let go (see `forget_idle_rooms`)
        self.uncollected_rejections = 0  # dropped from `_held_rejections` (never taken), counted

    # ---- time ----

    def reference(self, wall: float | None = None) -> float | None:
        """The time silent rooms move on with: the wall clock, else the newest ts of any room."""
        return wall if wall is not None else self.clock

    @staticmethod
    def room_clock(room: Room | Candidate, reference: float | None) -> float:
        """The room's newest ts, run on by the reference time passed since it last rose."""
        if reference is None or room.seen_at is None or reference <= room.seen_at:
            return room.max_ts
        return room.max_ts + (reference - room.seen_at)

    def live_time(self, room: Room | Candidate, reference: float | None) -> float:
        return max(room.max_ts, self.room_clock(room, reference) - self.config.lateness)

    def watermark(self, room: Room | Candidate, reference: float | None) -> float:
        return self.live_time(room, reference) - self.config.lateness

    def live_instant(self, room: Room, reference: float | None) -> int:
        # Never back: a room heard from again after a silence restarts its clock from its newest
        # ts, which may be behind the instant already shown; the shown instant waits for it.
        instant = math.floor(self.live_time(room, reference) / self.config.step)
        return max(instant, room.frontier, room.live_floor)

    # ---- input ----

    def ingest(self, events: Iterable[AnyEvent], wall: float | None = None,
               catching_up: bool = False) -> list[tuple[AnyEvent, str]]:
        """Apply events in arrival order. Returns the rejected ones as (event, reason).

        With `wall`, events further than `future_limit` ahead of it are rejected as `future`;
        without (replay), those further than `clockless_future_limit` ahead of the engine clock,
        so that one skewed timestamp cannot push every room's watermark past its real events.

        `catching_up` (with `wall`): these events come from a backlog, so silent rooms move on
        with the events' own time, as in a replay (never past `wall`), not with the wall clock,
        which has run ahead of them: a room's next events may be further down the backlog.
        """
        rejected = []
        rooms, config = self.rooms, self.config
        step, lateness = config.step, config.lateness
        if wall is not None:
            future = wall + config.future_limit
        elif self.clock is not None and config.clockless_future_limit is not None:
            future = self.clock + config.clockless_future_limit
        else:
            future = None
        reference = self.reference(wall)
        if catching_up and wall is not None and self.clock is not None:
            reference = min(wall, self.clock)
        else:
            catching_up = False
        caught_up = self._caught_up if catching_up else None
        show_idle = config.show_idle
        bin_of = LatencySketch.bin_of
        event: Any  # dispatched on its exact type below (faster than isinstance, opaque to mypy)
        for event in events:
            ts = event.ts
            if future is not None and ts > future:
                rejected.append((event, FUTURE))
                continue
            if wall is None and (self.clock is None or ts > self.clock):
                reference = ts  # replay: the newest ts of any room, this event's included
            elif catching_up and ts > reference:
                reference = ts if ts < wall else wall
            room = rooms.get(event.room_id)
            if room is None:  # not admitted (yet): the candidate's slow path
                self._candidate_event(event, ts, reference, rejected)
                if caught_up is not None:
                    caught_up.add(event.room_id)
                continue
            # The room's watermark (see `watermark`), inline: this runs once per event.
            newest = room.max_ts
            seen_at = room.seen_at
            if reference is not None and seen_at is not None and reference - seen_at > lateness:
                newest += reference - seen_at - lateness
            watermark = newest - lateness
            bucket = math.ceil(ts / step)
            if ts < watermark or bucket <= room.frontier:
                rejected.append((event, LATE))  # older than the watermark, or of a final instant
                continue
            if bucket <= room.kept_upto:
                room.came(bucket)
            if ts > room.max_ts or seen_at is None:
                room.seen_at = reference  # the room's clock restarts from this newer ts
                if caught_up is not None:
                    caught_up.add(room.id)
            if self.clock is None or ts > self.clock:
                self.clock = ts
            kind = type(event)
            if kind is Show:
                if not self._show(room, event, ts, bucket):
                    rejected.append((event, SHOW_LIMIT))
                continue
            # Room.note_event, inline for the common case (see there): count the event, no show change.
            vector = room.sums.buckets.get(bucket)
            if vector is None:
                vector = room.sums.at(bucket)
            shows = room.shows
            if shows and ts - room.max_ts <= show_idle and ts >= shows[-1].start and shows[-1].ended_at is None:
                vector[EVENTS] += 1
                if ts > room.max_ts:
                    room.max_ts = ts
            else:
                room.note_event(ts, bucket)
            if kind is View:
                action = event.action
                room.view(event.user_id, action, ts, watermark, pack(event, room.regions) if action == "enter" else 0)
                stamps = room.view_stamps.get(bucket)
                if stamps is None:
                    room.view_stamps[bucket] = array("d", (ts,))
                else:
                    stamps.append(ts)
            elif kind is Health:
                # Room.add_health, inline.
                stall_ms, play_ms = event.stall_ms, event.play_ms
                vector[STALL_MS] += stall_ms
                vector[PLAY_MS] += play_ms
                vector[STALLS] += event.stall_count
                vector[BEACONS] += 1
                cdn = room.cdns.get(event.cdn)
                if cdn is None:
                    cdn = room.cdns[event.cdn] = CdnStats(room.width, room.frontier)
                cvector = cdn.sums.buckets.get(bucket)
                if cvector is None:
                    cvector = cdn.sums.at(bucket)
                cvector[C_STALL_MS] += stall_ms
                cvector[C_PLAY_MS] += play_ms
                cvector[C_BEACONS] += 1
                if event.error is not None:
                    vector[ERRORS] += 1
                    cvector[C_ERRORS] += 1
                latency = event.latency_ms
                if latency is not None:
                    index = bin_of(latency)
                    room.latency.add_bin(index, bucket)
                    cdn.latency.add_bin(index, bucket)
                if event.startup_ms is not None:
                    room.add_startup(event.startup_ms, cdn, bucket, vector, cvector)
                user = event.user_id
                slot = room.viewers.get(user)
                cdn.viewers.add(user if slot is None else room.users[slot], bucket)
                beacons = room.beacons.get(bucket)
                if beacons is None:
                    beacons = room.beacons[bucket] = array("d")
                beacons.extend((ts, stall_ms, play_ms, event.error is not None))
            elif kind is Danmaku:  # `_sale`, inline for the most frequent of them
                vector[DANMAKU] += 1
                user = event.user_id
                slot = room.viewers.get(user)
                if slot is not None:
                    user = room.users[slot]
                room.interacting.add(user, bucket)
                room.interaction(user, ts, bucket, (ts, L.DANMAKU, user))
            else:
                self._sale(room, event, kind, ts, bucket)
        if caught_up is not None:
            self._catch_up_time = reference  # the stream's time the catch-up has reached
        return rejected

    @staticmethod
    def _show(room: Room, event: Show, ts: float, bucket: int) -> bool:
        """A show event; False: over the show's cap on marks (nothing counted)."""
        action = event.action
        if action == "start":
            room.begin_show(event.show_id, ts, event.title)
        elif action in ("pin", "promo_start") and not room.show_event(event, ts, bucket, check_only=True):
            return False
        room.note_event(ts, bucket)
        if action == "end":
            room.end_show(ts, event.show_id, event.title)
            room.forget_kept()  # it may name the show (id, title) for its every instant
        room.show_event(event, ts, bucket)
        return True

    @staticmethod
    def _sale(room: Room, event: Any, kind: type, ts: float, bucket: int) -> None:
        """A danmaku, click or order (counted for the room's show by the caller)."""
        user = room.user_key(event.user_id)
        if kind is Danmaku:
            room.add_danmaku(user, bucket)
            room.interaction(user, ts, bucket, (ts, L.DANMAKU, user))
        elif kind is Click:
            target = event.target
            room.add_click(user, target, bucket)
            if target == "product" or target == "cart":
                room.product_click(user, ts, bucket, target, event.product_id)
            else:
                room.interaction(user, ts, bucket, (ts, L.CLICK, user, target, None))
        elif kind is Order:
            room.order(event, user, ts, bucket)

    # ---- admission (see EngineConfig.admit_events) ----

    def _candidate_event(self, event: AnyEvent, ts: float, reference: float | None,
                         rejected: list[tuple[AnyEvent, str]]) -> None:
        """An event of a room not tracked: held by the room's candidate, which it may admit."""
        config = self.config
        lateness, step = config.lateness, config.step
        room_id = event.room_id
        candidate = self.candidates.get(room_id)
        if candidate is not None and self._candidate_watermark(candidate, reference) > candidate.deadline:
            self._drop_candidate(candidate, ROOM_UNADMITTED)  # it missed: this event starts afresh
            candidate = None
        starts_show = type(event) is Show and event.action == "start"
        if candidate is None:
            watermark = ts - lateness  # a new room's, as in `ingest`: nothing is late yet
            admit = starts_show or config.admit_events <= 1
            if not self._room_free() or not (admit or self._candidate_free()):
                rejected.append((event, ROOM_LIMIT))
                return
            candidate = Candidate(room_id, ts, reference, math.ceil(watermark / step) - 1, ts + config.admit_within)
            if not admit:
                self.candidates[room_id] = candidate
        else:
            # The late rule of a tracked room (see `ingest`), on the candidate's clock.
            newest, seen_at = candidate.max_ts, candidate.seen_at
            if reference is not None and seen_at is not None and reference - seen_at > lateness:
                newest += reference - seen_at - lateness
            watermark = newest - lateness
            if ts < watermark or math.ceil(ts / step) <= candidate.frontier:
                rejected.append((event, LATE))
                return
            admit = starts_show or len(candidate.held) + 1 >= config.admit_events
            if admit and not self._room_free():
                self._drop_candidate(candidate, ROOM_LIMIT)
                rejected.append((event, ROOM_LIMIT))
                return
            if ts > candidate.max_ts or seen_at is None:
                candidate.seen_at = reference
                if ts > candidate.max_ts:
                    candidate.max_ts = ts
        if self.clock is None or ts > self.clock:
            self.clock = ts
        candidate.held.append((event, watermark))
        if admit:
            self._admit(candidate, watermark)

    def _admit(self, candidate: Candidate, watermark: float) -> Room:
        """Track the room: its held events applied in arrival order, each with the watermark it
        came with, so the room is what it would be had it been tracked from its first event."""
        self.candidates.pop(candidate.id, None)
        first, first_watermark = candidate.held[0]
        room = Room(candidate.id, self.config, first.ts, math.ceil(first_watermark / self.config.step) - 1)
        for event, at in candidate.held:
            self._apply(room, event, at)
        room.seen_at = candidate.seen_at
        self.rooms[candidate.id] = room
        if candidate.frontier > room.frontier:
            # `advance` made these instants final for the candidate: the same for the room, so
            # that its late rule stays that of a room tracked all along.
            self._finals_due.extend(self._finalize(room, candidate.frontier, watermark))
        return room

    def _apply(self, room: Room, event: Any, watermark: float) -> None:
        """One accepted event: what `ingest` does inline, through the Room's methods."""
        ts = event.ts
        bucket = math.ceil(ts / self.config.step)
        kind = type(event)
        if kind is Show:
            self._show(room, event, ts, bucket)  # a candidate holds no more marks than the cap
            return
        room.note_event(ts, bucket)
        if kind is View:
            room.view(event.user_id, event.action, ts, watermark, pack(event, room.regions) if event.action == "enter" else 0)
            room.view_stamps.setdefault(bucket, array("d")).append(ts)
        elif kind is Health:
            room.add_health(event, bucket)
        else:
            self._sale(room, event, kind, ts, bucket)

    def _candidate_watermark(self, candidate: Candidate, reference: float | None) -> float:
        """The watermark a candidate's expiry is judged by: a Room's (see `watermark`); for one
        restored from a checkpoint and not heard from since, on the newest ts of any room (as
        `forget_idle_rooms` judges such a room), so that it still expires."""
        if candidate.seen_at is None:
            clock = candidate.max_ts if self.clock is None else max(candidate.max_ts, self.clock)
            return max(candidate.max_ts, clock - self.config.lateness) - self.config.lateness
        return self.watermark(candidate, reference)

    def _age_candidates(self, reference: float | None) -> None:
        """Forget the candidates whose time ran out; move the others' frontiers as a room's."""
        step, lateness = self.config.step, self.config.lateness
        ceil = math.ceil
        missed = []
        for candidate in self.candidates.values():
            newest, seen_at = candidate.max_ts, candidate.seen_at
            if seen_at is None:
                if self._candidate_watermark(candidate, reference) > candidate.deadline:
                    missed.append(candidate)
                    continue
                watermark = newest - lateness
            else:
                # A Room's watermark (see `watermark`), inline: this runs for every candidate.
                if reference is not None and reference - seen_at > lateness:
                    newest += reference - seen_at - lateness
                watermark = newest - lateness
                if watermark > candidate.deadline:
                    missed.append(candidate)
                    continue
            last = ceil(watermark / step) - 1
            if last > candidate.frontier:
                candidate.frontier = last
        for candidate in missed:
            self._drop_candidate(candidate, ROOM_UNADMITTED)
        if missed and not self.candidates:
            self.candidates = {}  # a dict keeps its table after deletions: a flood's, here

    def _drop_candidate(self, candidate: Candidate, reason: str) -> None:
        del self.candidates[candidate.id]
        held = self._held_rejections
        for event, _ in candidate.held:
            if len(held) >= MAX_HELD_REJECTIONS:
                held.popleft()
                self.uncollected_rejections += 1
            held.append((event, reason))

    def _room_free(self) -> bool:
        cap = self.config.max_rooms
        return (cap is None or len(self.rooms) < cap) and (self.budget is None or self.budget.room_free())

    def _candidate_free(self) -> bool:
        cap = self.config.max_candidates
        return (cap is None or len(self.candidates) < cap) and (self.budget is None or self.budget.candidate_free())

    def end_catch_up(self, wall: float) -> None:
        """The backlog is read: the clocks a catch-up restarted (in event time, see `ingest`) run
        on with the wall clock from where they are, not from where the wall clock puts their
        event time (which would jump them by the backlog's age: years for an old recording)."""
        reached = self._catch_up_time  # not the engine's clock: a skewed client's ts may be ahead
        if reached is not None:
            for room_id in self._caught_up:
                room = self.rooms.get(room_id) or self.candidates.get(room_id)
                if room is not None and room.seen_at is not None:
                    room.seen_at = wall - max(0.0, reached - room.seen_at)
        self._caught_up.clear()
        self._catch_up_time = None

    def take_rejected(self) -> list[tuple[AnyEvent, str]]:
        """Held events rejected since the last call, as (event, reason): `room_unadmitted` (their
        room was never admitted) or `room_limit` (its admission found the rooms at a cap). `ingest`
        accepted them earlier (its own return holds only events it was given); the driver counts
        and dead-letters these. Call it each step, after `advance`."""
        taken = list(self._held_rejections)
        self._held_rejections = deque()
        return taken

    # ---- output ----

    def advance(self, wall: float | None = None, sink: Callable[[dict], Any] | None = None,
                lean: bool = False) -> list[dict]:
        """Make final every instant now before a room's watermark; return their snapshots in
        event-time order (rooms in order within an instant). With `sink`, each snapshot goes to
        `sink` as soon as it is made and none is returned: a caller that encodes or drops them one
        by one never holds a step's finals all at once (at 2,000 rooms, tens of MB of short-lived
        objects that would leave the heap fragmented). `lean`: the snapshots without the parts
        the recording does not keep (`room.LEAN_PARTS`)."""
        reference = self.reference(wall)
        due, self._finals_due = self._finals_due, []
        due.sort(key=_TS_KEY)
        step = self.config.step
        queue = []  # (next instant, room's order, last instant) of every room with instants to make final
        rooms = list(self.rooms.values())
        for order, room in enumerate(rooms):
            watermark = self.watermark(room, reference)
            last = math.ceil(watermark / step) - 1
            if last > room.frontier:
                room.sweep(last, watermark)
                queue.append((room.frontier + 1, order, last))
        heapq.heapify(queue)
        finals: list[dict] = []
        emit = finals.append if sink is None else sink
        if lean:
            due = [make_lean(made) for made in due]
        waiting = 0  # of `due`, those emitted
        while queue:
            t, order, last = queue[0]
            ts = t * step if step != 1 else t
            while waiting < len(due) and due[waiting]["ts"] <= ts:
                emit(due[waiting])
                waiting += 1
            room = rooms[order]
            room.settle(t)
            snapshot = room.final_snapshot(t, lean)
            if snapshot is not None:
                emit(snapshot)
            room.finalize_next()
            if t < last:
                heapq.heapreplace(queue, (t + 1, order, last))
            else:
                heapq.heappop(queue)
        for snapshot in due[waiting:]:
            emit(snapshot)
        if self.candidates:
            self._age_candidates(reference)
        return finals

    @staticmethod
    def _finalize(room: Room, last: int, watermark: float) -> list[dict]:
        """Final snapshots of the room's instants up to `last`."""
        finals = []
        if last > room.frontier:
            room.sweep(last, watermark)
        while room.frontier < last:
            t = room.frontier + 1
            room.settle(t)
            snapshot = room.final_snapshot(t)
            if snapshot is not None:
                finals.append(snapshot)
            room.finalize_next()
        return finals

    def live_snapshots(self, wall: float | None = None, deferred: bool = False) -> dict[str, dict]:
        """The provisional snapshot of every room at its live instant. `deferred`: their
        breakdowns and products are made by `complete_live` (see `Room.live_snapshot`)."""
        reference = self.reference(wall)
        live = {}
        for room_id, room in self.rooms.items():
            t = room.live_floor = self.live_instant(room, reference)
            room.sweep(t, self.watermark(room, reference))
            if t not in room.kept:  # (kept: nothing of `t` or before has come since)
                for b in range(room.frontier + 1, t + 1):
                    room.reattribute(b)  # the events arrived before an earlier enter of their user
            live[room_id] = room.live_snapshot(t, deferred)
        return live

    def complete_live(self) -> None:
        """The breakdowns and products of the live snapshots made `deferred`, put in them."""
        for room in self.rooms.values():
            room.complete_live()

    def finish(self, until: float | None = None) -> list[dict]:
        """End of input: every instant up to the newest `ts` (or `until`) becomes final. Rooms
        not admitted by then never will be: their held events go to `take_rejected`."""
        for candidate in list(self.candidates.values()):
            self._drop_candidate(candidate, ROOM_UNADMITTED)
        if self.clock is None:
            return []
        horizon = self.clock if until is None else max(self.clock, until)
        last = math.floor(horizon / self.config.step)
        finals, self._finals_due = self._finals_due, []
        for room in self.rooms.values():
            finals.extend(self._finalize(room, last, horizon + self.config.step))
            room.close_show()  # SPEC §6: at the end of the file, as of its last event
        finals.sort(key=lambda snapshot: snapshot["ts"])
        return finals

    # ---- show summaries (SPEC §10) ----

    def take_summaries(self) -> list[dict]:
        """The summaries of the shows that ended since the last call, oldest end first."""
        taken, self._summaries = self._summaries, []
        for room in self.rooms.values():
            if room.ledger.closed:
                taken.extend(room.ledger.take())
        taken.sort(key=lambda summary: summary["end"])
        return taken

    def show_summary(self, room_id: str) -> dict | None:
        """The provisional summary of a room's show going on (as of its final frontier)."""
        room = self.rooms.get(room_id)
        return None if room is None else room.provisional_summary()

    def forget_idle_rooms(self, wall: float | None = None) -> list[str]:
        """Drop rooms idle past their show's end; returns their ids."""
        reference = self.reference(wall)
        if reference is None:
            return []
        gone = []
        for room_id, room in self.rooms.items():
            now = self.room_clock(room, reference)
            show = room.shows[-1] if room.shows else None
            ended = show is not None and show.ended_at is not None and \
                now - self.config.lateness > show.ended_at + self.config.window
            if room.seen_at is None and self.clock is not None:
                now = max(now, self.clock)  # never heard from since a restore: judge by the newest ts
            if ended or now - room.max_ts > self.config.show_idle:
                gone.append(room_id)
        for room_id in gone:
            room = self.rooms.pop(room_id)
            room.close_show()
            self._summaries.extend(room.ledger.take())
        return gone

    # ---- state for checkpoints ----

    def export_rooms(self, room_ids: Iterable[str]) -> bytes:
        """The state of these rooms, with every candidate (the engine is one partition's: its
        candidates go with it) and the final snapshots of these rooms not yet taken by `advance`,
        as a versioned checkpoint document (see state.py)."""
        rooms = {room_id: to_state(self.rooms[room_id]) for room_id in room_ids if room_id in self.rooms}
        finals_due = [snapshot for snapshot in self._finals_due if snapshot["room_id"] in rooms]
        return state.encode({"format": state.FORMAT, "version": state.VERSION, "clock": self.clock,
                             "rooms": rooms,
                             "candidates": {room_id: to_state(c) for room_id, c in self.candidates.items()},
                             "finals_due": finals_due})

    def import_rooms(self, blob: bytes) -> list[str]:
        """Load `export_rooms` state, of this version or an older one (also the pickles written
        before the versioned format, see legacy.py); returns the room ids. Restored rooms count
        against the caps but are never refused."""
        collecting = gc.isenabled()
        gc.disable()  # a bulk load of new containers, no cycles: the collector would walk them over and over
        try:
            document = state.upgrade(legacy.load(blob)) if legacy.is_legacy(blob) else state.decode(blob)
            # A restored room's clock (`seen_at`, a reference time of another process, which is not
            # comparable) stays put until it is heard from: its events may still wait in the backlog.
            rooms = {room_id: Room.restore(self.config, room) for room_id, room in document["rooms"].items()}
        finally:
            if collecting:
                gc.enable()
        self.rooms.update(rooms)
        for room_id, candidate in document.get("candidates", {}).items():
            self.candidates[room_id] = from_state(Candidate.__new__(Candidate), candidate)
        self._finals_due.extend(document.get("finals_due", ()))
        clock = document["clock"]
        if clock is not None and (self.clock is None or clock > self.clock):
            self.clock = clock
        return list(rooms)

    def drop_rooms(self, room_ids: Iterable[str]) -> None:
        """Let these rooms (and candidates) go, e.g. to another owner; nothing is rejected."""
        for room_id in room_ids:
            self.rooms.pop(room_id, None)
            self.candidates.pop(room_id, None)
