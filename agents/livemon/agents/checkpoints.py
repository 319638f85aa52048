"""Durable per-partition checkpoints of the engine state, stored in Kafka.

Checkpoint partition p holds the state of the rooms of event partition p, together with the
offsets (one per event topic) of the first message that state does NOT reflect. A worker that
takes over partition p loads the newest checkpoint, then applies exactly the messages at or
after those offsets: earlier ones are skipped, so at-least-once redelivery never counts twice
and nothing in between is missed.

On the topic, one checkpoint is a run of `chunk` records (the payload, split to stay under the
broker's message size) followed by one `header` record naming the chunks' offsets. The payload
(layout 3) is zstd-compressed (level 1; layout 2, still read, was zlib): the rooms' alert state as
JSON, then the engine state; compression makes checkpoints 5-8 times smaller, which matters most on a broker that keeps every record. A checkpoint
is complete once its header is written; a writer killed halfway leaves chunks without a header,
which readers never use. Brokers without log compaction keep the topic by retention time only.

Consecutive owners of a partition each start from the newest checkpoint and only move forward,
so the checkpoints of a partition form a chain ordered by their offsets. A reader picks the
most advanced header among the newest few, which protects against a late write from a stale
owner (one paused past its session timeout) landing after its successor's.
"""

from __future__ import annotations

import asyncio
import logging
import zlib

import cramjam
from dataclasses import dataclass, field

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from livemon.broker import CHECKPOINT_TOPIC
from livemon.kafka_connection import KafkaConnection

CHUNK_BYTES = 512 * 1024
HEADER_KEY = b"header"
CHUNK_KEY = b"chunk"
# How many records to look back for headers; a window holds at least one header unless a
# checkpoint has more chunks than this, in which case we keep reading further back.
SCAN_WINDOW = 64
WANTED_HEADERS = 3

log = logging.getLogger(__name__)


@dataclass
class Checkpoint:
    partition: int
    offsets: dict[str, int]  # event topic -> next offset to apply
    rooms: list[str]
    state: bytes = b""  # the engine's state of `rooms`
    alerts: dict = field(default_factory=dict)  # the alerting layer's state of `rooms`
    worker: str = ""
    wall: float = 0.0
    chunks: list[int] = field(default_factory=list)
    # Forwarded events applied, per (topic, source partition): see ingest/routing.py.
    sources: dict[str, int] = field(default_factory=dict)
    layout: int = 3  # the payload's layout (see `_unpack`): LAYOUT when written
    state_bytes: int = 0  # the size of `state` when written packed (`pack`), without it

    @property
    def progress(self) -> int:
        return sum(self.offsets.values())


LAYOUT = 3  # the layout `_pack` writes


def pack(checkpoint: Checkpoint) -> bytes:
    """The stored payload of `checkpoint`, prefixed with its state's size (8 bytes): what a job
    of `forked.encode` returns (see `unpack_job`)."""
    return len(checkpoint.state).to_bytes(8, "big") + _pack(checkpoint)


def unpack_job(packed: bytes) -> tuple[int, bytes]:
    """(the state's size, the stored payload) of `pack`'s bytes."""
    return int.from_bytes(packed[:8], "big"), packed[8:]


def _pack(checkpoint: Checkpoint) -> bytes:
    # zstd level 1: smaller than zlib level 1 at three times its speed (a partition of 300 rooms
    # is tens of MB of state every interval; the compression runs in a thread, and releases the GIL).
    alerts = orjson.dumps(checkpoint.alerts)
    return bytes(cramjam.zstd.compress(len(alerts).to_bytes(8, "big") + alerts + checkpoint.state, level=1))


def _unpack(payload: bytes, layout: int) -> tuple[bytes, dict]:
    """(engine state, alert state) of a stored payload; layout 1 held the engine state alone,
    layout 2 was zlib-compressed."""
    if layout < 2:
        return payload, {}
    data = zlib.decompress(payload) if layout == 2 else bytes(cramjam.zstd.decompress(payload))
    size = int.from_bytes(data[:8], "big")
    return data[8 + size:], orjson.loads(data[8:8 + size])


def ahead(stored: dict[str, int], mine: dict[str, int]) -> bool:
    """True when a stored checkpoint reflects messages that `mine` does not."""
    return any(offset > mine.get(topic, 0) for topic, offset in stored.items())


