"""The event contract (SPEC §2): typed events, and decoding of raw Kafka message values.

A message value is one event object or a JSON array of them (a batch envelope). Decoding is
batch-wise: the whole envelope is decoded and validated in C by msgspec in one call; only when
that fails is the envelope split into its raw elements so that one bad event rejects that event
alone. Nothing here does I/O: rejected events come back with their raw bytes and a reason, and
the caller counts them and sends them to the dead-letter topic.
"""

from __future__ import annotations

import math
import typing
from itertools import chain
from operator import attrgetter
from typing import Annotated, Any, Literal, NamedTuple, Optional, Union

import msgspec

from ..topics import CONTROL_TOPIC, DEADLETTER_TOPIC, EVENT_TOPICS, TOPIC_OF_TYPE, TYPE_OF_TOPIC  # noqa: F401

MAX_EVENT_BYTES = 64 * 1024

ID_PATTERN = r"^[A-Za-z0-9_.:\-]+$"
# The id contract is `StrictId`. The event classes declare `Id`, the same without the pattern: a
# regex per field in msgspec costs two thirds of the decoding time, so the fast path checks the
# characters of all ids of an envelope at once (`_ids_ok`) and anything it does not accept goes
# through decoders of `StrictId` twins of the classes, which give the exact rejections.
Id = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
StrictId = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=ID_PATTERN)]
NonNegInt = Annotated[int, msgspec.Meta(ge=0)]
NonNegFloat = Annotated[float, msgspec.Meta(ge=0)]


class Event(msgspec.Struct, tag_field="type", frozen=True, omit_defaults=True):
    room_id: Id
    user_id: Id
    ts: float


# Viewer attributes (SPEC §2, §8): the values an `enter` may carry.
SOURCES = ("organic", "paid", "social", "search", "follow", "other")
DEVICES = ("mobile", "pc", "tv", "other")
AGE_BANDS = ("18-23", "24-30", "31-40", "41-50", "50+")
GENDERS = ("female", "male", "other")
Source = Literal["organic", "paid", "social", "search", "follow", "other"]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=32)]  # a region or a category


class View(Event, tag="view", frozen=True):
    action: Literal["enter", "heartbeat", "leave"]
    source: Source | None = None
    device: Literal["mobile", "pc", "tv", "other"] | None = None
    region: Name | None = None
    age_band: Literal["18-23", "24-30", "31-40", "41-50", "50+"] | None = None
    gender: Literal["female", "male", "other"] | None = None
    follower: bool | None = None


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


PROMO_TYPES = ("seckill", "discount", "coupon", "gift", "lottery", "other")
# The fields each show action needs beyond the common ones (SPEC §2).
SHOW_REQUIRES = {"product": ("product_id",), "pin": ("product_id",), "promo_start": ("promo_id", "promo_type"),
                 "promo_end": ("promo_id",), "spend": ("amount", "channel")}


class Show(msgspec.Struct, tag_field="type", tag="show", frozen=True, omit_defaults=True):
    """What happens on the show: its start and end, its product catalogue, the product pinned
    (讲解中), promotions and ad spend. Unlike the other events it needs no user_id."""

    room_id: Id
    ts: float
    action: Literal["start", "end", "product", "pin", "unpin", "promo_start", "promo_end", "spend"]
    user_id: Id | None = None
    show_id: Id | None = None
    title: Annotated[str, msgspec.Meta(max_length=200)] | None = None
    product_id: Id | None = None
    category: Name | None = None
    price: NonNegFloat | None = None
    promo_id: Id | None = None
    promo_type: Literal["seckill", "discount", "coupon", "gift", "lottery", "other"] | None = None
    amount: NonNegFloat | None = None
    channel: Source | None = None
    campaign: Annotated[str, msgspec.Meta(min_length=1, max_length=64)] | None = None

    def __post_init__(self):
        for name in SHOW_REQUIRES.get(self.action, ()):
            if getattr(self, name) is None:
                # Worded as msgspec's own, so that it is classified `missing_field`.
                raise ValueError(f"Object missing required field `{name}` (a show `{self.action}` needs it)")


AnyEvent = Union[View, Danmaku, Click, Order, Health, Show]

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
# The engine's room admission (docs/ARCHITECTURE.md), not faults of the input itself: kept out of
# REJECT_REASONS, which the simulator's bad-input scenario sends every one of.
ROOM_LIMIT = "room_limit"  # over a cap on live rooms or room candidates
ROOM_UNADMITTED = "room_unadmitted"  # held by a room candidate that was never admitted
SHOW_LIMIT = "show_limit"  # a pin or promotion over the per-show cap (EngineConfig.max_show_marks)
ROOM_REASONS = (ROOM_LIMIT, ROOM_UNADMITTED, SHOW_LIMIT)


class Rejection(NamedTuple):
    reason: str
    raw: bytes
    detail: str


