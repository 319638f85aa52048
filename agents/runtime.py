"""What one worker process holds and does: the engine, partition ownership, checkpoints, steps.

The Faust app (`livemon.agents.app`) delivers drained batches of raw messages and rebalance
signals here; everything else happens in this one event loop, so the engine needs no locks.

Exactly-once effect on the engine state, with an at-least-once consumer:
- per owned partition p we keep `offsets[topic]`, the next offset to apply; a message below it is
  already reflected in the state and is skipped (redelivery after a rebalance or a restart);
- every `checkpoint_interval` the state of p's rooms and those offsets are written together to
  the checkpoint topic (see `checkpoints.py`), and only then committed as the group's offsets, so
  the committed position never passes the newest checkpoint;
- a worker that gains p loads the newest checkpoint before it applies any message of p.

Each owned partition has its own engine instance (the same engine code throughout). The engine's
clock runs on the newest event time it has seen; a partition taken over from a killed worker is
replayed from its checkpoint while the worker's other partitions are live, and a clock shared
with them would reject that whole backlog as late. Per partition, a catching-up partition keeps
its own clock, exactly as it would have had on the worker that owned it before.
"""

from __future__ import annotations

import asyncio
import base64
import heapq
import itertools
import logging
import math
import operator
import os
import socket
import time
from collections import Counter
from dataclasses import dataclass, field

import orjson
from aiohttp import web
from aiokafka import AIOKafkaProducer

from livemon.agents.checkpoints import Checkpoint, CheckpointStore, ahead
from livemon.alerting.service import AlertService
from livemon.agents.fetching import unreadable_batch
from livemon.agents.forwarding import Forwarder
from livemon.agents.watchdog import Watchdog, stall_hook
from livemon.broker import CHECKPOINT_TOPIC, INPUT_TOPICS, REPARTITION_TOPIC, SNAPSHOTS_TOPIC
from livemon.engine import Engine, EngineConfig
from livemon.exposition import RoomCollector, WorkerMetrics
from livemon.ingest.events import DEADLETTER_TOPIC, INVALID_JSON, TYPE_OF_TOPIC, decode, encode, event_type
from livemon.ingest.routing import ForwardMarks, Part, Partitioner, decode_forward
from livemon.recording.store import RecordingStore
from livemon.web.hub import ControlRoomHub
from livemon.web.server import add_routes, control_token

log = logging.getLogger(__name__)

# Snapshots per record on the snapshots topic: a step of a worker with thousands of rooms would
# exceed the broker's message size as one record.
SNAPSHOTS_PER_RECORD = 500
MAX_DEADLETTER_RAW = 64 * 1024
# Dead-letter reasons of what is not an event (an unreadable batch, a poison record of our own
# topics): counted by their own metrics, not in livemon_events_rejected_total.
NOT_EVENTS = ("batch_", "record_")
# Steps run this fraction of a step after each instant (see `_step_loop`).
STEP_OFFSET = 0.4
# A partition with messages waiting unread this long is behind (see `Owned.behind`).
BEHIND_AFTER = 1.0
# Longest a partition's messages wait for a lagging topic of the same partition (see _release_bound).
HOLD_SECONDS = 3.0


@dataclass
class WorkerSettings:
    bootstrap: str
    web_host: str = "127.0.0.1"
    web_port: int = 6066
    partitions: int = 8
    data_dir: str | None = None
    step: float = 1.0
    window: float = 60.0
    lateness: float = 5.0
    presence_timeout: float = 90.0
    checkpoint_interval: float = 5.0
    worker_id: str = field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}")
    batch_max: int = 2000  # messages per drained batch
    batch_within: float = 0.05  # seconds to wait for a batch to fill
    group: str = "livemon"
    alerts_config: str | None = None  # alert rules and receivers; None: no alerting
    recording_dir: str | None = None  # where the web component records timelines (None: its default)
    token: str | None = None  # control-action token of the web page (None: $LIVEMON_TOKEN or generated)
    web_page: bool = True  # the control-room page (routes); /metrics and /healthz are always served
    recording: bool = True  # record every show's timeline for the post-show review
    future_limit: float = 300.0  # events further ahead of the wall clock are rejected (`future`)
    stall_after: float = 30.0  # seconds without progress despite lag before the watchdog calls it stuck

    def engine_config(self) -> EngineConfig:
        return EngineConfig(step=self.step, window=self.window, lateness=self.lateness,
                            presence_timeout=self.presence_timeout, future_limit=self.future_limit)


