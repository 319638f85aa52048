"""`livemon bench`: throughput, latency and memory of the monitor, measured in one run.

Everything runs against a Kafka broker: the embedded Tansu broker (`livemon.broker`) by default, a
fresh one per data set, or `--broker`. The traffic is the simulator's pure generator
(`livemon.simulator.core.generate`, fixed seed), generated once; the same events are packed into
batch envelopes of 1, 10 and 100 events per message. Each consumer runs in a fresh process (a
worker process), is told to start once it is connected, and is timed from its first message to its
last:

- `raw`: aiokafka + orjson, decodes and counts (the ceiling of any Python consumer);
- `faust`: a plain per-message Faust agent (`async for value in stream`) that decodes and feeds
  the same engine, with a 1 s timer for the steps (what a typical Faust app does);
- `engine`: the worker's own partition code (`livemon.agents.partition`) on aiokafka batches:
  the merge across topics in producer-timestamp order, decoding and validation, the home-partition
  check, `Engine.ingest`, and every second of wall clock the worker's step (`step_all`: advance,
  live snapshots, forgetting idle rooms) and the Prometheus collector update, i.e. the whole path
  of a worker without Faust, checkpoints and sends;
- `livemon worker`: the real worker process (Faust runtime, checkpoints, snapshots topic), fed
  the 100-event envelopes, its rate read from its own `/metrics` (`livemon_events_total`);
- `quix`: a Quix Streams tumbling-window count per room on the same topics (`livemon.bench_peers`).

Then: two `engine` processes on half the partitions each (scale-out); end-to-end latency from
produce to the value on the real worker's `/metrics` at a steady rate; memory per tracked viewer
and `/metrics` render time with the engine state built in-process.
"""

from __future__ import annotations

import asyncio
import datetime
import gc
import itertools
import json
import math
import os
import platform
import random
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import ExitStack

import click

from livemon.agents.worker import faust_worker, tune_gc
from livemon.processes import WorkerProcess
from livemon.topics import TOPIC_OF_TYPE

T0 = 1_700_000_000.0
ENVELOPES = (1, 10, 100)

# Sizes of a full and a quick run. `events_1` caps the data of the 1-event envelope (a prefix of
# the same events): one Kafka message per event is slow to produce and, for Faust, to consume.
SIZES = {
    "full": dict(rooms=200, rate=50_000, duration=20, events_1=200_000, faust_max=200_000,
                 e2e_rate=50_000, e2e_seconds=30, e2e_warmup=5, mem_viewers=1_000_000, mem_rooms=2_000,
                 render_rooms=10_000),
    "quick": dict(rooms=40, rate=20_000, duration=3, events_1=15_000, faust_max=15_000,
                  e2e_rate=50_000, e2e_seconds=5, e2e_warmup=2, mem_viewers=100_000, mem_rooms=200,
                  render_rooms=10_000),
}
TARGETS = {"events_per_s_100": 250_000, "ratio_vs_faust": 20.0, "e2e_p99_s": 1.5,
           "bytes_per_viewer": 400, "render_s": 0.5}


# ---------------------------------------------------------------------------------------------
# traffic


def traffic(rooms: int, rate: float, duration: float, seed: int):
    """The simulator's messages as (topic, room_id, events) in send order, 100 events at most each."""
    from livemon.simulator.core import generate

    return [(m.topic, m.key, m.events) for m in generate(
        "normal", rooms=rooms, rate=rate, duration=duration, envelope=100, seed=seed, end_show=False)]


def pack(messages, envelope: int, limit: int | None = None):
    """Re-pack the messages into envelopes of `envelope` events: [(topic, key, value, n, ts)],
    `ts` the envelope's first event time."""
    from livemon.ingest.events import encode

    out, total = [], 0
    for topic, room, events in messages:
        for i in range(0, len(events), envelope):
            chunk = events[i:i + envelope]
            value = encode(chunk[0] if envelope == 1 else list(chunk))
            out.append((topic, room.encode(), value, len(chunk), chunk[0].ts))
            total += len(chunk)
            if limit is not None and total >= limit:
                return out
    return out


async def _produce(bootstrap: str, packed) -> None:
    """Send the envelopes as a backlog written in real time up to a minute ago: each record is
    stamped with its events' time, moved to then. (Stamped with the time of sending, 20 s of show
    sent in a few seconds would squeeze event time into the worker's merge slack, which assumes
    record timestamps that follow the events, and part of it would be late.)"""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, max_batch_size=1 << 20,
                                max_request_size=4 << 20, acks=1)
    await producer.start()
    try:
        shift = time.time() - 60 - max((item[4] for item in packed), default=0.0)  # event time -> then
        pending = []
        for topic, key, value, _, ts in packed:
            pending.append(await producer.send(topic, value, key=key, timestamp_ms=int((ts + shift) * 1000)))
            if len(pending) >= 20_000:
                await asyncio.gather(*pending)
                pending = []
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


async def _end_offsets(bootstrap: str, partitions: int) -> dict:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from livemon.ingest.events import EVENT_TOPICS

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    await consumer.start()
    try:
        tps = [TopicPartition(t, p) for t in EVENT_TOPICS for p in range(partitions)]
        return {f"{tp.topic}:{tp.partition}": n for tp, n in (await consumer.end_offsets(tps)).items()}
    finally:
        await consumer.stop()


