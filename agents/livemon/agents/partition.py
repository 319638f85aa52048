"""One owned event partition: its rooms' engine, the offsets it reflects, the messages received
and not yet applied, and the step. No I/O: the worker (`runtime.py`) and `livemon bench` drive it
with Kafka messages and the wall clock, and do the sending themselves.

The merge: the input topics of a partition arrive as separate streams; after a takeover or a
pause their backlogs come in chunks per topic, so one topic can run tens of seconds of event time
ahead of another, and the engine would reject the slower one's events as late. Like Kafka
Streams, a partition's messages are applied in timestamp order across its topics, holding a
topic's messages while another topic with unread messages has not yet caught up to them, for at
most `HOLD_SECONDS`, or `UNREAD_HOLD_SECONDS` while the broker says that topic has more (its
fetches starved by the others' backlog: slow, not silent). A message up to `MERGE_SLACK` ahead
of the lagging topic is not held: the engine takes events out of order within its lateness
anyway, and producers send one-second envelopes, so a steady stream always has some topic a
second behind. Held for it, a lone order waited for the other topics' next envelopes and missed
a step: in the soak, 2.1-2.2 s from sending to `/metrics` instead of 1.0 s.

Timestamps are the records' (CreateTime), taken to follow the events' time: true of a producer
sending live, and of one that stamps a backlog with its events' time (`livemon bench` does). A
backlog sent faster than it happened and stamped with the sending time squeezes more event time
into the slack than the lateness allows.
"""

from __future__ import annotations

import heapq
import math
import operator
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, NamedTuple

import orjson

from livemon.agents.fetching import unreadable_batch
from livemon.engine import Engine
from livemon.ingest.events import INVALID_JSON, decode, encode, event_type
from livemon.ingest.routing import ForwardMarks, Part, Partitioner, decode_forward
from livemon.topics import INPUT_TOPICS, REPARTITION_TOPIC, TOPIC_OF_TYPE, TYPE_OF_TOPIC

# A partition with messages waiting unread this long is behind (see `Partition.behind`).
BEHIND_AFTER = 1.0
# Longest a partition's messages wait for a lagging topic of the same partition (see the merge).
HOLD_SECONDS = 3.0
# The same for a lagging topic with messages still unread at the broker: it is slow, not silent
# (its fetches starved by the other topics' backlog), and going on without it would make its
# events late. Bounded, so that a topic whose fetches fail does not hold the others for ever.
UNREAD_HOLD_SECONDS = 30.0
# How far ahead of a lagging topic a message is applied without waiting (at most half the
# engine's lateness, so the lagging topic's events are never late for it).
MERGE_SLACK = 1.5

_ROOM_ID = operator.attrgetter("room_id")

Highwater = Callable[[str, int], "int | None"]  # (topic, partition) -> the broker's high-water mark


class Reject(NamedTuple):
    """Something that goes to the dead-letter topic: an event, or what is not one (reasons
    starting `batch_` or `record_`, see `NOT_EVENTS`)."""

    reason: str
    raw: bytes
    detail: str
    topic: str
    key: str | None

    @classmethod
    def of_event(cls, event, reason: str, detail: str) -> "Reject":
        """A valid event the engine refused (late, future, a room not admitted or over a cap)."""
        return cls(reason, encode(event), detail, TOPIC_OF_TYPE[event_type(event)], event.room_id)


# Reasons of rejects that are not events: counted by their own metrics.
NOT_EVENTS = ("batch_", "record_")


@dataclass
class Applied:
    """What applying messages produced, for the driver to count and send."""

    counts: Counter = field(default_factory=Counter)  # event type -> valid events applied
    rejects: list[Reject] = field(default_factory=list)
    rerouted: Counter = field(default_factory=Counter)  # topic -> events set aside for other partitions
    batches: Counter = field(default_factory=Counter)  # reason -> unreadable batches skipped
    records: Counter = field(default_factory=Counter)  # topic -> poison records of our own topics
    newest: float | None = None  # newest event time applied