@dataclass
class Owned:
    """One event partition this worker owns: its rooms' engine and the offsets it reflects."""

    engine: Engine
    offsets: dict[str, int] = field(default_factory=dict)  # topic -> next offset to apply
    # Forwarded events already applied, per source (see ingest/routing.py); checkpointed with
    # the offsets.
    marks: ForwardMarks = field(default_factory=ForwardMarks)
    checkpointed: dict[str, int] = field(default_factory=dict)  # offsets of our last checkpoint
    # Received but not yet applied (see `_release_bound`): a heap of (timestamp, seq, message).
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

    def wall(self, now: float) -> float:
        return (self.pause_start if self.pause_start is not None else now) - self.pause_total

    def step_clock(self, now: float) -> float:
        wall = self.wall(now)
        clock = self.engine.clock
        return min(wall, clock) if self.behind and clock is not None else wall

    def resume(self, now: float) -> None:
        if self.pause_start is not None:
            self.pause_total += max(0.0, now - self.pause_start)
            self.pause_start = None


class StreamRuntime:
    def __init__(self, settings: WorkerSettings, consumer_ref=None):
        self.settings = settings
        self.engine_config = settings.engine_config()
        self.collector = RoomCollector()
        self.metrics = WorkerMetrics()
        # A callable returning the Faust consumer (set by the app): for commits, lag and assignment.
        self.consumer_ref = consumer_ref
        self.owned: dict[int, Owned] = {}
        # The partition each room lives on, as the producers' partitioner picks it.
        self.home = Partitioner(settings.partitions)
        self.forwarder: Forwarder | None = None
        self.loading: dict[int, asyncio.Future] = {}
        # Cleared from a revocation until the next assignment is handled: no batch is applied in
        # between, because the assignment may replace a partition's state.
        self.settled = asyncio.Event()
        self.producer: AIOKafkaProducer | None = None
        self.checkpoint_producer: AIOKafkaProducer | None = None
        self.store: CheckpointStore | None = None
        self.alerts = None
        self.web_runner: web.AppRunner | None = None
        self.web_app: web.Application | None = None
        self.ready = False
        self.last_live: dict = {}
        self._checkpoint_lock = asyncio.Lock()
        self._checkpoint_soon = asyncio.Event()  # an alert changed: do not wait for the interval
        self._step_events: Counter = Counter()
        self._sequence = itertools.count()
        self._tasks: list[asyncio.Task] = []
        self._stopping = False
        self.watchdog = Watchdog(self, stall_after=settings.stall_after)

    # ---- lifecycle ----

    async def start(self) -> None:
        # Step records (snapshots), alerts and dead letters are JSON: gzip makes them 3-5 times
        # smaller on the wire and on the broker. Checkpoints compress themselves (off the event
        # loop), so they go through a producer of their own, uncompressed.
        self.producer = AIOKafkaProducer(bootstrap_servers=self.settings.bootstrap, acks="all",
                                         linger_ms=5, max_request_size=2 * 1024 * 1024,
                                         compression_type="gzip",
                                         client_id=f"livemon-{self.settings.worker_id}")
        await self.producer.start()
        self.checkpoint_producer = AIOKafkaProducer(bootstrap_servers=self.settings.bootstrap, acks="all",
                                                    linger_ms=0, max_request_size=2 * 1024 * 1024,
                                                    client_id=f"livemon-{self.settings.worker_id}-checkpoints")
        await self.checkpoint_producer.start()
        self.forwarder = Forwarder(self.producer.send, REPARTITION_TOPIC)
        self.store = CheckpointStore(self.settings.bootstrap, self.checkpoint_producer, self.settings.partitions,
                                     on_rejected=self.metrics.records_rejected.labels(CHECKPOINT_TOPIC).inc)
        await self.start_web()
        self.alerts = await _start_alerts(self)
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._step_loop(), name="livemon-step"),
                       loop.create_task(self._checkpoint_loop(), name="livemon-checkpoint"),
                       loop.create_task(self.watchdog.run(), name="livemon-watchdog")]
        if self.alerts is not None:
            self._tasks.append(loop.create_task(_operator_loop(self), name="livemon-operator"))

    async def stop(self) -> None:
        """Final checkpoint while still a group member, then release everything."""
        if self._stopping:
            return
        self._stopping = True
        for task in self._tasks:
            task.cancel()
        try:
            await asyncio.wait_for(self.checkpoint_round(commit=True), timeout=10)
        except Exception as error:  # noqa: BLE001 - shutting down: the last periodic one stands
            log.warning("final checkpoint failed: %r", error)
        if self.forwarder is not None:
            await self.forwarder.close()
        if self.alerts is not None:
            await self.alerts.stop()
        if self.web_runner is not None:
            await self.web_runner.cleanup()
        if self.store is not None:
            await self.store.close()
        for producer in (self.producer, self.checkpoint_producer):
            if producer is not None:
                await producer.stop()

    @property
    def room_count(self) -> int:
        return sum(len(state.engine.rooms) for state in self.owned.values())

    # ---- the data path ----

    async def process(self, messages) -> None:
        """Take one drained batch of Kafka messages (with topic, partition, offset, key, value,
        timestamp) and apply what is due."""
        await stall_hook()
        started = time.perf_counter()
        await self.settled.wait()
        partitions = {m.partition for m in messages}
        for partition in partitions:
            if partition in self.loading:
                await self.loading[partition]
        owned = self.owned
        for partition in partitions:
            if partition in owned:  # before this batch counts as received: is it a backlog?
                self._check_behind(partition, owned[partition])
        touched = set()
        for message in messages:
            state = owned.get(message.partition)
            if state is None:
                continue  # not ours (any more): its owner resumes from its checkpoint
            topic, offset = message.topic, message.offset
            if offset < state.received.get(topic, 0):
                if not self._log_lost(message):
                    continue  # already applied or waiting (redelivery after a rebalance or restart)
                await self._forget_offsets(message.partition, state)
            state.received[topic] = offset + 1
            if state.pause_start is not None:
                state.resume(time.time())
            # Never below the topic's previous timestamp: within a topic, messages must be applied
            # in offset order, or the offsets we checkpoint would not describe the state.
            stamp = max(message.timestamp or 0, state.newest.get(topic, 0))
            state.newest[topic] = stamp
            state.heard[topic] = time.monotonic()
            heapq.heappush(state.pending, (stamp, next(self._sequence), message))
            touched.add(message.partition)
        self.metrics.messages.inc(len(messages))
        await self._apply_due(touched)
        self.metrics.batch_seconds.observe(time.perf_counter() - started)

    def _log_lost(self, message) -> bool:
        """The partition's log now ends before what we already received: the broker lost it (a
        memory-only broker restarted) and offsets start again at 0."""
        consumer = self.consumer_ref() if self.consumer_ref else None
        try:
            high = consumer.highwater(_tp(message.topic, message.partition)) if consumer else None
        except Exception:  # noqa: BLE001 - not fetched yet
            return False
        state = self.owned[message.partition]
        return high is not None and high < state.received.get(message.topic, 0)

    async def _forget_offsets(self, partition: int, state: "Owned") -> None:
        """Keep the state, start the partition's offsets again at 0 (see `_log_lost`)."""
        await self._apply_due([partition], everything=True)
        log.warning("partition %d: the broker lost its log (offsets %s); counting on from offset 0",
                    partition, state.offsets)
        state.offsets, state.received, state.checkpointed = {}, {}, {}
        state.marks = ForwardMarks()  # the source offsets start again at 0 as well
        self.watchdog.log_resets.inc()

    def _release_bound(self, partition: int, state: "Owned") -> float:
        """Messages of the partition up to this Kafka timestamp can be applied now.

        The six topics of a partition arrive as separate streams; after a takeover or a pause
        their backlogs come in chunks per topic, so one topic can run tens of seconds of event
        time ahead of another, and the engine would reject the slower one's events as late.
        Like Kafka Streams, we apply a partition's messages in timestamp order across its topics,
        holding a topic's messages while another topic with unread messages has not yet caught
        up to them, for at most `HOLD_SECONDS`.
        """
        consumer = self.consumer_ref() if self.consumer_ref else None
        bound = math.inf
        now = time.monotonic()
        for topic in INPUT_TOPICS:
            received = state.received.get(topic, 0)
            try:
                high = consumer.highwater(_tp(topic, partition)) if consumer is not None else None
            except Exception:  # noqa: BLE001 - not fetched yet
                high = None
            fresh = topic in state.heard or now - state.loaded_at > HOLD_SECONDS
            if high is not None and received >= high and fresh:
                # Nothing more to read on this topic: it holds nothing back. (Right after an
                # assignment the high watermark is the one from before the pause: not trusted.)
                continue
            if now - state.heard.get(topic, state.loaded_at) > HOLD_SECONDS:
                continue  # silent for a while (or no data at all): do not wait for it
            bound = min(bound, state.newest.get(topic, -math.inf))
        return bound

    def _check_behind(self, partition: int, state: "Owned") -> None:
        """Behind: messages of the partition have waited unread for over BEHIND_AFTER s (right
        after a fetch nothing waits; a backlog keeps messages waiting fetch after fetch). It
        stays so for the batch that brings the backlog in, and ends at the next check."""
        waiting = any((high := self._highwater(topic, partition)) is not None
                      and high > state.received.get(topic, 0) for topic in INPUT_TOPICS)
        if not waiting:
            state.behind_since, state.behind = None, False
            return
        now = time.monotonic()
        if state.behind_since is None:
            state.behind_since = now
        state.behind = now - state.behind_since > BEHIND_AFTER

    def _highwater(self, topic: str, partition: int) -> int | None:
        """The broker's high-water mark of (topic, partition) as last fetched; None before."""
        consumer = self.consumer_ref() if self.consumer_ref else None
        try:
            return consumer.highwater(_tp(topic, partition)) if consumer is not None else None
        except Exception:  # noqa: BLE001 - not fetched yet
            return None

    def _caught_up(self, partition: int, state: "Owned") -> bool:
        if state.pending or time.monotonic() - state.loaded_at < HOLD_SECONDS:
            return False
        consumer = self.consumer_ref() if self.consumer_ref else None
        if consumer is None:
            return True
        for topic in INPUT_TOPICS:
            try:
                high = consumer.highwater(_tp(topic, partition))
            except Exception:  # noqa: BLE001 - not fetched yet
                return False
            if high is None or state.received.get(topic, 0) < high:
                return False
        return True

    async def _apply_due(self, partitions, everything: bool = False) -> None:
        now = time.time()
        counts: Counter = Counter()
        rejects: list[tuple[str, bytes, str, str, str | None]] = []
        newest = None
        home = self.home
        for partition in partitions:
            state = self.owned.get(partition)
            if state is None or not state.pending:
                continue
            bound = math.inf if everything else self._release_bound(partition, state)
            events = []
            strays: dict[int, list[Part]] = {}  # target partition -> parts to forward there
            stray_stamp = 0
            pending = state.pending
            while pending and pending[0][0] <= bound:
                stamp, _, message = heapq.heappop(pending)
                topic = message.topic
                state.offsets[topic] = message.offset + 1
                if message.value is None:
                    skipped = unreadable_batch(message)
                    if skipped is not None:
                        self._batch_rejected(skipped, message, rejects)
                    else:
                        rejects.append((INVALID_JSON, b"", "a null value (tombstone) carries no event",
                                        topic, _key_text(message.key)))
                    continue
                if topic == REPARTITION_TOPIC:
                    events.extend(self._forwarded(message, state, counts, rejects))
                    continue
                good, bad = decode(message.value, topic)
                for rejection in bad:
                    rejects.append((rejection.reason, rejection.raw, rejection.detail, topic,
                                    _key_text(message.key)))
                # Per distinct room (an envelope is usually one room): a set at C speed, then
                # one partition lookup per room.
                if good and any(home(room) != partition for room in set(map(_ROOM_ID, good))):
                    good = self._set_aside(good, partition, topic, message.offset, strays)
                    stray_stamp = max(stray_stamp, stamp)
                events.extend(good)
                counts[TYPE_OF_TOPIC[topic]] += len(good)
            if strays:
                self.forwarder.queue(partition, strays, int(stray_stamp * 1000))
            if not events:
                continue
            for event, reason in state.engine.ingest(events, state.wall(now), catching_up=state.behind):
                counts[event_type(event)] -= 1
                rejects.append((reason, encode(event), f"{reason} event (ts {event.ts})",
                                _topic_of(event), event.room_id))
            batch_newest = max(event.ts for event in events)
            newest = batch_newest if newest is None else max(newest, batch_newest)
        if newest is not None:
            self.metrics.event_delay.set(max(0.0, now - newest))
        for kind, n in counts.items():
            if n:
                self.metrics.events.labels(kind).inc(n)
                self._step_events[kind] += n
        if rejects:
            await self._dead_letter(rejects)

    def _set_aside(self, events: list, partition: int, topic: str, offset: int,
                   strays: dict[int, list[Part]]) -> list:
        """The events of a message that live on `partition`; the others go into `strays`, by
        their room's partition, to be forwarded there (see ingest/routing.py)."""
        ours = []
        for event in events:
            target = self.home(event.room_id)
            if target == partition:
                ours.append(event)
                continue
            parts = strays.setdefault(target, [])
            if parts and parts[-1].offset == offset and parts[-1].topic == topic:
                parts[-1].events.append(event)
            else:
                parts.append(Part(topic, offset, [event]))
        self.metrics.rerouted.labels(topic).inc(len(events) - len(ours))
        return ours

    def _batch_rejected(self, skipped, message, rejects) -> None:
        """A batch the consumer could not read (see agents/fetching.py): counted, its place
        dead-lettered; the offsets after it are read as usual."""
        self.metrics.batches_rejected.labels(skipped.reason).inc()
        detail = (f"unreadable record batch ({skipped.reason}) at {message.topic}/{message.partition} "
                  f"offsets {skipped.first}-{skipped.last}: {skipped.detail}")
        record = orjson.dumps({"partition": message.partition, "first_offset": skipped.first,
                               "last_offset": skipped.last, "reason": skipped.reason})
        rejects.append((f"batch_{skipped.reason}", record, detail, message.topic, None))

    def _forwarded(self, message, state: "Owned", counts: Counter, rejects) -> list:
        """The events of a forward record not applied before (see ingest/routing.py)."""
        forward, problem = decode_forward(message.value)
        if problem is not None:
            self.metrics.records_rejected.labels(message.topic).inc()
            rejects.append(("record_invalid", problem.raw, problem.detail, message.topic, None))
            return []
        events = []
        for part in forward.parts:
            if state.marks.accept(forward.source, part):
                events.extend(part.events)
                counts[TYPE_OF_TOPIC[part.topic]] += len(part.events)
        return events

    async def _dead_letter(self, rejects) -> None:
        # Bounded like the snapshot records: with the broker down the producer's buffer fills,
        # and a send would hold up the stream for the whole outage. Once a send has waited half
        # a step, the rest of the batch is dropped from the dead-letter topic (still counted).
        dropped = 0
        for reason, raw, detail, topic, key in rejects:
            if not reason.startswith(NOT_EVENTS):  # unreadable batches and records have counters of their own
                self.metrics.rejected.labels(reason).inc()
            if dropped:
                dropped += 1
                continue
            record = {"reason": reason, "detail": detail[:1000], "topic": topic,
                      "worker": self.settings.worker_id}
            raw = raw[:MAX_DEADLETTER_RAW]
            try:
                record["raw"] = raw.decode("utf-8")
            except UnicodeDecodeError:
                record["raw"] = base64.b64encode(raw).decode("ascii")
                record["raw_b64"] = True
            try:
                await asyncio.wait_for(self.producer.send(DEADLETTER_TOPIC, orjson.dumps(record),
                                                          key=key.encode() if key else None),
                                       timeout=self.settings.step / 2)
            except Exception as error:  # noqa: BLE001 - counted above; never stop the stream for it
                dropped += 1
                log.warning("dead-letter write failed: %r", error)
        if dropped > 1:
            log.warning("%d dead-letter records not written (broker unavailable)", dropped)

    # ---- steps ----

    async def _step_loop(self) -> None:
        step = self.settings.step
        offset = STEP_OFFSET * step
        while True:
            # Steps follow the evaluation instants (multiples of the step in wall-clock time), a
            # little after each: instant t shows once an event at or after t has arrived, and the
            # events just after t are then in (a step on the boundary would show t one step late).
            await asyncio.sleep(step - ((time.time() - offset) % step) + 0.001)
            try:
                await self.step(time.time())
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - a failed step must not end the stepping
                log.exception("step failed")

    async def step(self, now: float) -> None:
        started = time.perf_counter()
        # Held messages whose wait ran out while no new batch came.
        await self._apply_due(list(self.owned), everything=self._stopping)
        finals: list[dict] = []
        live: dict[str, dict] = {}
        for partition, state in list(self.owned.items()):
            if state.pause_start is not None and self._caught_up(partition, state):
                state.resume(now)  # nothing came after the pause because nothing was sent
            self._check_behind(partition, state)
            wall = state.step_clock(now)
            finals.extend(state.engine.advance(wall))
            live.update(state.engine.live_snapshots(wall))
            state.engine.forget_idle_rooms(wall)
        finals.sort(key=lambda snapshot: snapshot["ts"])
        self.last_live = live
        self.collector.update(live)
        if self.alerts is not None:
            try:
                records = self.alerts.evaluate(live, now)
            except Exception:  # noqa: BLE001 - alerting trouble must not stop the metrics
                log.exception("alert evaluation failed")
            else:
                self._alerts_changed({record["room_id"] for record in records or ()})
        await self._publish(now, live, finals)
        self._update_health(now)
        self.metrics.step_seconds.set(time.perf_counter() - started)
        self.metrics.last_step.set(time.time())

    def _alerts_changed(self, rooms: set[str]) -> None:
        if not rooms:
            return
        for state in self.owned.values():
            if not state.alerts_changed and not rooms.isdisjoint(state.engine.rooms):
                state.alerts_changed = True
        self._checkpoint_soon.set()

    async def _publish(self, now: float, live: dict, finals: list) -> None:
        snapshots = list(live.values())
        parts = max(1, math.ceil(max(len(snapshots), len(finals)) / SNAPSHOTS_PER_RECORD))
        for i in range(parts):
            chunk = slice(i * SNAPSHOTS_PER_RECORD, (i + 1) * SNAPSHOTS_PER_RECORD)
            record = {"worker": self.settings.worker_id, "now": now, "live": snapshots[chunk],
                      "final": finals[chunk], "part": i, "parts": parts}
            try:
                # Bounded: with the broker down the producer's buffer fills and a send would wait
                # for it, holding up the step (and so /metrics and alerting) for the whole outage.
                await asyncio.wait_for(self.producer.send(SNAPSHOTS_TOPIC, orjson.dumps(record),
                                                          key=self.settings.worker_id.encode()),
                                       timeout=self.settings.step / 2)
            except Exception as error:  # noqa: BLE001 - the broker may be down; metrics go on
                log.warning("snapshot publish failed: %r", error)
                return

    def _update_health(self, now: float) -> None:
        metrics = self.metrics
        for kind in TYPE_OF_TOPIC.values():
            metrics.events_rate.labels(kind).set(self._step_events.get(kind, 0) / self.settings.step)
        self._step_events.clear()
        metrics.rooms.set(self.room_count)
        metrics.partitions.set(len(self.owned))
        metrics.lag.clear()
        for (topic, partition), lag in self.lags().items():
            metrics.lag.labels(topic, str(partition)).set(lag)

    def lags(self) -> dict[tuple[str, int], int]:
        """Messages waiting per (event topic, owned partition): the broker's high-water mark less
        the next offset to apply. Empty before the consumer has fetched anything."""
        consumer = self.consumer_ref() if self.consumer_ref else None
        lags = {}
        if consumer is None:
            return lags
        for partition, state in list(self.owned.items()):
            for topic in INPUT_TOPICS:
                try:
                    high = consumer.highwater(_tp(topic, partition))
                except Exception:  # noqa: BLE001 - not fetched yet
                    continue
                if high is not None:
                    lags[(topic, partition)] = max(0, high - state.offsets.get(topic, 0))
        return lags

    # ---- checkpoints ----

    async def _checkpoint_loop(self) -> None:
        interval = self.settings.checkpoint_interval
        gap = min(1.0, interval)  # at most a round a second, however many alerts change
        while True:
            await asyncio.sleep(gap)
            try:
                await asyncio.wait_for(self._checkpoint_soon.wait(), interval - gap)
            except asyncio.TimeoutError:
                pass
            self._checkpoint_soon.clear()
            try:
                await self.checkpoint_round(commit=True)
            except asyncio.CancelledError:
                raise
            except Exception as error:  # noqa: BLE001 - retried next round
                log.warning("checkpoint round failed: %r", error)

    async def checkpoint_round(self, commit: bool) -> None:
        """Checkpoint every owned partition whose state moved since its last checkpoint."""
        async with self._checkpoint_lock:
            if not self.settled.is_set() and not self._stopping:
                return  # mid-rebalance: the revocation handler wrote them
            await self._checkpoint(list(self.owned), commit)

    async def _checkpoint(self, partitions, commit: bool) -> None:
        written = {}
        for partition in partitions:
            state = self.owned.get(partition)
            if state is None or not state.offsets or (state.offsets == state.checkpointed
                                                      and not state.alerts_changed):
                continue
            # State and offsets are taken together, with no await in between: they match.
            offsets = dict(state.offsets)
            sources = dict(state.marks.marks)
            forwarded = self.forwarder.queued(partition) if self.forwarder is not None else 0
            rooms = sorted(state.engine.rooms)
            blob = state.engine.export_rooms(rooms)
            alerts = self.alerts.export_rooms(rooms) if self.alerts is not None else {}
            state.alerts_changed = False
            if forwarded:
                # Not past events whose forwards the broker does not have yet: a successor
                # starting here would never send them.
                await self.forwarder.delivered(partition, forwarded)
            await self.store.write(Checkpoint(partition=partition, offsets=offsets, rooms=rooms,
                                              state=blob, alerts=alerts, worker=self.settings.worker_id,
                                              wall=time.time(), sources=sources))
            if self.owned.get(partition) is state:
                state.checkpointed = offsets
            written[partition] = offsets
            self.metrics.checkpoints.inc()
            self.metrics.checkpoint_bytes.labels(str(partition)).set(len(blob))
            await asyncio.sleep(0)  # let the stream run between partitions
        self.metrics.last_checkpoint.set(time.time())
        if commit and written:
            await self._commit(written)

    async def _commit(self, written: dict[int, dict[str, int]]) -> None:
        consumer = self.consumer_ref() if self.consumer_ref else None
        if consumer is None:
            return
        offsets = {_tp(topic, partition): offset
                   for partition, by_topic in written.items() for topic, offset in by_topic.items()}
        try:
            await consumer._commit(offsets)
        except Exception as error:  # noqa: BLE001 - a failed commit only means more skipping later
            log.info("offset commit failed: %r", error)

    # ---- rebalances ----

    async def on_revoked(self, revoked) -> None:
        """Before giving partitions away: checkpoint them so their next owner replays little."""
        self.settled.clear()
        self.metrics.rebalances.inc()
        for state in self.owned.values():
            if state.pause_start is None:
                state.pause_start = time.time()
        partitions = {tp.partition for tp in revoked if tp.topic in INPUT_TOPICS}
        async with self._checkpoint_lock:
            try:
                await asyncio.wait_for(self._checkpoint(sorted(partitions & set(self.owned)), commit=False),
                                       timeout=5)
            except Exception as error:  # noqa: BLE001 - the periodic checkpoint stands
                log.warning("checkpoint on revocation failed: %r", error)

    async def on_assigned(self, assigned) -> None:
        partitions = {tp.partition for tp in assigned if tp.topic in INPUT_TOPICS}
        try:
            for partition in sorted(set(self.owned) - partitions):
                self._release(partition)
            kept = sorted(partitions & set(self.owned))
            for partition in kept:
                # Fetching paused during the rebalance: what we knew of each topic is stale.
                self.owned[partition].heard.clear()
                self.owned[partition].loaded_at = time.monotonic()
            for partition in kept:
                # Someone else may have owned it meanwhile (we were out of the group for a
                # while): if their checkpoint is ahead of us, our state is stale.
                stored = await self.store.latest(partition, with_state=False)
                if stored is not None and ahead(stored.offsets, self.owned[partition].offsets):
                    log.warning("partition %d moved on without us: reloading", partition)
                    self._release(partition)
                elif stored is None and self.owned[partition].checkpointed:
                    # Our checkpoints are gone: the broker lost its data (memory-only, restarted).
                    await self._forget_offsets(partition, self.owned[partition])
            await asyncio.gather(*(self.load(p) for p in sorted(partitions - set(self.owned))))
        finally:
            self.settled.set()
        self.ready = True
        log.info("worker %s owns partitions %s", self.settings.worker_id, sorted(self.owned))

    def _release(self, partition: int) -> None:
        state = self.owned.pop(partition)  # its engine, and so its rooms, go with it
        if self.alerts is not None:
            # Their alerts too, unresolved: the next owner carries them on from the checkpoint.
            self.alerts.release_rooms(list(state.engine.rooms))

    async def load(self, partition: int) -> None:
        if partition in self.loading:
            return await self.loading[partition]
        future = asyncio.get_running_loop().create_future()
        self.loading[partition] = future
        try:
            delay = 0.2
            while True:
                try:
                    checkpoint = await self.store.latest(partition)
                    break
                except Exception as error:  # noqa: BLE001 - broker trouble: retry, never skip
                    log.warning("loading checkpoint of partition %d failed (%r); retrying", partition, error)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 5.0)
            state = Owned(engine=Engine(self.engine_config))
            if checkpoint is not None:
                rooms = state.engine.import_rooms(checkpoint.state) if checkpoint.state else []
                if self.alerts is not None and checkpoint.alerts:
                    self.alerts.import_rooms(checkpoint.alerts)
                state.offsets = dict(checkpoint.offsets)
                state.received = dict(checkpoint.offsets)
                state.checkpointed = dict(checkpoint.offsets)
                state.marks = ForwardMarks(checkpoint.sources)
                self.metrics.restored.inc()
                log.info("partition %d: resumed %d rooms at %s", partition, len(rooms), checkpoint.offsets)
            self.owned[partition] = state
            future.set_result(None)
        except BaseException as error:
            future.set_exception(error)
            raise
        finally:
            del self.loading[partition]

    # ---- web ----

    async def start_web(self) -> None:
        app = web.Application(client_max_size=64 * 1024)
        app.router.add_get("/metrics", self._metrics_page)
        app.router.add_get("/healthz", self._health_page)
        app.router.add_get("/livez", self._live_page)
        self.web_app = app
        if self.settings.web_page or self.settings.recording:
            _attach_control_room(self, app)
        self.web_runner = web.AppRunner(app, access_log=None)
        await self.web_runner.setup()
        site = web.TCPSite(self.web_runner, self.settings.web_host, self.settings.web_port)
        await site.start()

    async def _metrics_page(self, request: web.Request) -> web.Response:
        body = self.collector.render() + self.metrics.render() + _extra_metrics()
        return web.Response(body=body, headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"})

    async def _health_page(self, request: web.Request) -> web.Response:
        last = self.metrics.last_step._value.get()
        stale = time.time() - last > max(10.0, 10 * self.settings.step)
        stuck = self.watchdog.stalled
        healthy = self.ready and not stale and not stuck
        body = {"status": "ok" if healthy else ("starting" if not self.ready else "stalled"),
                "worker": self.settings.worker_id, "partitions": sorted(self.owned),
                "rooms": self.room_count, "last_step": last, "consumer_stuck": stuck,
                "broker_up": self.watchdog.broker_up}
        return web.json_response(body, status=200 if healthy else 503)

    async def _live_page(self, request: web.Request) -> web.Response:
        """Liveness for an orchestrator: 503 = restart me (steps stopped, or the consumer is stuck).
        A broker outage is not a reason: a restart would not bring the broker back."""
        stale = time.time() - self.metrics.last_step._value.get() > max(10.0, 10 * self.settings.step)
        stuck = self.watchdog.stalled
        body = {"status": "stuck" if stuck else ("stalled" if stale else "ok"),
                "broker_up": self.watchdog.broker_up}
        return web.json_response(body, status=503 if stuck or stale else 200)


_ROOM_ID = operator.attrgetter("room_id")


def _tp(topic: str, partition: int):
    from faust.types import TP

    return TP(topic, partition)


def _topic_of(event) -> str:
    from livemon.ingest.events import TOPIC_OF_TYPE

    return TOPIC_OF_TYPE[event_type(event)]


def _key_text(key) -> str | None:
    if not key:
        return None
    try:
        return key.decode("utf-8") if isinstance(key, bytes) else str(key)
    except UnicodeDecodeError:
        return None


def default_alerts_config() -> str | None:
    """The rule set shipped in the repository's `alerts/` folder, when running from a checkout."""
    from pathlib import Path

    import livemon

    path = Path(livemon.__file__).resolve().parent.parent / "alerts" / "alerting.yml"
    return str(path) if path.exists() else None


async def _start_alerts(runtime: StreamRuntime):
    """The alerting layer, when configured: evaluated every step on live snapshots."""
    path = runtime.settings.alerts_config
    if not path:
        return None

    def publish(topic: str, key: bytes, value: bytes):
        return runtime.producer.send(topic, value, key=key)

    try:
        service = AlertService.from_config(path, data_dir=runtime.settings.data_dir, producer=publish)
        await service.start()
    except Exception as error:  # noqa: BLE001 - run the metrics without alerting, say why
        log.error("alerting disabled: %s", error)
        return None
    runtime.metrics.registry.register(service.collector())
    return service


async def _operator_loop(runtime: StreamRuntime) -> None:
    """Operator actions from the web page (ack, silence, manual failover) go to the alerting layer.
    Every worker reads every action (no group): each acts on the rooms and alerts it holds."""
    from aiokafka import AIOKafkaConsumer

    from livemon.broker import OPERATOR_TOPIC

    consumer = AIOKafkaConsumer(OPERATOR_TOPIC, bootstrap_servers=runtime.settings.bootstrap,
                                group_id=None, auto_offset_reset="latest")
    await consumer.start()
    try:
        async for message in consumer:
            try:
                action = orjson.loads(message.value or b"")
                if not isinstance(action, dict):
                    raise ValueError(f"not an object: {type(action).__name__}")
                runtime.alerts.handle_operator(action, time.time())
            except Exception as error:  # noqa: BLE001 - a bad action must not stop the loop
                runtime.metrics.records_rejected.labels(OPERATOR_TOPIC).inc()
                log.warning("operator action ignored: %r", error)
    finally:
        await consumer.stop()


def _attach_control_room(runtime: StreamRuntime, app: web.Application) -> None:
    """The control room's hub on the worker's web server: it reads every worker's step records,
    records the shows (unless `recording` is off) and serves the page (unless `web_page` is off)."""
    settings = runtime.settings
    hub = ControlRoomHub(recorder=RecordingStore(settings.recording_dir) if settings.recording else None)
    if settings.web_page:
        token, generated = control_token(settings.token)
        add_routes(app, hub, token=token)
        if generated:
            print(f"control token (for actions on the web page): {token}", flush=True)

    async def start(app):
        await hub.start(settings.bootstrap)

    async def stop(app):
        await hub.stop()
    app.on_startup.append(start)
    app.on_cleanup.append(stop)


def _extra_metrics() -> bytes:
    """Metrics other parts register in prometheus_client's default registry (e.g. alerting)."""
    from prometheus_client import REGISTRY, generate_latest

    return generate_latest(REGISTRY)
