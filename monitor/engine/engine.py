"""The metric engine: validated events in, snapshots out. No I/O and no clock of its own.

Time comes from the events (event time). A room's watermark is its newest `ts` less the allowed
lateness (SPEC §3); the instants before it are final. So that a silent room shows its silence, a
room's clock runs on from its newest `ts` along a reference time once no newer event has come:
the driver's wall clock in a worker, the newest `ts` of any room in a replay (which keeps a replay
independent of reading speed). The room's live instant is its clock less the lateness (or its
newest `ts`, whichever is later), and its watermark follows the live instant, one lateness behind.
"""

from __future__ import annotations

import math
import pickle
from typing import Iterable

from ..ingest.events import FUTURE, LATE, AnyEvent, Click, Danmaku, Health, Order, Show, View
from .config import EngineConfig
from .room import (BEACONS, C_BEACONS, C_ERRORS, C_PLAY_MS, C_STALL_MS, DANMAKU, ERRORS, EVENTS, PLAY_MS,
                   STALL_MS, STALLS, CdnStats, Room)
from .windows import LatencySketch


class Engine:
    def __init__(self, config: EngineConfig | None = None):
        self.config = config or EngineConfig()
        self.rooms: dict[str, Room] = {}
        self.clock: float | None = None  # newest accepted ts of any room

    # ---- time ----

    def reference(self, wall: float | None = None) -> float | None:
        """The time silent rooms move on with: the wall clock, else the newest ts of any room."""
        return wall if wall is not None else self.clock

    @staticmethod
    def room_clock(room: Room, reference: float | None) -> float:
        """The room's newest ts, run on by the reference time passed since it last rose."""
        if reference is None or room.seen_at is None or reference <= room.seen_at:
            return room.max_ts
        return room.max_ts + (reference - room.seen_at)

    def live_time(self, room: Room, reference: float | None) -> float:
        return max(room.max_ts, self.room_clock(room, reference) - self.config.lateness)

    def watermark(self, room: Room, reference: float | None) -> float:
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
        show_idle = config.show_idle
        bin_of = LatencySketch.bin_of
        for event in events:
            ts = event.ts
            if future is not None and ts > future:
                rejected.append((event, FUTURE))
                continue
            room_id = event.room_id
            room = rooms.get(room_id)
            if wall is None and (self.clock is None or ts > self.clock):
                reference = ts  # replay: the newest ts of any room, this event's included
            elif catching_up and ts > reference:
                reference = ts if ts < wall else wall
            # The room's watermark (see `watermark`), inline: this runs once per event.
            if room is None:
                watermark = ts - lateness
            else:
                newest = room.max_ts
                seen_at = room.seen_at
                if reference is not None and seen_at is not None and reference - seen_at > lateness:
                    newest += reference - seen_at - lateness
                watermark = newest - lateness
            bucket = math.ceil(ts / step)
            if ts < watermark or (room is not None and bucket <= room.frontier):
                rejected.append((event, LATE))  # older than the watermark, or of a final instant
                continue
            if room is None:
                frontier = math.ceil(watermark / step) - 1
                room = rooms[room_id] = Room(room_id, config, ts, frontier)
                room.seen_at = reference
            elif ts > room.max_ts or room.seen_at is None:
                room.seen_at = reference  # the room's clock restarts from this newer ts
            if self.clock is None or ts > self.clock:
                self.clock = ts
            kind = type(event)
            if kind is Show:
                if event.action == "start":
                    room.begin_show(event.show_id, ts, event.title)
                room.note_event(ts, bucket)
                if event.action == "end":
                    room.end_show(ts)
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
                room.view(event.user_id, event.action, ts, watermark)
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
                user = event.user_id
                slot = room.viewers.get(user)
                cdn.viewers.add(user if slot is None else room.users[slot], bucket)
            elif kind is Danmaku:
                vector[DANMAKU] += 1
                user = event.user_id
                slot = room.viewers.get(user)
                room.interacting.add(user if slot is None else room.users[slot], bucket)
            elif kind is Click:
                room.add_click(room.user_key(event.user_id), event.target, bucket)
            elif kind is Order:
                if event.status == "paid":
                    room.add_paid_order(event.order_id, room.user_key(event.user_id), event.amount, bucket)
        return rejected

    # ---- output ----

    def advance(self, wall: float | None = None) -> list[dict]:
        """Make final every instant now before a room's watermark; return their snapshots."""
        reference = self.reference(wall)
        finals = []
        for room in self.rooms.values():
            watermark = self.watermark(room, reference)
            finals.extend(self._finalize(room, math.ceil(watermark / self.config.step) - 1, watermark))
        finals.sort(key=lambda snapshot: snapshot["ts"])
        return finals

    @staticmethod
    def _finalize(room: Room, last: int, watermark: float) -> list[dict]:
        """Final snapshots of the room's instants up to `last`."""
        finals = []
        if last > room.frontier:
            room.sweep(last, watermark)
        while room.frontier < last:
            t = room.frontier + 1
            if room.has_activity(t):
                finals.append(room.snapshot(t))
            room.finalize_next()
        return finals

    def live_snapshots(self, wall: float | None = None) -> dict[str, dict]:
        """The provisional snapshot of every room at its live instant."""
        reference = self.reference(wall)
        live = {}
        for room_id, room in self.rooms.items():
            t = room.live_floor = self.live_instant(room, reference)
            room.sweep(t, self.watermark(room, reference))
            live[room_id] = room.snapshot(t)
        return live

    def finish(self, until: float | None = None) -> list[dict]:
        """End of input: every instant up to the newest `ts` (or `until`) becomes final."""
        if self.clock is None:
            return []
        horizon = self.clock if until is None else max(self.clock, until)
        last = math.floor(horizon / self.config.step)
        finals = []
        for room in self.rooms.values():
            finals.extend(self._finalize(room, last, horizon + self.config.step))
        finals.sort(key=lambda snapshot: snapshot["ts"])
        return finals

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
            del self.rooms[room_id]
        return gone

    # ---- state for checkpoints ----

    def export_rooms(self, room_ids: Iterable[str]) -> bytes:
        rooms = {room_id: self.rooms[room_id] for room_id in room_ids if room_id in self.rooms}
        return pickle.dumps({"clock": self.clock, "rooms": rooms}, protocol=pickle.HIGHEST_PROTOCOL)

    def import_rooms(self, blob: bytes) -> list[str]:
        state = pickle.loads(blob)
        for room in state["rooms"].values():
            room.config = self.config
            # A reference time of another process is not comparable; and a restored room's events
            # may still be waiting in the backlog: its clock stays put until it is heard from.
            room.seen_at = None
        self.rooms.update(state["rooms"])
        if state["clock"] is not None and (self.clock is None or state["clock"] > self.clock):
            self.clock = state["clock"]
        return list(state["rooms"])

    def drop_rooms(self, room_ids: Iterable[str]) -> None:
        for room_id in room_ids:
            self.rooms.pop(room_id, None)