# ---------------------------------------------------------------------------------------------
# child processes: each prints "ready", waits for a line on stdin, runs, prints one JSON line


def _child_main() -> None:
    args = json.loads(sys.argv[1])
    role = args["role"]
    result = {"raw": _role_raw, "engine": _role_engine, "faust": _role_faust, "memory": _role_memory,
              "render": _role_render, "quix": _role_quix}[role](args)
    print(json.dumps(result), flush=True)
    os._exit(0)


def _ready_then_wait() -> None:
    print("ready", flush=True)
    sys.stdin.readline()


async def _consume(args, handle, on_start=None):
    """Assign the event partitions of this child, read them to their end; time first to last.
    `on_start` gets the (topic, partition) pairs with nothing to read, before the clock starts."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from livemon.ingest.events import EVENT_TOPICS

    consumer = AIOKafkaConsumer(bootstrap_servers=args["bootstrap"], group_id=None, enable_auto_commit=False,
                                auto_offset_reset="earliest", fetch_max_bytes=64 << 20,
                                # small per-partition fetches: the six topics stay level in event
                                # time (a topic far ahead would make the others late)
                                max_partition_fetch_bytes=1 << 20)
    await consumer.start()
    try:
        tps = [TopicPartition(t, p) for t in EVENT_TOPICS for p in args["partitions"]]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        for tp in tps:  # an external broker: only what this data set added
            start = args.get("starts", {}).get(f"{tp.topic}:{tp.partition}")
            if start:
                consumer.seek(tp, start)
        ends = {tp: n for tp, n in (await consumer.end_offsets(tps)).items()
                if n > args.get("starts", {}).get(f"{tp.topic}:{tp.partition}", 0)}
        if on_start is not None:
            on_start({(tp.topic, tp.partition) for tp in tps if tp not in ends})
        _ready_then_wait()
        tune_gc()
        first = None
        messages = 0
        while ends:
            batches = await consumer.getmany(timeout_ms=100, max_records=20_000)
            now = time.time()
            if batches and first is None:
                first = now
            for tp, records in batches.items():
                messages += len(records)
                if records[-1].offset + 1 >= ends.get(tp, 0):
                    ends.pop(tp, None)
            handle(batches, now, consumer, finished=not ends)  # also when idle: steps go on
        return first, time.time(), messages
    finally:
        await consumer.stop()


def _role_raw(args):
    import orjson

    count = [0]

    def handle(batches, now, consumer, finished):
        n = 0
        for records in batches.values():
            for record in records:
                value = orjson.loads(record.value)
                n += len(value) if type(value) is list else 1
        count[0] += n

    first, last, messages = asyncio.run(_consume(args, handle))
    return {"events": count[0], "messages": messages, "first": first, "last": last}


class _Steps:
    """The worker's step (`livemon.agents.partition.step_all`) once a second of wall clock, and
    the Prometheus collector's update, timed."""

    def __init__(self, partitions):
        from livemon.exposition import RoomCollector

        self.partitions, self.collector, self.next = partitions, RoomCollector(), None
        self.steps, self.seconds = 0, 0.0

    def __call__(self, now: float, highwater=lambda topic, number: None) -> None:
        from livemon.agents.partition import step_all

        if self.next is None:
            self.next = now + 1.0
        if now < self.next:
            return
        self.next = now + 1.0
        started = time.perf_counter()
        live = step_all(self.partitions, now, highwater).live
        self.collector.update(live)
        self.steps += 1
        self.seconds += time.perf_counter() - started


def _role_engine(args):
    """The worker's own code on a partition set, without Faust or the broker's group: the merge
    across topics, decoding, forwarding decisions, the engine, and every second the step (advance,
    live snapshots, forgetting idle rooms) and the Prometheus collector."""
    from livemon.agents.partition import Applied, Partition, Record
    from livemon.engine import Engine
    from livemon.ingest.routing import Partitioner
    from livemon.topics import REPARTITION_TOPIC

    partitions = {number: Partition(number, Engine()) for number in args["partitions"]}
    home = Partitioner(args["partition_count"])
    sequence = itertools.count()
    stats = {"events": 0, "rejected": 0}
    reasons: dict[str, int] = {}
    step = _Steps(list(partitions.values()))

    def handle(batches, now, consumer, finished):
        from aiokafka import TopicPartition

        def highwater(topic, number):  # 0 for a topic not read here: the repartition topic, empty
            tp = TopicPartition(topic, number)
            return consumer.highwater(tp) if tp in consumer.assignment() else 0
        for number in {tp.partition for tp in batches}:  # before the batch counts as received, as the worker
            partitions[number].check_behind(highwater)
        for tp, records in batches.items():
            partition = partitions[tp.partition]
            for r in records:
                partition.receive(Record(r.topic, r.partition, r.offset, r.timestamp / 1000, r.key, r.value,
                                           r.headers), next(sequence), now)
        applied = Applied()
        for partition in partitions.values():
            partition.apply_due(math.inf if finished else partition.release_bound(highwater), home, now,
                                applied, {})
        stats["events"] += sum(applied.counts.values())
        stats["rejected"] += sum(1 for reject in applied.rejects)
        for reject in applied.rejects:
            reasons[reject.reason] = reasons.get(reject.reason, 0) + 1
        step(now, highwater)

    def on_start(empty):
        # As the worker merges: a topic holds the others back until it is heard from, except
        # those with nothing to read (the repartition topic is not read here).
        heard = time.monotonic()
        for partition in partitions.values():
            partition.heard[REPARTITION_TOPIC] = heard
        for topic, number in empty:
            partitions[number].heard[topic] = heard

    first, last, messages = asyncio.run(_consume(args, handle, on_start))
    return {**stats, "reasons": reasons, "messages": messages, "first": first, "last": last,
            "rooms": sum(len(p.engine.rooms) for p in partitions.values()),
            "steps": step.steps, "step_seconds": step.seconds}


