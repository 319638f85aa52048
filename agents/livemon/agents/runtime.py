"""What one worker process holds and does, wired together: the partitions it owns (`partition.py`),
their ownership and checkpoints (`ownership.py`), the data path from Kafka messages to the engine
(`process`), the step, and the HTTP server (`http.py`).

The Faust app (`livemon.agents.app`) delivers drained batches of raw messages and rebalance
signals here; everything else happens in this one event loop, so the engine needs no locks.

Each owned partition has its own engine instance (the same engine code throughout). The engine's
clock runs on the newest event time it has seen; a partition taken over from a killed worker is
replayed from its checkpoint while the worker's other partitions are live, and a clock shared
with them would reject that whole backlog as late. Per partition, a catching-up partition keeps
its own clock, exactly as it would have had on the worker that owned it before.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import logging
import math
import time
from collections import Counter, deque
from collections.abc import Callable
from operator import itemgetter

import orjson
from aiokafka import AIOKafkaProducer

from livemon.agents import heap
from livemon.agents.checkpoints import CheckpointStore
from livemon.agents.forwarding import Forwarder
from livemon.agents.http import WorkerHttp
from livemon.agents.ownership import Ownership
from livemon.agents.partition import NOT_EVENTS, Applied, Partition, Reject
from livemon.agents.settings import WorkerSettings
from livemon.agents.watchdog import Watchdog, stall_hook
from livemon.alerting.service import AlertService
from livemon.engine import RoomBudget
from livemon.exposition import RoomCollector, WorkerMetrics
from livemon.ingest.routing import Part, Partitioner
from livemon.topics import (CHECKPOINT_TOPIC, DEADLETTER_TOPIC, INPUT_TOPICS, OPERATOR_TOPIC, REPARTITION_TOPIC,
                            SNAPSHOTS_TOPIC, STEP_RECORD_HEADER, TYPE_OF_TOPIC)

log = logging.getLogger(__name__)

# Messages applied in one go (see `StreamRuntime._apply_due`): at 100 events a message, ~0.3 s.
APPLY_SLICE = 500

# JSON bytes of snapshots per record on the snapshots topic: a step of a worker with hundreds of
# rooms (each snapshot with its breakdowns and products) exceeds the broker's message size as one
# record, so a step goes in records of about this size (the producer's request limit is 2 MiB).
SNAPSHOT_RECORD_BYTES = 512 * 1024
MAX_DEADLETTER_RAW = 64 * 1024
# Steps run this fraction of a step after each instant (see `_step_loop`): time for the events
# sent just before the instant to arrive. An event later than that shows at the next step, so an
# order's worst case from sending to `/metrics` is 1 s + max(offset, its transit) + the step.
# 0.25 lowered the soak's median by 0.2 s but not its slow samples (BENCHMARKS.md, Soak).
STEP_OFFSET = 0.4
# Show summaries (SPEC §10) per record on the snapshots topic go by size, not count (a summary lists
# products, regions and hours): JSON bytes of summaries per record, and the largest one that can go
# at all (the producer's request limit is 2 MiB).
SUMMARY_RECORD_BYTES = 512 * 1024
MAX_SUMMARY_BYTES = 1536 * 1024


def snapshot_chunks(live: list[bytes], finals: list[bytes]) -> list[tuple[list, list]]:
    """A step's encoded live and final snapshots cut into (live, final) parts of at most
    SNAPSHOT_RECORD_BYTES each (a larger snapshot goes alone); at least one part, maybe empty."""
    chunks: list[tuple[list, list]] = [([], [])]
    size = 0
    for index, blobs in enumerate((live, finals)):
        for blob in blobs:
            if size and size + len(blob) > SNAPSHOT_RECORD_BYTES:
                chunks.append(([], []))
                size = 0
            chunks[-1][index].append(orjson.Fragment(blob))
            size += len(blob)
    return chunks


def summary_records(worker: str, now: float, key: str, summaries: list[dict]) -> list[bytes]:
    """`{"worker", "now", key: [summary...]}` records of at most SUMMARY_RECORD_BYTES of summaries
    each (one larger summary goes alone; one beyond MAX_SUMMARY_BYTES is left out, logged)."""
    head = orjson.dumps({"worker": worker, "now": now})[:-1] + b',"' + key.encode() + b'":['
    chunks: list[list[bytes]] = []
    size = SUMMARY_RECORD_BYTES
    for summary in summaries:
        encoded = orjson.dumps(summary)
        if len(encoded) > MAX_SUMMARY_BYTES:
            log.error("show summary of %s at %s is %d bytes: not published", summary.get("room_id"),
                      summary.get("start"), len(encoded))
            continue
        if size + len(encoded) > SUMMARY_RECORD_BYTES:
            chunks.append([])
            size = 0
        chunks[-1].append(encoded)
        size += len(encoded) + 1
    return [head + b",".join(chunk) + b"]}" for chunk in chunks]


class StreamRuntime:
    def __init__(self, settings: WorkerSettings, consumer_ref=None):
        self.settings = settings
        self.engine_config = settings.engine_config()
        self.collector = RoomCollector()
        self.metrics = WorkerMetrics()
        # A callable returning the Faust consumer (set by the app): for commits, lag and assignment.
        self.consumer_ref = consumer_ref
        self.owned: dict[int, Partition] = {}
        # The worker's caps on rooms, shared by its partitions' engines.
        self.budget = RoomBudget(settings.worker_max_rooms, settings.worker_max_candidates)
        # The partition each room lives on, as the producers' partitioner picks it.
        self.home = Partitioner(settings.partitions)
        self.producer: AIOKafkaProducer | None = None
        self.checkpoint_producer: AIOKafkaProducer | None = None
        self.forwarder: Forwarder | None = None
        self.store: CheckpointStore | None = None
        self.alerts: AlertService | None = None
        self.ownership = Ownership(self)
        self.http = WorkerHttp(self)
        self.web_app = self.http.app
        self.watchdog = Watchdog(self, stall_after=settings.stall_after)
        self.ready = False
        self.last_live: dict = {}
        # In-process readers of this worker's step records (its own control room hub): they get
        # them at once, even while the broker is down, and skip them on the topic.
        self.local_readers: list[Callable[[dict], None]] = []
        self._step_events: Counter = Counter()
        self._sequence = itertools.count()
        self._tasks: list[asyncio.Task] = []
        self._stopping = False
        # Provisional show summaries: each round (every `summary_interval`) covers every owned room,
        # spread over the steps of the interval (a summary costs ~0.1-3 ms a room).
        self._provisional_queue: deque[tuple[int, str]] = deque()
        self._provisional_share = 1
        self._provisional_round = -math.inf

    @property
    def settled(self) -> asyncio.Event:
        return self.ownership.settled

    def consumer(self):
        return self.consumer_ref() if self.consumer_ref else None

    def highwater(self, topic: str, partition: int) -> int | None:
        """The broker's high-water mark of (topic, partition) as last fetched; None before."""
        consumer = self.consumer()
        if consumer is None:
            return None
        try:
            from faust.types import TP

            return consumer.highwater(TP(topic, partition))
        except Exception:  # noqa: BLE001 - not fetched yet
            return None

    # ---- lifecycle: started in this order, stopped in reverse ----

    async def start(self) -> None:
        settings = self.settings
        # Step records (snapshots), alerts, forwards and dead letters are JSON, compressed with zstd
        # (level 3, Kafka's default): as small as gzip level 9 (about 0.38 of the JSON) at ten times
        # its speed; aiokafka's gzip (level 9) took 11% of a worker's core at 300 rooms and its LZ4
        # (level 9) 8%, on the event loop. Checkpoints compress themselves (off the event loop), so
        # they go through a producer of their own.
        self.producer = AIOKafkaProducer(**settings.connection.aiokafka_kwargs(), acks="all", linger_ms=5,
                                         max_request_size=2 * 1024 * 1024, compression_type="zstd",
                                         client_id=f"livemon-{settings.worker_id}")
        await self.producer.start()
        self.checkpoint_producer = AIOKafkaProducer(**settings.connection.aiokafka_kwargs(), acks="all", linger_ms=0,
                                                    max_request_size=2 * 1024 * 1024,
                                                    client_id=f"livemon-{settings.worker_id}-checkpoints")
        await self.checkpoint_producer.start()
        self.forwarder = Forwarder(self.producer.send, REPARTITION_TOPIC)
        self.store = CheckpointStore(settings.connection, self.checkpoint_producer, settings.partitions,
                                     on_rejected=self.metrics.records_rejected.labels(CHECKPOINT_TOPIC).inc)
        await self.http.start()
        self.alerts = await _start_alerts(self)
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._step_loop(), name="livemon-step"),
                       loop.create_task(self.ownership.checkpoint_loop(), name="livemon-checkpoint"),
                       loop.create_task(self.watchdog.run(), name="livemon-watchdog"),
                       loop.create_task(heap.release_loop(), name="livemon-heap")]
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
            await asyncio.wait_for(self._publish_summaries(time.time()), timeout=5)
        except Exception as error:  # noqa: BLE001 - the checkpointed state still holds them
            log.warning("show summaries not published at stop: %r", error)
        try:
            await asyncio.wait_for(self.ownership.checkpoint_round(commit=True, stopping=True), timeout=10)
        except Exception as error:  # noqa: BLE001 - shutting down: the last periodic one stands
            log.warning("final checkpoint failed: %r", error)
        if self.alerts is not None:
            await self.alerts.stop()
        await self.http.stop()
        if self.store is not None:
            await self.store.close()
        if self.forwarder is not None:
            await self.forwarder.close()
        for producer in (self.producer, self.checkpoint_producer):
            if producer is not None:
                await producer.stop()

    async def on_revoked(self, revoked) -> None:
        await self.ownership.on_revoked(revoked)

    async def on_assigned(self, assigned) -> None:
        await self.ownership.on_assigned(assigned)

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
        numbers = {m.partition for m in messages}
        for number in numbers:
            if number in self.ownership.loading:
                await self.ownership.loading[number]
        owned = self.owned
        for number in numbers:
            if number in owned:  # before this batch counts as received: is it a backlog?
                owned[number].check_behind(self.highwater)
        touched = set()
        now = time.time()
        for message in messages:
            state = owned.get(message.partition)
            if state is None:
                continue  # not ours (any more): its owner resumes from its checkpoint
            if message.offset < state.received.get(message.topic, 0):
                if not self._log_lost(message, state):
                    continue  # already applied or waiting (redelivery after a rebalance or restart)
                await self.forget_offsets(state)
            state.receive(message, next(self._sequence), now)
            touched.add(message.partition)
        self.metrics.messages.inc(len(messages))
        await self._apply_due(touched)
        self.metrics.batch_seconds.observe(time.perf_counter() - started)

    def _log_lost(self, message, state: Partition) -> bool:
        """The partition's log now ends before what we already received: the broker lost it (a
        memory-only broker restarted) and offsets start again at 0."""
        high = self.highwater(message.topic, message.partition)
        return high is not None and high < state.received.get(message.topic, 0)

    async def forget_offsets(self, state: Partition) -> None:
        """Keep the state, start the partition's offsets again at 0 (see `_log_lost`)."""
        await self._apply_due([state.number], everything=True)
        log.warning("partition %d: the broker lost its log (offsets %s); counting on from offset 0",
                    state.number, state.offsets)
        state.forget_offsets()
        self.watchdog.log_resets.inc()

    async def _apply_due(self, numbers, everything: bool = False) -> None:
        """Apply the due messages of these partitions, APPLY_SLICE messages at a time: between two
        slices the loop answers scrapes and runs the step (a drained batch of 100-event envelopes
        is 200,000 events, over a second of applying)."""
        for number in numbers:
            while True:
                state = self.owned.get(number)
                if state is None or not state.pending:
                    break
                now = time.time()
                bound = math.inf if everything else state.release_bound(self.highwater)
                applied = Applied()
                strays: dict[int, list[Part]] = {}
                stray_stamp = state.apply_due(bound, self.home, now, applied, strays, limit=APPLY_SLICE)
                if strays:
                    self.forwarder.queue(number, strays, int(stray_stamp * 1000))
                await self._settle(applied, now)
                if not (state.pending and state.pending[0][0] <= bound):
                    break
                await asyncio.sleep(0)

    async def _settle(self, applied: Applied, now: float) -> None:
        """Count what applying produced and dead-letter its rejects."""
        self._count(applied, now)
        if applied.rejects:
            await self._dead_letter(applied.rejects)

    def _count(self, applied: Applied, now: float) -> None:
        metrics = self.metrics
        if applied.newest is not None:
            metrics.event_delay.set(max(0.0, now - applied.newest))
        for kind, n in applied.counts.items():
            if n:
                metrics.events.labels(kind).inc(n)
                self._step_events[kind] += n
        for topic, n in applied.rerouted.items():
            metrics.rerouted.labels(topic).inc(n)
        for reason, n in applied.batches.items():
            metrics.batches_rejected.labels(reason).inc(n)
        for topic, n in applied.records.items():
            metrics.records_rejected.labels(topic).inc(n)
        for reject in applied.rejects:
            if not reject.reason.startswith(NOT_EVENTS):  # those have counters of their own
                metrics.rejected.labels(reject.reason).inc()

    async def _dead_letter(self, rejects: list[Reject]) -> None:
        # Bounded like the snapshot records: with the broker down the producer's buffer fills,
        # and a send would hold up the stream for the whole outage. Once a send has waited half
        # a step, the rest of the batch is dropped from the dead-letter topic (still counted).
        dropped = 0
        for reason, raw, detail, topic, key in rejects:
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
        # The live snapshots first: /metrics and alerting have them before the finals are made.
        # Their headline figures first, then (after the scrapes that came meanwhile, answered
        # with the step before: a timer, not sleep(0), which would resume this task before the
        # loop reads the waiting requests) their breakdowns and products, about half the live
        # work. /metrics gets them whole: a snapshot shown between the halves would pair this
        # step's headline with the step before's breakdowns, two instants where SPEC §3 has one.
        begun = {number: (state, *state.live_step(now, self.highwater, deferred=True))
                 for number, state in self.owned.items()}
        live = {}
        for _, _, partition_live in begun.values():
            live.update(partition_live)
        await asyncio.sleep(0.002)
        for number, (state, _, _) in begun.items():
            if self.owned.get(number) is state:
                state.complete_live()
        self.last_live = live
        self.collector.update(live)
        if self.alerts is not None:
            try:
                records = self.alerts.evaluate(live, now)
            except Exception:  # noqa: BLE001 - alerting trouble must not stop the metrics
                log.exception("alert evaluation failed")
            else:
                self._alerts_changed({record["room_id"] for record in records or ()})
        await asyncio.sleep(0.002)  # (scrapes that came meanwhile), then the finals are made
        finals: list[tuple[float, bytes]] = []
        rejects: list[Reject] = []
        for number, (state, clock, _) in begun.items():
            if self.owned.get(number) is state:  # (not given away meanwhile: its next owner makes them)
                finals.extend(state.final_step(clock, rejects))
        finals.sort(key=itemgetter(0))
        self._read_locally(now, live, finals)
        if await self._publish(now, live, finals):  # not while the broker is down: the step goes on
            await self._publish_summaries(now)
            await self._publish_provisional(now)
        await self._settle(Applied(rejects=rejects), now)  # events the engine held and let go
        self._update_health()
        self.metrics.step_seconds.set(time.perf_counter() - started)
        self.metrics.last_step.set(time.time())

    def _alerts_changed(self, rooms: set[str]) -> None:
        if not rooms:
            return
        for state in self.owned.values():
            if not state.alerts_changed and not rooms.isdisjoint(state.engine.rooms):
                state.alerts_changed = True
        self.ownership.soon.set()

    def _read_locally(self, now: float, live: dict, finals: list) -> None:
        if not self.local_readers:
            return
        record = {"worker": self.settings.worker_id, "now": now, "live": list(live.values()),
                  "final": [orjson.loads(final) for _, final in finals]}
        for read in self.local_readers:
            try:
                read(record)
            except Exception:  # noqa: BLE001 - the page or the recording must not stop the step
                log.exception("a local reader of the step failed")

    async def _publish(self, now: float, live: dict, finals: list) -> bool:
        chunks = snapshot_chunks([orjson.dumps(snapshot) for snapshot in live.values()],
                                 [final for _, final in finals])
        for i, (live_part, final_part) in enumerate(chunks):
            record = {"worker": self.settings.worker_id, "now": now, "live": live_part, "final": final_part,
                      "part": i, "parts": len(chunks)}
            try:
                # Bounded: with the broker down the producer's buffer fills and a send would wait
                # for it, holding up the step (and so /metrics and alerting) for the whole outage.
                await asyncio.wait_for(self.producer.send(SNAPSHOTS_TOPIC, orjson.dumps(record),
                                                          key=self.settings.worker_id.encode(),
                                                          headers=[STEP_RECORD_HEADER]),
                                       timeout=self.settings.step / 2)
            except Exception as error:  # noqa: BLE001 - the broker may be down; metrics go on
                log.warning("snapshot publish failed: %r", error)
                return False
        return True

    # ---- show summaries (SPEC §10) ----

    async def _publish_summaries(self, now: float) -> None:
        for state in list(self.owned.values()):
            if state.summaries:
                await self.send_summaries(state, now, self.settings.step / 2)

    async def send_summaries(self, state: Partition, now: float, timeout: float) -> bool:
        """Publish the partition's show summaries not yet sent (`{"summaries": [...]}` records on the
        snapshots topic) and wait until the broker has them; they are then dropped from the
        partition. True when none is left unsent. On failure they stay, and go with a later step."""
        taken = list(state.summaries)
        if not taken:
            return True
        try:
            futures = []
            for value in summary_records(self.settings.worker_id, now, "summaries", taken):
                futures.append(await asyncio.wait_for(
                    self.producer.send(SNAPSHOTS_TOPIC, value, key=self.settings.worker_id.encode()), timeout))
            done, waiting = await asyncio.wait(futures, timeout=timeout) if futures else (set(), set())
            if waiting:
                raise TimeoutError(f"{len(waiting)} records not acknowledged in {timeout:.1f} s")
            for future in done:
                future.result()
        except Exception as error:  # noqa: BLE001 - the broker may be down: kept, sent later
            log.warning("show summaries not published yet: %r", error)
            return False
        sent = set(map(id, taken))
        state.summaries = [summary for summary in state.summaries if id(summary) not in sent]
        return not state.summaries

    async def _publish_provisional(self, now: float) -> None:
        """Provisional summaries of the shows going on (`{"provisional": [...]}` records): every
        owned room once per `summary_interval`, a share of them each step."""
        queue = self._provisional_queue
        interval = self.settings.summary_interval
        if not queue:
            if time.monotonic() - self._provisional_round < interval:
                return
            self._provisional_round = time.monotonic()
            queue.extend((number, room_id) for number, state in list(self.owned.items())
                         for room_id in state.engine.rooms)
            self._provisional_share = max(1, math.ceil(len(queue) * self.settings.step / interval))
        summaries = []
        for _ in range(min(self._provisional_share, len(queue))):
            number, room_id = queue.popleft()
            state = self.owned.get(number)
            summary = state.engine.show_summary(room_id) if state is not None else None
            if summary is not None:
                summaries.append(summary)
        for value in summary_records(self.settings.worker_id, now, "provisional", summaries):
            try:
                await asyncio.wait_for(self.producer.send(SNAPSHOTS_TOPIC, value, key=self.settings.worker_id.encode()),
                                       timeout=self.settings.step / 2)
            except Exception as error:  # noqa: BLE001 - the next round sends newer ones
                log.warning("provisional summaries not published: %r", error)
                return

    def _update_health(self) -> None:
        metrics = self.metrics
        for kind in TYPE_OF_TOPIC.values():
            metrics.events_rate.labels(kind).set(self._step_events.get(kind, 0) / self.settings.step)
        self._step_events.clear()
        metrics.rooms.set(self.room_count)
        metrics.partitions.set(len(self.owned))
        metrics.lag.clear()
        for (topic, number), lag in self.lags().items():
            metrics.lag.labels(topic, str(number)).set(lag)

    def lags(self) -> dict[tuple[str, int], int]:
        """Messages waiting per (input topic, owned partition): the broker's high-water mark less
        the next offset to apply. Empty before the consumer has fetched anything."""
        lags = {}
        for number, state in list(self.owned.items()):
            for topic in INPUT_TOPICS:
                high = self.highwater(topic, number)
                if high is not None:
                    lags[(topic, number)] = max(0, high - state.offsets.get(topic, 0))
        return lags


def default_alerts_config() -> str | None:
    """The shipped rule set (the repository's `alerts/`, installed as package data `livemon.alerts`)."""
    from livemon.alerting.cli import default_config

    path = default_config()
    return None if path is None else str(path)


async def _start_alerts(runtime: StreamRuntime):
    """The alerting layer, when configured: evaluated every step on live snapshots."""
    settings = runtime.settings
    path = (settings.alerts_config or default_alerts_config()) if settings.alerts else None
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

    consumer = AIOKafkaConsumer(OPERATOR_TOPIC, **runtime.settings.connection.aiokafka_kwargs(),
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