@dataclass
class Partition:
    """One event partition this worker owns."""

    number: int
    engine: Engine
    offsets: dict[str, int] = field(default_factory=dict)  # topic -> next offset to apply
    # Forwarded events already applied, per source (see ingest/routing.py); checkpointed with
    # the offsets.
    marks: ForwardMarks = field(default_factory=ForwardMarks)
    checkpointed: dict[str, int] = field(default_factory=dict)  # offsets of our last checkpoint
    # Received but not yet applied (see the merge): a heap of (timestamp, seq, message).
    pending: list = field(default_factory=list)
    received: dict[str, int] = field(default_factory=dict)  # topic -> next offset to receive
    newest: dict[str, float] = field(default_factory=dict)  # topic -> newest timestamp received
    heard: dict[str, float] = field(default_factory=dict)  # topic -> monotonic time of last message
    loaded_at: float = field(default_factory=time.monotonic)
    # An alert or incident of its rooms changed: checkpoint soon, even without new offsets, so a
    # successor does not fire or open it a second time.
    alerts_changed: bool = False
    # The engine runs a silent room's clock on with the wall clock. While fetching is paused (a
    # rebalance) that is wrong: the events are there, we just do not read them, and on resuming
    # the engine would call the first seconds of the backlog late. So each partition's engine
    # gets a wall clock that stands still while the partition is paused.
    pause_start: float | None = None
    pause_total: float = 0.0
    # Likewise while the partition is behind (messages wait unread at the broker: a saturated
    # worker, a stuck consumer, a takeover's backlog): a room whose next events are still in the
    # backlog is not silent, and running its clock on with the wall clock would reject that
    # backlog as late. While behind, silent rooms move on with the stream's own time instead: the
    # newest event time applied (the engine's `catching_up`).
    behind: bool = False
    behind_since: float | None = None  # monotonic time since messages wait unread
    # Show summaries (SPEC §10) taken from the engine and not yet acknowledged by the broker: the
    # driver publishes them and drops them once sent; a checkpoint is written only while this is
    # empty (see `Ownership._checkpoint`), so a summary is either on the broker or still in the
    # checkpointed state, where a successor takes it again.
    summaries: list[dict] = field(default_factory=list)
    # Rooms restored from a checkpoint keep their clocks still until heard from (their events may
    # wait in the backlog). A room that is never heard from again (its show ended before the
    # checkpoint) would then never have its last instants final, nor its show summary: once the
    # partition has caught up, nothing of theirs waits, and their clocks run on from then.
    restored: bool = False

    # ---- clocks ----

    def wall(self, now: float) -> float:
        return (self.pause_start if self.pause_start is not None else now) - self.pause_total

    def step_clock(self, now: float) -> float:
        wall = self.wall(now)
        clock = self.engine.clock
        return min(wall, clock) if self.behind and clock is not None else wall

    def pause(self, now: float) -> None:
        if self.pause_start is None:
            self.pause_start = now

    def resume(self, now: float) -> None:
        if self.pause_start is not None:
            self.pause_total += max(0.0, now - self.pause_start)
            self.pause_start = None

    # ---- receiving ----

    def receive(self, message, sequence: int, now: float) -> None:
        """Queue a message to apply in the merge order (the caller skips redeliveries)."""
        topic = message.topic
        self.received[topic] = message.offset + 1
        self.resume(now)
        # Never below the topic's previous timestamp: within a topic, messages must be applied
        # in offset order, or the offsets we checkpoint would not describe the state.
        stamp = max(message.timestamp or 0, self.newest.get(topic, 0))
        self.newest[topic] = stamp
        self.heard[topic] = time.monotonic()
        heapq.heappush(self.pending, (stamp, sequence, message))

    def forget_offsets(self) -> None:
        """Keep the state, count offsets from 0 again (the broker lost its log)."""
        self.offsets, self.received, self.checkpointed = {}, {}, {}
        self.marks = ForwardMarks()  # the source offsets start again at 0 as well

    def release_bound(self, highwater: Highwater) -> float:
        """Messages up to this timestamp can be applied now (see the merge in the module doc)."""
        bound = math.inf
        now = time.monotonic()
        for topic in INPUT_TOPICS:
            high = highwater(topic, self.number)
            fresh = topic in self.heard or now - self.loaded_at > HOLD_SECONDS
            if high is not None and self.received.get(topic, 0) >= high and fresh:
                # Nothing more to read on this topic: it holds nothing back. (Right after an
                # assignment the high watermark is the one from before the pause: not trusted.)
                continue
            unread = high is not None and self.received.get(topic, 0) < high
            if now - self.heard.get(topic, self.loaded_at) > (UNREAD_HOLD_SECONDS if unread else HOLD_SECONDS):
                continue  # silent for a while (or no data at all): do not wait for it
            bound = min(bound, self.newest.get(topic, -math.inf))
        return bound + min(MERGE_SLACK, self.engine.config.lateness / 2)

    def check_behind(self, highwater: Highwater) -> None:
        """Behind: messages have waited unread for over BEHIND_AFTER s (right after a fetch
        nothing waits; a backlog keeps messages waiting fetch after fetch), or wait before the
        partition has read any. It stays so for the batch that brings the backlog in, and ends
        at the next check."""
        if self.behind and self.pending and time.time() - self.pending[0][0] > HOLD_SECONDS:
            # The backlog is read but not all applied yet (a slice at a time, or held for the
            # merge): no merge holds a message that long, and ending the catch-up now would
            # reject the rest as late on the wall clock.
            return
        waiting = any((high := highwater(topic, self.number)) is not None and high > self.received.get(topic, 0)
                      for topic in INPUT_TOPICS)
        if not waiting:
            self.behind_since, self.behind = None, False
            return
        now = time.monotonic()
        if self.behind_since is None:
            # Nothing read yet (a start, a takeover, a lost log) and messages wait: a backlog written
            # before we came, behind at once (its first batch would be late on the wall clock).
            self.behind_since = now if self.received else -math.inf
        self.behind = now - self.behind_since > BEHIND_AFTER

    def caught_up(self, highwater: Highwater) -> bool:
        if self.pending or time.monotonic() - self.loaded_at < HOLD_SECONDS:
            return False
        for topic in INPUT_TOPICS:
            high = highwater(topic, self.number)
            if high is None or self.received.get(topic, 0) < high:
                return False
        return True

    # ---- applying ----

    def apply_due(self, bound: float, home: Partitioner, wall: float, out: Applied,
                  strays: dict[int, list[Part]], limit: float = math.inf) -> float:
        """Apply the pending messages up to `bound` (a timestamp), at most `limit` of them, to the
        engine. Events of other partitions' rooms go into `strays` (target partition -> parts)
        for the driver to forward. Returns the newest timestamp of a message with strays (0 if none)."""
        events = []
        stray_stamp = 0.0
        pending = self.pending
        partition = self.number
        taken = 0
        while pending and pending[0][0] <= bound and taken < limit:
            taken += 1
            stamp, _, message = heapq.heappop(pending)
            topic = message.topic
            self.offsets[topic] = message.offset + 1
            if message.value is None:
                skipped = unreadable_batch(message)
                if skipped is not None:
                    out.batches[skipped.reason] += 1
                    record = orjson.dumps({"partition": partition, "first_offset": skipped.first,
                                           "last_offset": skipped.last, "reason": skipped.reason})
                    out.rejects.append(Reject(
                        f"batch_{skipped.reason}", record,
                        f"unreadable record batch ({skipped.reason}) at {topic}/{partition} offsets "
                        f"{skipped.first}-{skipped.last}: {skipped.detail}", topic, None))
                else:
                    out.rejects.append(Reject(INVALID_JSON, b"", "a null value (tombstone) carries no event",
                                              topic, _key_text(message.key)))
                continue
            if topic == REPARTITION_TOPIC:
                events.extend(self._forwarded(message, out))
                continue
            good, bad = decode(message.value, topic)
            for rejection in bad:
                out.rejects.append(Reject(rejection.reason, rejection.raw, rejection.detail, topic,
                                          _key_text(message.key)))
            # Per distinct room (an envelope is usually one room): a set at C speed, then one
            # partition lookup per room.
            if good and any(home(room) != partition for room in set(map(_ROOM_ID, good))):
                good = self._set_aside(good, home, topic, message.offset, strays, out)
                stray_stamp = max(stray_stamp, stamp)
            events.extend(good)
            out.counts[TYPE_OF_TOPIC[topic]] += len(good)
        if events:
            if not self.behind:
                self.engine.end_catch_up(self.wall(wall))
            for event, reason in self.engine.ingest(events, self.wall(wall), catching_up=self.behind):
                out.counts[event_type(event)] -= 1
                out.rejects.append(Reject.of_event(event, reason, f"{reason} event (ts {event.ts})"))
            newest = max(map(_TS, events))
            out.newest = newest if out.newest is None else max(out.newest, newest)
        return stray_stamp

    def _set_aside(self, events: list, home: Partitioner, topic: str, offset: int,
                   strays: dict[int, list[Part]], out: Applied) -> list:
        """The events of a message that live on this partition; the others go into `strays`."""
        ours = []
        for event in events:
            target = home(event.room_id)
            if target == self.number:
                ours.append(event)
                continue
            parts = strays.setdefault(target, [])
            if parts and parts[-1].offset == offset and parts[-1].topic == topic:
                parts[-1].events.append(event)
            else:
                parts.append(Part(topic, offset, [event]))
        out.rerouted[topic] += len(events) - len(ours)
        return ours

    def _forwarded(self, message, out: Applied) -> list:
        """The events of a forward record not applied before (see ingest/routing.py)."""
        forward, problem = decode_forward(message.value)
        if problem is not None:
            out.records[message.topic] += 1
            out.rejects.append(Reject("record_invalid", problem.raw, problem.detail, message.topic, None))
            return []
        events = []
        for part in forward.parts:
            if self.marks.accept(forward.source, part):
                events.extend(part.events)
                out.counts[TYPE_OF_TOPIC[part.topic]] += len(part.events)
        return events

    # ---- the step ----

    def step(self, now: float, highwater: Highwater, rejects: list[Reject]) -> tuple[list, dict[str, dict]]:
        """Advance the engine to the wall clock `now`: (final snapshots, live snapshots by room);
        see `live_step` and `final_step`, its two halves."""
        clock, live = self.live_step(now, highwater)
        return self.final_step(clock, rejects), live

    def live_step(self, now: float, highwater: Highwater,
                  deferred: bool = False) -> tuple[float, dict[str, dict]]:
        """The first half of a step: the partition's clock at the wall clock `now`, and the live
        snapshots by room at it (what /metrics, alerting and the page show). First, so that they
        show before the final snapshots are made: those only go to the recording. `deferred`:
        their breakdowns and products follow with `complete_live`."""
        if self.pause_start is not None and self.caught_up(highwater):
            self.resume(now)  # nothing came after the pause because nothing was sent
        self.check_behind(highwater)
        if not self.behind:
            self.engine.end_catch_up(self.wall(now))  # (nothing to do unless a catch-up just ended)
        if self.restored and self.caught_up(highwater):
            self.restored = False
            self.start_restored_clocks(now)
        clock = self.step_clock(now)
        return clock, self.engine.live_snapshots(clock, deferred)

    def complete_live(self) -> None:
        self.engine.complete_live()

    def final_step(self, clock: float, rejects: list[Reject]) -> list[tuple[float, bytes]]:
        """The second half: the final snapshots up to `clock`, each as (ts, its JSON), encoded as
        soon as it is made (see `Engine.advance`), lean (without the breakdowns and products,
        which the recording does not keep); rooms idle past their show's end are forgotten.
        Events the engine held for a room and rejects now (a room never admitted, or over a cap at
        admission) go to `rejects`. The summaries of the shows that ended (those of forgotten
        rooms included) join `summaries`."""
        finals: list[tuple[float, bytes]] = []
        # Lean: they go only to the recording (see `room.LEAN_PARTS`).
        self.engine.advance(clock, sink=lambda snapshot: finals.append((snapshot["ts"], orjson.dumps(snapshot))),
                            lean=True)
        for event, reason in self.engine.take_rejected():
            rejects.append(Reject.of_event(event, reason, f"{reason}: room {event.room_id} (ts {event.ts})"))
        self.engine.forget_idle_rooms(clock)
        self.summaries.extend(self.engine.take_summaries())
        return finals

    def start_restored_clocks(self, now: float) -> None:
        """Rooms restored and not heard from since: their clocks run on from now, as a room's
        that fell silent now (the engine's `seen_at`, None for a restored room)."""
        wall = self.wall(now)
        for room in self.engine.rooms.values():
            if room.seen_at is None:
                room.seen_at = wall