class CheckpointStore:
    def __init__(self, bootstrap: str | KafkaConnection, producer: AIOKafkaProducer, partitions: int,
                 topic: str = CHECKPOINT_TOPIC, on_rejected=lambda: None):
        self.connection = KafkaConnection.of(bootstrap)
        self.partitions = partitions
        self.producer = producer
        self.topic = topic
        self._reader: AIOKafkaConsumer | None = None
        self._reader_lock = asyncio.Lock()
        self.on_rejected = on_rejected  # called for each record skipped as not a checkpoint of ours

    async def close(self) -> None:
        if self._reader is not None:
            await self._reader.stop()
            self._reader = None

    async def write(self, checkpoint: Checkpoint, payload: bytes) -> int:
        """Write one checkpoint, its payload packed already (see `pack`, run in a forked child);
        return the offset of its header once the broker has it."""
        pieces = [payload[i:i + CHUNK_BYTES] for i in range(0, len(payload), CHUNK_BYTES)]
        futures = [await self.producer.send(self.topic, piece, key=CHUNK_KEY,
                                            partition=checkpoint.partition) for piece in pieces]
        chunk_offsets = [(await future).offset for future in futures]
        header = {"v": LAYOUT, "partition": checkpoint.partition, "offsets": checkpoint.offsets,
                  "rooms": checkpoint.rooms, "chunks": chunk_offsets, "worker": checkpoint.worker,
                  "wall": checkpoint.wall, "bytes": checkpoint.state_bytes,
                  "stored": len(payload),
                  "sources": checkpoint.sources}
        meta = await self.producer.send_and_wait(self.topic, orjson.dumps(header), key=HEADER_KEY,
                                                 partition=checkpoint.partition)
        return meta.offset

    async def _consumer(self) -> AIOKafkaConsumer:
        if self._reader is None:
            # No group: a plain reader that we point at exact offsets.
            self._reader = AIOKafkaConsumer(**self.connection.aiokafka_kwargs(), enable_auto_commit=False,
                                            group_id=None, auto_offset_reset="earliest",
                                            fetch_max_bytes=8 * 1024 * 1024,
                                            max_partition_fetch_bytes=4 * 1024 * 1024)
            await self._reader.start()
            # Assigned once and paused: an assignment change costs a metadata round trip, and a
            # running partition would be prefetched whole. A read resumes just its partition.
            tps = [TopicPartition(self.topic, p) for p in range(self.partitions)]
            self._reader.assign(tps)
            self._reader.pause(*tps)
        return self._reader

    async def _read_range(self, consumer: AIOKafkaConsumer, tp: TopicPartition,
                          start: int, end: int) -> dict[int, tuple[bytes, bytes]]:
        """Records with offsets in [start, end) as {offset: (key, value)}."""
        records: dict[int, tuple[bytes, bytes]] = {}
        consumer.seek(tp, start)
        consumer.resume(tp)
        try:
            position = start
            while position < end:
                batch = await consumer.getmany(tp, timeout_ms=2000, max_records=500)
                messages = batch.get(tp, [])
                if not messages:
                    # Nothing more to read (records removed by retention, or a gap): stop here.
                    break
                for message in messages:
                    if message.offset < end:
                        records[message.offset] = (message.key, message.value)
                    position = message.offset + 1
        finally:
            consumer.pause(tp)
        return records

    async def latest(self, partition: int, with_state: bool = True) -> Checkpoint | None:
        """The most advanced complete checkpoint of `partition`, or None if there is none.

        A record on the topic that is not a checkpoint of ours (a poison record, a header whose
        chunks do not unpack) is skipped, counted in `rejected`, and the next best one used."""
        async with self._reader_lock:
            consumer = await self._consumer()
            tp = TopicPartition(self.topic, partition)
            end = (await consumer.end_offsets([tp]))[tp]
            begin = (await consumer.beginning_offsets([tp]))[tp]
            headers: list[tuple[int, Checkpoint]] = []
            high = end
            while high > begin and len(headers) < WANTED_HEADERS:
                low = max(begin, high - SCAN_WINDOW)
                records = await self._read_range(consumer, tp, low, high)
                for offset in sorted(records, reverse=True):
                    key, value = records[offset]
                    if key == HEADER_KEY:
                        header = _header(partition, value)
                        if header is None:
                            self.on_rejected()
                            log.warning("unreadable checkpoint header at %s@%d skipped", tp, offset)
                        else:
                            headers.append((offset, header))
                high = low
            # Most advanced first; among equals, the newest.
            headers.sort(key=lambda item: (item[1].progress, item[0]), reverse=True)
            for offset, checkpoint in headers:
                if not with_state:
                    return checkpoint
                try:
                    await self._load_state(consumer, tp, checkpoint)
                except (ValueError, TypeError, zlib.error, orjson.JSONDecodeError) as error:
                    self.on_rejected()
                    log.warning("checkpoint at %s@%d unusable (%r); trying the one before", tp, offset, error)
                    continue
                return checkpoint
            return None

    async def _load_state(self, consumer: AIOKafkaConsumer, tp: TopicPartition, checkpoint: Checkpoint) -> None:
        chunks = checkpoint.chunks
        records = await self._read_range(consumer, tp, min(chunks), max(chunks) + 1)
        missing = [offset for offset in chunks if offset not in records]
        if missing:
            raise RuntimeError(f"checkpoint of partition {tp.partition} lost chunks {missing}")
        payload = b"".join(records[offset][1] or b"" for offset in chunks)
        state, alerts = await asyncio.to_thread(_unpack, payload, checkpoint.layout)
        if not isinstance(alerts, dict):
            raise ValueError("alert state is not an object")
        checkpoint.state, checkpoint.alerts = state, alerts


def _header(partition: int, value: bytes | None) -> Checkpoint | None:
    """The checkpoint a header record describes, without its state; None if it is not one."""
    try:
        header = orjson.loads(value or b"")
        offsets, rooms, chunks = header["offsets"], header["rooms"], header["chunks"]
        sources = header.get("sources", {})
        valid = (all(isinstance(k, str) and type(v) is int and v >= 0 for k, v in offsets.items())
                 and all(isinstance(k, str) and type(v) is int and v >= 0 for k, v in sources.items())
                 and isinstance(rooms, list) and all(isinstance(room, str) for room in rooms)
                 and chunks and all(type(c) is int and c >= 0 for c in chunks)
                 and type(header.get("v", 1)) is int)
    except (orjson.JSONDecodeError, TypeError, KeyError, AttributeError):
        return None
    if not valid:
        return None
    return Checkpoint(partition=partition, offsets=offsets, rooms=rooms, worker=str(header.get("worker", "")),
                      wall=header.get("wall", 0.0), chunks=chunks, sources=sources, layout=header.get("v", 1))