def _backlog_highwater(topic: str, number: int) -> float:
    """A high-water mark for a consumer that reads a backlog to its end: always more to read."""
    return math.inf


def _role_faust(args):

    import faust

    from livemon.agents.partition import Partition
    from livemon.engine import Engine
    from livemon.ingest.events import EVENT_TOPICS, decode

    app = faust.App(f"bench-faust-{os.getpid()}", broker=f"kafka://{args['bootstrap']}", store="memory://",
                    web_enabled=False, autodiscover=False, topic_partitions=args["partition_count"],
                    consumer_auto_offset_reset="earliest", broker_session_timeout=6.0,
                    broker_heartbeat_interval=1.0, topic_disable_leader=True,
                    datadir=tempfile.mkdtemp(prefix="livemon-bench-faust-"))
    topic = app.topic(*EVENT_TOPICS, key_type=bytes, value_type=bytes, key_serializer="raw",
                      value_serializer="raw")
    engine = Engine()
    stepper = _Steps([Partition(0, engine)])
    state = {"first": None, "messages": 0, "events": 0, "rejected": 0}
    expected = args["messages"]

    @app.agent(topic)
    async def ingest(stream):
        async for value in stream:  # one message at a time, as a typical Faust agent does
            now = time.time()
            if state["first"] is None:
                state["first"] = now
            events, bad = decode(value)
            # The data is a backlog (as for the engine loop): rooms move on with its event time.
            state["rejected"] += len(bad) + len(engine.ingest(events, now, catching_up=True))
            state["events"] += len(events)
            state["messages"] += 1
            if state["messages"] >= expected:
                state["last"] = time.time()
                result = {k: state[k] for k in ("events", "messages", "first", "last", "rejected")}
                result.update(steps=stepper.steps, step_seconds=stepper.seconds)
                os.write(1, (json.dumps(result) + "\n").encode())  # Faust may have replaced sys.stdout
                os._exit(0)

    @app.timer(1.0)
    async def step():
        stepper(time.time(), _backlog_highwater)  # behind while reading: the step keeps the backlog's time

    _ready_then_wait()
    tune_gc()
    faust_worker(app, "warning").execute_from_commandline()
    return {"error": "faust worker stopped before the end of the data"}


def _role_quix(args):
    from livemon.bench_peers import role_quix

    return role_quix(args)


def _rss() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _drop(snapshot: dict) -> None:
    pass


def _role_memory(args):
    """RSS per tracked viewer: `viewers` concurrent viewers over `rooms` rooms, each with an enter,
    a heartbeat and a health beacon, the clock 30 s on (a steady show's state)."""
    from livemon.engine import Engine, EngineConfig
    from livemon.ingest.events import AGE_BANDS, DEVICES, GENDERS, SOURCES, Health, View
    from livemon.simulator.commerce import REGIONS as PROVINCES

    REGIONS = PROVINCES[0]

    viewers, rooms = args["viewers"], args["rooms"]
    per_room = viewers // rooms
    rng = random.Random(0)
    engine = Engine(EngineConfig(max_rooms=None))  # the engine's own cost, not the worker's room cap
    tune_gc()
    gc.collect()
    before = _rss()
    cdns = ("cdn-a", "cdn-b", "cdn-c")
    slices = 80  # half a second each: every room's events in time order, rooms interleaved
    for s in range(slices):
        a, b = s * 0.5, (s + 1) * 0.5
        for r in range(rooms):
            room = f"room-{r:05d}"
            events = []
            for offset, kind in ((0.0, 0), (5.0, 1), (15.0, 2)):  # enter, beacon 5 s on, heartbeat 15 s on
                first = max(0, math.ceil((a - offset) * per_room / 20.0))
                last = min(per_room, math.ceil((b - offset) * per_room / 20.0))
                for u in range(first, last):
                    ts = T0 + u * 20.0 / per_room + offset
                    user = f"u{r}-{u}"
                    if kind == 0:  # with the audience attributes of SPEC §8, as the simulator sends
                        events.append(View(room, user, ts, "enter", source=rng.choice(SOURCES),
                                           device=rng.choice(DEVICES), region=rng.choice(REGIONS),
                                           age_band=rng.choice(AGE_BANDS), gender=rng.choice(GENDERS),
                                           follower=rng.random() < 0.3))
                    elif kind == 1:
                        events.append(Health(room, user, ts, cdns[u % 3], 10_000, 0, 0,
                                             latency_ms=rng.uniform(800, 4000)))
                    else:
                        events.append(View(room, user, ts, "heartbeat"))
            events.sort(key=lambda event: event.ts)
            engine.ingest(events)
        if s % 2 == 1:  # each step, as the worker does, which encodes each final as it is made
            engine.advance(sink=_drop)
    engine.ingest([View("room-00000", "clock", T0 + 40.0, "heartbeat")])
    engine.advance(sink=_drop)
    gc.collect()
    after = _rss()
    tracked = sum(len(room.viewers) for room in engine.rooms.values())
    return {"viewers": tracked, "rooms": len(engine.rooms), "rss_delta": after - before,
            "bytes_per_viewer": (after - before) / max(1, tracked)}