class Record(NamedTuple):
    """A Kafka record as `Partition.receive` takes it (as the worker's consumer, Faust, hands it
    on): its timestamp in seconds."""

    topic: str
    partition: int
    offset: int
    timestamp: float
    key: bytes | None
    value: bytes | None
    headers: tuple = ()


class Step(NamedTuple):
    finals: list[tuple]  # final snapshots as (ts, their JSON), in event-time order
    live: dict[str, dict]  # live snapshots by room
    rejects: list[Reject]  # held events rejected at this step
    summaries: list[dict]  # summaries of shows ended at this step (also in each `Partition.summaries`)


def step_all(partitions, now: float, highwater: Highwater) -> Step:
    """One step of every partition."""
    step = Step([], {}, [], [])
    for partition in partitions:
        unsent = len(partition.summaries)
        partition_finals, partition_live = partition.step(now, highwater, step.rejects)
        step.finals.extend(partition_finals)
        step.live.update(partition_live)
        step.summaries.extend(partition.summaries[unsent:])
    step.finals.sort(key=_FIRST)
    return step


_TS = operator.attrgetter("ts")
_FIRST = operator.itemgetter(0)


def _key_text(key) -> str | None:
    if not key:
        return None
    try:
        return key.decode("utf-8") if isinstance(key, bytes) else str(key)
    except UnicodeDecodeError:
        return None