def _strict_twin(cls):
    """`cls` with `StrictId` for every `Id` field; returns (twin, names of its id fields)."""
    fields, ids = [], []
    for info in msgspec.structs.fields(cls):
        kind = info.type
        if kind == Id:
            kind = StrictId
        elif kind == Optional[Id]:
            kind = Optional[StrictId]
        if kind is not info.type:
            ids.append(info.name)
        fields.append((info.name, kind) if info.required else (info.name, kind, info.default))
    config = cls.__struct_config__
    namespace = {"__post_init__": cls.__post_init__} if hasattr(cls, "__post_init__") else None
    twin = msgspec.defstruct(cls.__name__, fields, module=__name__, namespace=namespace,
                             tag_field=config.tag_field, tag=config.tag, omit_defaults=config.omit_defaults,
                             frozen=config.frozen)
    return twin, tuple(ids)


_STRICT: dict[type, type] = {}  # event class -> its StrictId twin
_PUBLIC: dict[type, type] = {}  # twin -> event class
_ID_FIELDS: dict[type, attrgetter] = {}  # event class -> getter of its id fields (a tuple)
for _cls in typing.get_args(AnyEvent):
    _twin, _names = _strict_twin(_cls)
    assert len(_names) >= 2, _cls  # room_id and user_id at least: the getter returns a tuple
    _STRICT[_cls], _PUBLIC[_twin], _ID_FIELDS[_cls] = _twin, _cls, attrgetter(*_names)
_StrictAny: Any = Union[tuple(_STRICT.values())]  # built at import: a value to mypy, a type to msgspec
_ID_CHARS = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.:-"

_fast_envelope = msgspec.json.Decoder(Union[list[AnyEvent], AnyEvent])
_envelope = msgspec.json.Decoder(Union[list[_StrictAny], _StrictAny])
_single = msgspec.json.Decoder(_StrictAny)
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
    if topic is not None and TOPIC_OF_TYPE[event_type(event)] != topic:
        return Rejection(WRONG_TOPIC, raw, f"a {event_type(event)} event on {topic}")
    return None


def _public(event) -> AnyEvent:
    """The event class instance of a StrictId twin's instance."""
    return _PUBLIC[type(event)](**msgspec.structs.asdict(event))


def _all_valid(events: list, topic: str | None) -> bool:
    """The checks after msgspec's, over a whole envelope at C speed: every id made of
    ID_PATTERN's characters, every `ts` finite seconds, every event of the topic's type. False
    sends the value down the exact path, which says which event fails and why. (The pattern's `$`
    also lets a final newline pass: such an id is refused here, and accepted by the exact path.)"""
    kinds = set(map(type, events))
    if len(kinds) == 1:  # always so on a topic
        kind = type(events[0])
        if topic is not None and TOPIC_OF_TYPE[kind.__struct_config__.tag] != topic:
            return False
        ids = chain.from_iterable(map(_ID_FIELDS[kind], events))
    else:
        if topic is not None:
            return False
        ids = chain.from_iterable(_ID_FIELDS[type(event)](event) for event in events)
    joined = "".join(filter(None, ids))  # None: an optional id left out (empty ones fail decoding)
    if not joined.isascii() or joined.encode().translate(None, _ID_CHARS):
        return False
    stamps = list(map(_TS, events))
    # A sum of finite values below MAX_TS is finite; any nan or infinity makes it nan or infinite.
    return max(stamps) < MAX_TS and math.isfinite(sum(stamps))


_TS = attrgetter("ts")


def decode(value: bytes, topic: str | None = None) -> tuple[list[AnyEvent], list[Rejection]]:
    """Decode one message value into valid events and rejections.

    `topic` is the topic the value came from (None when replaying a file: no topic check).
    """
    if value and len(value) <= MAX_EVENT_BYTES:
        # The fast path: all of it valid. Anything else takes the exact path below.
        try:
            decoded = _fast_envelope.decode(value)
        except (msgspec.DecodeError, msgspec.ValidationError):
            pass
        else:
            events = decoded if isinstance(decoded, list) else [decoded]
            if not events or _all_valid(events, topic):
                return events, []
    return _decode_exact(value, topic)


def _decode_exact(value: bytes, topic: str | None) -> tuple[list[AnyEvent], list[Rejection]]:
    events, rejections = _decode_strict(value, topic)
    return [_public(event) for event in events], rejections


def _decode_strict(value: bytes, topic: str | None) -> tuple[list, list[Rejection]]:
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
                problem = _check_event(decoded, value, topic)
                return ([decoded], []) if problem is None else ([], [problem])
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
    return str(type(event).__struct_config__.tag)


def encode(event: AnyEvent | list[AnyEvent]) -> bytes:
    """JSON bytes of an event or an envelope, as producers send them."""
    return _encoder.encode(event)