def _role_render(args):
    """`/metrics` render time at `rooms` rooms (the exposition collector over live snapshots)."""
    from livemon.engine import Engine, EngineConfig
    from livemon.exposition import RoomCollector
    from livemon.ingest.events import Click, Danmaku, Health, Order, View

    rooms = args["rooms"]
    rng = random.Random(0)
    engine = Engine(EngineConfig(max_rooms=None))  # more rooms than one partition's default cap
    tune_gc()
    for r in range(rooms):
        room = f"room-{r:05d}"
        events = []
        for u in range(20):
            user = f"u{r}-{u}"
            ts = T0 + u
            events.append(View(room, user, ts, "enter"))
            events.append(Health(room, user, ts + 0.5, ("cdn-a", "cdn-b")[u % 2], 10_000, rng.choice((0, 0, 400)),
                                 rng.choice((0, 0, 1)), latency_ms=rng.uniform(800, 4000)))
            if u % 4 == 0:
                events.append(Danmaku(room, user, ts + 0.6, "666"))
                events.append(Click(room, user, ts + 0.7, "product", product_id="sku-1"))
            if u % 10 == 0:
                events.append(Order(room, user, ts + 0.8, f"o{r}-{u}", "sku-1", 99.0, "paid"))
        engine.ingest(events)
    engine.advance()
    started = time.perf_counter()
    live = engine.live_snapshots()
    snapshot_seconds = time.perf_counter() - started
    # A running worker's engine heap is long-lived (old GC generation); the one just built here is
    # young, so the first render's allocations would set off a collection over all of it (0.7 s at
    # 10,000 rooms) that a worker in its steady state does not pay. Age it as the worker's would.
    gc.collect()
    gc.freeze()
    # A worker renders once per step, each time over new snapshots: the median of a few renders,
    # each after an update (a fresh version, so nothing is served from the previous text).
    collector = RoomCollector()
    times = []
    for _ in range(5):
        collector.update(dict(live))
        started = time.perf_counter()
        text = collector.render()
        times.append(time.perf_counter() - started)
    return {"rooms": len(live), "render_s": statistics.median(times), "render_max_s": max(times),
            "snapshots_s": snapshot_seconds, "bytes": len(text),
            "samples": text.count(b"\n") - text.count(b"\n#")}


class Child:
    def __init__(self, args: dict, log):
        self.process = subprocess.Popen(
            [sys.executable, "-c", "from livemon.bench import _child_main; _child_main()", json.dumps(args)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True)

    def ready(self, timeout: float = 120.0) -> None:
        line = self.process.stdout.readline()
        if line.strip() != "ready":
            self.process.kill()
            raise click.ClickException(f"bench child failed to start (see the log): {line!r}")

    def go(self) -> None:
        self.process.stdin.write("go\n")
        self.process.stdin.flush()

    def result(self, timeout: float) -> dict:
        try:
            out, _ = self.process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.communicate()
            return {"error": f"timed out after {timeout:.0f} s"}
        # Faust writes terminal control codes to stdout: the result is the line's JSON object.
        lines = [line[line.index("{"):] for line in out.splitlines() if "{" in line]
        if not lines:
            return {"error": f"exit code {self.process.returncode}, no result"}
        return json.loads(lines[-1])

    def run(self, timeout: float, handshake: bool = True) -> dict:
        if handshake:
            self.ready()
            self.go()
        return self.result(timeout)


# ---------------------------------------------------------------------------------------------
# the real worker


def _scrape(url: str, timeout: float = 2.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.read()


_EVENTS_RE = re.compile(rb"^livemon_events(?:_rejected)?_total\{[^}]*\} ([0-9.e+]+)$", re.M)


class Worker(WorkerProcess):
    """`livemon worker` in a subprocess, with the events its /metrics counts."""

    def __init__(self, bootstrap: str, log_path: str, group: str):
        super().__init__(bootstrap, ["--no-alerts", "--no-web-page", "--no-recording", "--group", group,
                                     "--log-level", "error"], log_path)

    def counted(self) -> float:
        return sum(float(v) for v in _EVENTS_RE.findall(_scrape(self.url + "/metrics")))


def _worker_throughput(bootstrap: str, expected_events: int, log, timeout: float) -> dict:
    worker = Worker(bootstrap, log.name, f"bench-tp-{os.getpid()}")
    try:
        deadline = time.monotonic() + timeout
        worker.wait_healthy()
        first = first_n = None
        last_n, last_change = 0.0, time.monotonic()
        while time.monotonic() < deadline:
            try:
                n, now = worker.counted(), time.time()
            except (TimeoutError, OSError):  # busy on a big batch: /metrics answers after it
                continue
            if n and first is None:
                first, first_n = now, n
            if n != last_n:
                last_n, last_change = n, time.monotonic()
            if n >= expected_events or (first is not None and time.monotonic() - last_change > 10):
                break
            time.sleep(0.05)
        if first is None or last_n <= first_n:
            return {"error": "the worker read everything before its first scrape: too little data to time"}
        return {"events": last_n, "first": first, "last": now,
                "events_per_s": (last_n - first_n) / max(1e-9, now - first)}
    finally:
        worker.stop()


def _nearest_rank(values, q):
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q * len(ordered))) - 1] if ordered else None


