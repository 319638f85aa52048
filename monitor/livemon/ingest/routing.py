"""Which partition a room lives on, and the records that carry misrouted events there.

A room's events must all reach one engine. Producers are asked to key each message by its
`room_id`, and the partition of a key is the Java client's: murmur2 of the key's UTF-8 bytes,
made positive, modulo the partition count (what aiokafka, kafka-python, the Java client and
librdkafka's `murmur2_random` partitioner compute). A message without a key, with another key,
or an envelope carrying several rooms' events, lands elsewhere; the worker owning that partition
forwards those events in a *forward record* to their room's partition of the repartition topic.

A forward record names the partition it comes from and, for each source message, its topic and
offset with the events it forwards. The receiver applies a source message's events once: per
(topic, source partition) it keeps the next source offset it accepts (see `ForwardMarks`), so a
record sent again after a takeover, or delivered twice by a producer retry, changes nothing.
Pure code: no I/O.
"""

from __future__ import annotations

import msgspec
from aiokafka.partitioner import murmur2

from .events import AnyEvent, Rejection, _all_valid, BAD_VALUE, INVALID_JSON

# Room ids seen recently -> partition; murmur2 in Python costs microseconds, a lookup nanoseconds.
# Cleared when full: bounded whatever room ids arrive.
_CACHE_LIMIT = 100_000


class Partitioner:
    """room_id -> partition of a topic with `partitions` partitions (the producers' choice)."""

    def __init__(self, partitions: int):
        if partitions < 1:
            raise ValueError(f"partitions must be >= 1, got {partitions}")
        self.partitions = partitions
        self._known: dict[str, int] = {}

    def __call__(self, room_id: str) -> int:
        partition = self._known.get(room_id)
        if partition is None:
            if len(self._known) >= _CACHE_LIMIT:
                self._known.clear()
            partition = self._known[room_id] = (murmur2(room_id.encode()) & 0x7FFFFFFF) % self.partitions
        return partition


class Part(msgspec.Struct, array_like=True):
    """The events of one source message that belong to the record's partition."""

    topic: str
    offset: int
    events: list[AnyEvent]


class Forward(msgspec.Struct):
    source: int  # the partition the events arrived on
    parts: list[Part]


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(Forward)


def encode_forward(source: int, parts: list[Part]) -> bytes:
    return _encoder.encode(Forward(source, parts))


def decode_forward(value: bytes | None) -> tuple[Forward | None, Rejection | None]:
    """A forward record, or why it is not one (a poison record on the repartition topic)."""
    try:
        forward = _decoder.decode(value or b"")
    except (msgspec.DecodeError, msgspec.ValidationError) as error:
        return None, Rejection(INVALID_JSON, value or b"", f"not a forward record: {error}")
    for part in forward.parts:
        if not part.events or not _all_valid(part.events, part.topic):
            return None, Rejection(BAD_VALUE, value or b"", f"forward record with invalid events of {part.topic}")
    return forward, None


class ForwardMarks:
    """Per (topic, source partition): the next source offset whose forwarded events are new.

    A source partition forwards in offset order, and a takeover or a retry sends again only a
    stretch it already sent, so one mark per source says exactly what was applied."""

    def __init__(self, marks: dict[str, int] | None = None):
        self.marks: dict[str, int] = dict(marks or {})

    def accept(self, source: int, part: Part) -> bool:
        key = f"{part.topic}/{source}"
        if part.offset < self.marks.get(key, 0):
            return False
        self.marks[key] = part.offset + 1
        return True
