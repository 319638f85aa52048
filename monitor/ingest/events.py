"""The event contract (SPEC §2): typed events, and decoding of raw Kafka message values.

A message value is one event object or a JSON array of them (a batch envelope). Decoding is
batch-wise: the whole envelope is decoded and validated in C by msgspec in one call; only when
that fails is the envelope split into its raw elements so that one bad event rejects that event
alone. Nothing here does I/O: rejected events come back with their raw bytes and a reason, and
the caller counts them and sends them to the dead-letter topic.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal, NamedTuple, Union

import msgspec

MAX_EVENT_BYTES = 64 * 1024

Id = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:\-]+$")]
NonNegInt = Annotated[int, msgspec.Meta(ge=0)]
NonNegFloat = Annotated[float, msgspec.Meta(ge=0)]


class Event(msgspec.Struct, tag_field="type", frozen=True, omit_defaults=True):
    room_id: Id
    user_id: Id
    ts: float


class View(Event, tag="view", frozen=True):
    action: Literal["enter", "heartbeat", "leave"]
    source: Literal["organic", "paid", "social", "search", "follow", "other"] | None = None
    device: Literal["mobile", "pc", "tv", "other"] | None = None
    region: Annotated[str, msgspec.Meta(max_length=64)] | None = None


class Danmaku(Event, tag="danmaku", frozen=True):
    text: Annotated[str, msgspec.Meta(max_length=500)]


class Click(Event, tag="click", frozen=True):
    target: Literal["product", "cart", "like", "share", "follow"]
    product_id: Id | None = None

    def __post_init__(self):
        if self.product_id is None and self.target in ("product", "cart"):
            raise ValueError("`product_id` is required for a product or cart click")


class Order(Event, tag="order", frozen=True):
    order_id: Id
    product_id: Id
    amount: NonNegFloat
    status: Literal["created", "paid", "refunded"]


class Health(Event, tag="health", frozen=True):
    cdn: Id
    play_ms: NonNegInt
    stall_ms: NonNegInt
    stall_count: NonNegInt
    latency_ms: NonNegFloat | None = None
    bitrate_kbps: NonNegFloat | None = None
    fps: NonNegFloat | None = None
    dropped_frames: NonNegFloat | None = None
    startup_ms: NonNegFloat | None = None
    error: Annotated[str, msgspec.Meta(min_length=1, max_length=64)] | None = None


class Show(msgspec.Struct, tag_field="type", tag="show", frozen=True, omit_defaults=True):
    """Show start/end marker; unlike the others it needs no user_id."""

    room_id: Id
    ts: float
    action: Literal["start", "end"]
    user_id: Id | None = None
    show_id: Id | None = None
    title: Annotated[str, msgspec.Meta(max_length=200)] | None = None


AnyEvent = Union[View, Danmaku, Click, Order, Health, Show]

TOPIC_OF_TYPE = {
    "view": "liveroom.views",
    "danmaku": "liveroom.danmaku",
    "click": "liveroom.clicks",
    "order": "liveroom.orders",
    "health": "liveroom.health",
    "show": "liveroom.shows",
}
EVENT_TOPICS = tuple(TOPIC_OF_TYPE.values())
TYPE_OF_TOPIC = {topic: kind for kind, topic in TOPIC_OF_TYPE.items()}
DEADLETTER_TOPIC = "liveroom.deadletter"
CONTROL_TOPIC = "liveroom.control"
EVENT_TYPES = tuple(TOPIC_OF_TYPE)

# Rejection reasons, the values of livemon_events_rejected_total{reason}.
INVALID_JSON = "invalid_json"  # not JSON, or not an object
MISSING_FIELD = "missing_field"
WRONG_TYPE = "wrong_type"  # a field of the wrong JSON type
BAD_VALUE = "bad_value"  # right type, value outside the contract (enum, range, pattern, length)
UNKNOWN_TYPE = "unknown_type"  # `type` missing from the contract
WRONG_TOPIC = "wrong_topic"
TOO_LARGE = "too_large"
LATE = "late"  # older than the room's watermark
FUTURE = "future"  # further ahead of the room's clock than allowed
REJECT_REASONS = (INVALID_JSON, MISSING_FIELD, WRONG_TYPE, BAD_VALUE, UNKNOWN_TYPE, WRONG_TOPIC,
                  TOO_LARGE, LATE, FUTURE)


class Rejection(NamedTuple):
    reason: str
    raw: bytes
    detail: str


_envelope = msgspec.json.Decoder(Union[list[AnyEvent], AnyEvent])
_single = msgspec.json.Decoder(AnyEvent)
_raw_list = msgspec.json.Decoder(list[msgspec.Raw])
_encoder = msgspec.json.Encoder()


def _reason_of(error: Exception) -> str:
    """Classify a msgspec error into a rejection reason."""
    if not isinstance(error, msgspec.ValidationError):
        return INVALID_JSON
    text = str(error)
    path = text.rpartition(" - at `")[2].rstrip("`") if " - at `" in text else "$"
    if text.startswith("Object missing required field"):
        return MISSING_FIELD
    if path == "$.type":
        return UNKNOWN_TYPE
    if text.startswith("Expected `") and ", got `" in text:
        # Not an object where an event should be: that is not an event at all.
        top_level = path == "$" or (path.startswith("$[") and path.endswith("]") and "." not in path)
        return INVALID_JSON if top_level else WRONG_TYPE
    return BAD_VALUE


MAX_TS = 1e11  # seconds since the epoch (year 5138): larger values are milliseconds by mistake


def _check_event(event: AnyEvent, raw: bytes, topic: str | None) -> Rejection | None:
    if not math.isfinite(event.ts):
        return Rejection(BAD_VALUE, raw, "`ts` must be a finite number")
    if event.ts >= MAX_TS:
        return Rejection(BAD_VALUE, raw, f"`ts` {event.ts:.6g} is not seconds since the epoch (milliseconds?)")
    if topic is not None and TOPIC_OF_TYPE[type(event).__struct_config__.tag] != topic:
        return Rejection(WRONG_TOPIC, raw, f"a {type(event).__struct_config__.tag} event on {topic}")
    return None


def decode(value: bytes, topic: str | None = None) -> tuple[list[AnyEvent], list[Rejection]]:
    """Decode one message value into valid events and rejections.

    `topic` is the topic the value came from (None when replaying a file: no topic check).
    """
    if not value or len(value) <= MAX_EVENT_BYTES:
        try:
            decoded = _envelope.decode(value)
        except (msgspec.DecodeError, msgspec.ValidationError) as error:
            if not value.lstrip().startswith(b"["):
                return [], [Rejection(_reason_of(error), value, str(error))]
        else:
            events = decoded if isinstance(decoded, list) else [decoded]
            rejected = None
            for event in events:
                if not math.isfinite(event.ts) or event.ts >= MAX_TS or (
                        topic is not None and TOPIC_OF_TYPE[type(event).__struct_config__.tag] != topic):
                    rejected = True
                    break
            if rejected is None:
                return events, []
            if not isinstance(decoded, list):
                return [], [_check_event(decoded, value, topic)]
    elif not value.lstrip().startswith(b"["):
        return [], [Rejection(TOO_LARGE, value,
                              f"event of {len(value)} bytes exceeds {MAX_EVENT_BYTES}")]
    return _decode_elements(value, topic)


def _decode_elements(value: bytes, topic: str | None) -> tuple[list[AnyEvent], list[Rejection]]:
    """The slow path: validate each element of an envelope on its own."""
    try:
        elements = _raw_list.decode(value)
    except (msgspec.DecodeError, msgspec.ValidationError) as error:
        return [], [Rejection(INVALID_JSON, value, str(error))]
    events: list[AnyEvent] = []
    rejections: list[Rejection] = []
    for element in elements:
        raw = bytes(element)
        if len(raw) > MAX_EVENT_BYTES:
            rejections.append(Rejection(TOO_LARGE, raw,
                                        f"event of {len(raw)} bytes exceeds {MAX_EVENT_BYTES}"))
            continue
        try:
            event = _single.decode(raw)
        except (msgspec.DecodeError, msgspec.ValidationError) as error:
            rejections.append(Rejection(_reason_of(error), raw, str(error)))
            continue
        problem = _check_event(event, raw, topic)
        if problem:
            rejections.append(problem)
        else:
            events.append(event)
    return events, rejections


def event_type(event: AnyEvent) -> str:
    return type(event).__struct_config__.tag


def encode(event: AnyEvent | list[AnyEvent]) -> bytes:
    """JSON bytes of an event or an envelope, as producers send them."""
    return _encoder.encode(event)