async def _e2e(bootstrap: str, url: str, messages, rate: float, seconds: float, warmup: float,
               envelope: int = 20) -> dict:
    """Steady traffic at `rate` events/s (the simulated events, re-stamped with the wall clock at
    sending), plus a probe every 100 ms: a paid order in room `bench-probe`, found on /metrics as
    `livemon_room_orders_total{room="bench-probe"}`; latency = first scrape showing it - send.
    After the measured seconds the traffic (and the probe room's clock) goes on until every probe
    is seen: a room gone silent shows its last instant only after the lateness, which would be a
    tail of the benchmark, not of a show."""
    import aiohttp
    import msgspec
    from aiokafka import AIOKafkaProducer

    from livemon.ingest.events import Order, encode

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=2, max_batch_size=1 << 20)
    await producer.start()
    replace = msgspec.structs.replace
    # Encoded once with a placeholder time; re-stamped with the wall clock at sending (C-speed).
    placeholder = 4_000_000_000.5
    mark = encode(placeholder)
    chunks = [(topic, room.encode(), len(events[i:i + envelope]),
               encode([replace(event, ts=placeholder) for event in events[i:i + envelope]]))
              for topic, room, events in messages for i in range(0, len(events), envelope)]
    sent_at: list[float] = []
    seen_at: dict[int, float] = {}
    probe_line = re.compile(rb'^livemon_room_orders_total\{room="bench-probe"\} ([0-9.e+]+)$', re.M)
    stop = asyncio.Event()  # the traffic ends
    measured = asyncio.Event()  # no more counted probes; traffic goes on
    started = time.time()
    measure_from = started + warmup

    async def load():
        index, sent = 0, 0
        next_probe = started
        while not stop.is_set():
            now = time.time()
            while sent < rate * (now - started):
                topic, key, n, template = chunks[index % len(chunks)]
                index += 1
                await producer.send(topic, template.replace(mark, b"%.3f" % now), key=key)
                sent += n
            if now >= next_probe:
                next_probe += 0.1
                if now >= measure_from and not measured.is_set():
                    k = len(sent_at)
                    sent_at.append(time.time())
                    probe = Order("bench-probe", "probe", round(time.time(), 3), f"probe-{k}", "sku-probe", 1.0, "paid")
                else:  # warm-up: the probe room exists and its clock moves, nothing counted
                    probe = Order("bench-probe", "probe", round(now, 3), "warm-up", "sku-probe", 1.0, "created")
                await producer.send(TOPIC_OF_TYPE["order"], encode(probe), key=b"bench-probe")
            await asyncio.sleep(0.005)
        return sent

    async def poll():
        async with aiohttp.ClientSession() as session:
            while not measured.is_set() or len(seen_at) < len(sent_at):
                try:
                    async with session.get(url + "/metrics") as response:
                        body = await response.read()
                except aiohttp.ClientError:
                    await asyncio.sleep(0.05)
                    continue
                now = time.time()
                match = probe_line.search(body)
                if match:
                    for k in range(int(float(match.group(1)))):
                        seen_at.setdefault(k, now)
                if measured.is_set() and now - stopped_at[0] > 10:
                    break
                await asyncio.sleep(0.02)

    stopped_at = [0.0]
    loader = asyncio.create_task(load())
    poller = asyncio.create_task(poll())
    await asyncio.sleep(warmup + seconds)
    measured.set()
    stopped_at[0] = time.time()
    await poller
    stop.set()
    sent = await loader
    await producer.flush()
    await producer.stop()
    latencies = [seen_at[k] - t for k, t in enumerate(sent_at) if k in seen_at]
    return {"rate": sent / (time.time() - started), "probes": len(sent_at), "seen": len(latencies),
            "p50_s": _nearest_rank(latencies, 0.5), "p99_s": _nearest_rank(latencies, 0.99),
            "max_s": max(latencies) if latencies else None, "envelope": envelope}


# ---------------------------------------------------------------------------------------------
# the command


def _machine() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    memory = None
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gb": round(memory / 2**30, 1) if memory else None,
            "python": platform.python_version(), "platform": platform.platform(),
            "load_avg": [round(x, 2) for x in os.getloadavg()]}


def _rate(result: dict) -> float | None:
    if "error" in result or not result.get("first"):
        return None
    return result["events"] / max(1e-9, result["last"] - result["first"])


@click.command()
@click.option("--broker", default=None, metavar="HOST:PORT",
              help="Kafka bootstrap server (default: the embedded broker, a fresh one per data set). "
                   "With an external broker the Faust, livemon worker and end-to-end parts are left out "
                   "(they read the topics from the start).")
@click.option("--quick", is_flag=True, help="Smaller sizes, same shape: done within a minute.")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of the simulated traffic.")
@click.option("--write", "write_path", type=click.Path(dir_okay=False, writable=True), default=None,
              help="Write the report (machine, date, figures) to this Markdown file, e.g. BENCHMARKS.md.")
@click.option("--skip", multiple=True, type=click.Choice(["faust", "quix", "worker", "scale", "e2e", "memory", "render"]),
              help="Leave a part out (repeatable).")
@click.option("--log", "log_path", type=click.Path(dir_okay=False), default=None,
              help="Where the children's and brokers' output goes (default: a temporary file).")
def bench(broker, quick, seed, write_path, skip, log_path):
    """Measure throughput (envelopes of 1, 10, 100 events) against a raw aiokafka consumer and a
    per-message Faust agent, scale-out, end-to-end latency, memory per viewer and /metrics cost."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    mode = "quick" if quick else "full"
    size = SIZES[mode]
    console = Console(stderr=True)
    results: dict = {"mode": mode, "seed": seed, "date": datetime.datetime.now().astimezone().isoformat(
        timespec="seconds"), "machine": _machine(), "command": "livemon " + shlex.join(["bench", *sys.argv[2:]])}
    log_path = log_path or tempfile.mkstemp(prefix="livemon-bench-", suffix=".log")[1]
    wall = time.monotonic()
    steps = ["traffic"] + [f"envelope {e}" for e in ENVELOPES] + \
        [s for s in ("scale", "e2e", "memory", "render") if s not in skip]
    with open(log_path, "ab") as log, ExitStack() as stack, Progress(
            SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
            TimeElapsedColumn(), console=console, transient=False) as progress:
        overall = progress.add_task(f"livemon bench ({mode})", total=len(steps))
        phase = progress.add_task("", total=None)

        def status(text):
            progress.update(phase, description=text)

        def done():
            progress.advance(overall)

        def new_broker():
            if broker:
                return broker
            from livemon.broker import EmbeddedBroker

            status("starting the embedded broker")
            embedded = EmbeddedBroker(log_path=log_path).start()
            stack.callback(embedded.stop)
            return embedded.bootstrap, embedded

        status(f"generating traffic: simulator, seed {seed}, {size['rooms']} rooms, "
               f"{size['rate']:,} ev/s x {size['duration']} s")
        messages = traffic(size["rooms"], size["rate"], size["duration"], seed)
        total_events = sum(len(events) for _, _, events in messages)
        results["data"] = {"generator": "livemon.simulator.core.generate('normal')", "rooms": size["rooms"],
                           "events": total_events, "event_seconds": size["duration"]}
        done()

        throughput = results["throughput"] = {}
        partitions = None
        for envelope in ENVELOPES:
            limit = size["events_1"] if envelope == 1 else None
            packed = pack(messages, envelope, limit)
            events = sum(item[3] for item in packed)
            row = throughput[str(envelope)] = {"events": events, "messages": len(packed)}
            made = new_broker()
            bootstrap, embedded = made if isinstance(made, tuple) else (made, None)
            if embedded is not None:
                partitions = embedded.partitions
            else:
                from livemon.broker import ensure_topics

                partitions = ensure_topics(bootstrap)[TOPIC_OF_TYPE["view"]]
            starts = asyncio.run(_end_offsets(bootstrap, partitions)) if broker else {}
            status(f"envelope {envelope}: producing {len(packed):,} messages ({events:,} events)")
            asyncio.run(_produce(bootstrap, packed))
            base = {"bootstrap": bootstrap, "partitions": list(range(partitions)), "partition_count": partitions,
                    "starts": starts}
            status(f"envelope {envelope}: raw aiokafka consumer")
            row["raw"] = _rate(Child({**base, "role": "raw"}, log).run(600))
            status(f"envelope {envelope}: engine worker loop")
            engine_result = Child({**base, "role": "engine"}, log).run(900)
            row["engine"] = _rate(engine_result)
            row["rejected"] = engine_result.get("rejected")
            row["rejected_by_reason"] = engine_result.get("reasons")
            row["steps"] = {"engine": [engine_result.get("steps"), engine_result.get("step_seconds")]}
            if "faust" not in skip and not broker and (envelope == 1 or mode == "full"):
                status(f"envelope {envelope}: per-message Faust agent")
                faust_result = Child({**base, "role": "faust", "messages": len(packed)}, log).run(600)
                row["faust"] = _rate(faust_result)
                row["faust_rejected"] = faust_result.get("rejected")
                row["steps"]["faust"] = [faust_result.get("steps"), faust_result.get("step_seconds")]
            if "quix" not in skip and not broker and (envelope == 1 or mode == "full"):
                from livemon.bench_peers import measure_quix

                status(f"envelope {envelope}: Quix Streams tumbling-window count per room")
                measure_quix(row, base, mode, log, envelope)
            if envelope == 100 and "worker" not in skip and not broker:
                status("envelope 100: livemon worker (Faust runtime), rate from its /metrics")
                real = _worker_throughput(bootstrap, events, log, timeout=300)
                row["worker"] = real.get("events_per_s")
            if envelope == 100 and "scale" not in skip:
                status("scale-out: 2 engine worker processes, half the partitions each")
                half = partitions // 2
                children = [Child({**base, "role": "engine", "partitions": list(range(partitions))[s]}, log)
                            for s in (slice(0, half), slice(half, None))]
                for child in children:
                    child.ready()
                for child in children:
                    child.go()
                parts = [child.result(900) for child in children]
                if all("error" not in p and p.get("first") for p in parts):
                    two = sum(p["events"] for p in parts) / (max(p["last"] for p in parts) -
                                                            min(p["first"] for p in parts))
                    results["scale_out"] = {"one": row["engine"], "two": two,
                                            "ratio": two / row["engine"] if row["engine"] else None,
                                            "split": [p["events"] for p in parts]}
                else:
                    results["scale_out"] = {"error": [p.get("error") for p in parts]}
                done()
            for name in ("raw", "faust"):
                if row.get(name) and row.get("engine"):
                    row[f"engine_vs_{name}"] = row["engine"] / row[name]
            if embedded is not None:
                embedded.stop()
            done()
        per_event_faust = throughput["1"].get("faust")
        best = throughput["100"].get("engine")
        results["ratio_vs_faust"] = best / per_event_faust if best and per_event_faust else None

        if "e2e" not in skip and not broker:
            made = new_broker()
            bootstrap, embedded = made if isinstance(made, tuple) else (made, None)
            status("end-to-end: starting livemon worker")
            worker = Worker(bootstrap, log.name, f"bench-e2e-{os.getpid()}")
            try:
                worker.wait_healthy()
                status(f"end-to-end: {size['e2e_rate']:,} ev/s for {size['e2e_warmup']}+{size['e2e_seconds']} s, "
                       f"probe every 100 ms")
                results["e2e"] = asyncio.run(_e2e(bootstrap, worker.url, messages, size["e2e_rate"],
                                                  size["e2e_seconds"], size["e2e_warmup"]))
                results["e2e"]["visible_on"] = "livemon worker /metrics"
            finally:
                worker.stop()
                if embedded is not None:
                    embedded.stop()
            done()
        if "memory" not in skip:
            status(f"memory: {size['mem_viewers']:,} viewers over {size['mem_rooms']:,} rooms, in-process")
            results["memory"] = Child({"role": "memory", "viewers": size["mem_viewers"],
                                       "rooms": size["mem_rooms"]}, log).run(900, handshake=False)
            done()
        if "render" not in skip:
            status(f"/metrics: {size['render_rooms']:,} rooms")
            results["render"] = Child({"role": "render", "rooms": size["render_rooms"]}, log).run(600, handshake=False)
            done()
        status("done")
    results["seconds"] = round(time.monotonic() - wall, 1)
    results["targets"] = _verdicts(results)
    text = _report(results)
    click.echo(text)
    click.echo(json.dumps(results, separators=(",", ":")))
    if write_path:
        from livemon.soak import write_section

        # Only this command's section: `livemon soak` and `livemon bench-alerts` write their own.
        write_section(write_path, text + "\n```json\n" + json.dumps(results, separators=(",", ":")) + "\n```",
                      begin="<!-- bench:begin -->", end="<!-- bench:end -->")
        console.print(f"wrote {write_path}")


def _verdicts(results: dict) -> dict:
    t = results.get("throughput", {})
    engine100 = (t.get("100") or {}).get("engine")
    out = {}
    if engine100 is not None:
        out["events_per_s_100"] = {"value": engine100, "target": TARGETS["events_per_s_100"],
                                   "ok": engine100 >= TARGETS["events_per_s_100"]}
    if results.get("ratio_vs_faust"):
        out["ratio_vs_faust"] = {"value": results["ratio_vs_faust"], "target": TARGETS["ratio_vs_faust"],
                                 "ok": results["ratio_vs_faust"] >= TARGETS["ratio_vs_faust"]}
    p99 = (results.get("e2e") or {}).get("p99_s")
    if p99 is not None:
        out["e2e_p99_s"] = {"value": p99, "target": TARGETS["e2e_p99_s"], "ok": p99 <= TARGETS["e2e_p99_s"]}
    per_viewer = (results.get("memory") or {}).get("bytes_per_viewer")
    if per_viewer is not None:
        out["bytes_per_viewer"] = {"value": per_viewer, "target": TARGETS["bytes_per_viewer"],
                                   "ok": per_viewer <= TARGETS["bytes_per_viewer"]}
    render = (results.get("render") or {}).get("render_s")
    if render is not None:
        out["render_s"] = {"value": render, "target": TARGETS["render_s"], "ok": render <= TARGETS["render_s"]}
    return out


def _steps_lines(throughput: dict) -> list[str]:
    """Each consumer steps once a second of wall clock while it reads (live and final snapshots,
    as a worker does): a consumer that stepped less did less of the work. With the rejected events."""
    lines = []
    for envelope, row in throughput.items():
        parts = []
        for name, label, rejected in (("engine", "engine worker loop", row.get("rejected")),
                                      ("faust", "Faust", row.get("faust_rejected"))):
            steps, seconds = (row.get("steps") or {}).get(name) or (None, None)
            if steps is not None:
                parts.append(f"{label} {steps} steps ({seconds:.1f} s), {_fmt(rejected)} rejected")
        if parts:
            lines.append(f"- envelope {envelope}: " + "; ".join(parts))
    return ["Steps made while reading, and events rejected:", "", *lines, ""] if lines else []


def _fmt(value, unit="", digits=0):
    if value is None:
        return "–"
    if isinstance(value, float) and digits:
        return f"{value:,.{digits}f}{unit}"
    return f"{value:,.0f}{unit}"


def _report(r: dict) -> str:
    m = r["machine"]
    lines = [f"# livemon bench ({r['mode']})", "",
             f"- date: {r['date']}", f"- machine: {m['cpu']}, {m['cores']} cores, {m['memory_gb']} GB, "
             f"Python {m['python']}, {m['platform']}; load average at start {m['load_avg']}",
             f"- command: `{r['command']}`; seed {r['seed']}; {r.get('seconds', '?')} s",
             f"- traffic: {r['data']['generator']}, {r['data']['rooms']} rooms, {r['data']['events']:,} events "
             f"({r['data']['event_seconds']} s of show); the 1-event envelope uses a prefix", "",
             "## Throughput, events/s (one process each; timed from its first message to its last)", "",
             "| envelope | events | raw aiokafka (ceiling) | per-message Faust + engine | engine worker loop "
             "| livemon worker | engine / raw | engine / Faust |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for envelope, row in r.get("throughput", {}).items():
        lines.append(f"| {envelope} | {row['events']:,} | {_fmt(row.get('raw'))} | {_fmt(row.get('faust'))} | "
                     f"{_fmt(row.get('engine'))} | {_fmt(row.get('worker'))} | "
                     f"{_fmt(row.get('engine_vs_raw'), digits=2)} | {_fmt(row.get('engine_vs_faust'), digits=1)} |")
    lines += ["", f"Engine worker loop at 100-event envelopes vs the per-event Faust agent (envelope 1): "
                  f"**{_fmt(r.get('ratio_vs_faust'), 'x', 1)}**", ""]
    lines += _steps_lines(r.get("throughput", {}))
    from livemon.bench_peers import report_lines

    lines += report_lines(r)
    so = r.get("scale_out")
    if so:
        lines += ["## Scale-out (engine worker loop, 100-event envelopes, partitions split in half)", "",
                  f"1 process: {_fmt(so.get('one'))} ev/s; 2 processes: {_fmt(so.get('two'))} ev/s; "
                  f"ratio **{_fmt(so.get('ratio'), digits=2)}** (2 cores shared with the broker and the "
                  f"bench itself, and a noisy machine: read the ratio, not the absolute figures)", ""]
    e = r.get("e2e")
    if e:
        lines += ["## End-to-end latency (produce -> value on `/metrics` of `livemon worker`)", "",
                  f"steady {_fmt(e.get('rate'))} ev/s (envelopes of {e.get('envelope')}), {e.get('seen')}/"
                  f"{e.get('probes')} probes seen: p50 **{_fmt(e.get('p50_s'), ' s', 3)}**, "
                  f"p99 **{_fmt(e.get('p99_s'), ' s', 3)}**, max {_fmt(e.get('max_s'), ' s', 3)}", ""]
    mem = r.get("memory")
    if mem and "error" not in mem:
        lines += ["## Memory and /metrics", "",
                  f"- {mem['viewers']:,} tracked viewers over {mem['rooms']:,} rooms: RSS +{mem['rss_delta'] / 2**20:,.0f} "
                  f"MiB, **{mem['bytes_per_viewer']:,.0f} bytes per viewer**"]
    ren = r.get("render")
    if ren and "error" not in ren:
        lines += [f"- `/metrics` at {ren['rooms']:,} rooms: render **{ren['render_s']:.3f} s** "
                  f"({ren['samples']:,} samples, {ren['bytes'] / 2**20:.1f} MiB); the live snapshots "
                  f"behind it {ren['snapshots_s']:.3f} s (once per step)"]
    lines += ["", "## Targets", "", "| target | measured | goal | met |", "|---|---:|---:|---|"]
    for name, v in r.get("targets", {}).items():
        digits = 3 if name in ("e2e_p99_s", "render_s") else (1 if name == "ratio_vs_faust" else 0)
        lines.append(f"| {name} | {_fmt(v['value'], digits=digits)} | {_fmt(v['target'], digits=digits)} | "
                     f"{'yes' if v['ok'] else 'NO'} |")
    return "\n".join(lines) + "\n"
