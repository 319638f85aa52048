"""Deliberately bad input, made from real events of the traffic so that it looks like what broken
SDKs, edge collectors and skewed clocks send. Each item carries the rejection reason the monitor must
give it (SPEC §2); the kinds are used in turn so that a short run shows every reason.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import msgspec

from livemon.ingest import events as ev

LATE_BY = 30.0      # s; far beyond the default 5 s lateness
FUTURE_BY = 3600.0  # s; a client clock an hour ahead


@dataclass(frozen=True)
class Bad:
    reason: str
    raw: bytes
    room_id: str
    topic: str         # the topic it is sent to
    standalone: bool   # a message of its own, or one element of an otherwise good envelope


# (reason, standalone), in the order they are used
KINDS = (
    (ev.INVALID_JSON, True), (ev.MISSING_FIELD, False), (ev.WRONG_TYPE, False),
    (ev.BAD_VALUE, False), (ev.UNKNOWN_TYPE, False), (ev.WRONG_TOPIC, False),
    (ev.TOO_LARGE, True), (ev.LATE, False), (ev.INVALID_JSON, False), (ev.WRONG_TOPIC, True),
    (ev.FUTURE, False), (ev.BAD_VALUE, False), (ev.TOO_LARGE, False), (ev.WRONG_TYPE, False),
)

# A wrong value for a field of each event type: (field, value).
_BAD_VALUES = {
    "view": [("action", "teleport"), ("user_id", "user with spaces")],
    "danmaku": [("text", "刷屏" * 300), ("room_id", "")],
    "click": [("target", "gift"), ("product_id", None)],  # a product click without product_id
    "health": [("stall_ms", -40), ("play_ms", -1)],
}


def make_bad(kind: int, template: ev.AnyEvent, rng: random.Random) -> Bad:
    """Bad input number `kind` (cycling through KINDS), made from the good event `template`."""
    reason, standalone = KINDS[kind % len(KINDS)]
    doc = msgspec.to_builtins(template)
    kind_name = doc["type"]
    topic = ev.TOPIC_OF_TYPE[kind_name]
    raw: bytes
    if reason == ev.INVALID_JSON:
        # A truncated message, or something that is JSON but not an event object.
        whole = ev.encode(template)
        raw = whole[: len(whole) // 2] if standalone else rng.choice([b'"666"', b"42", b"null"])
    elif reason == ev.MISSING_FIELD:
        doc.pop(rng.choice(["user_id", "ts", "room_id"]))
        raw = _json(doc)
    elif reason == ev.WRONG_TYPE:
        field, value = rng.choice([("ts", str(doc["ts"])), ("room_id", 10086), ("user_id", ["u"])])
        doc[field] = value
        raw = _json(doc)
    elif reason == ev.BAD_VALUE:
        field, value = rng.choice(_BAD_VALUES[kind_name])
        if kind_name == "click" and field == "product_id":
            doc["target"] = "product"
        doc[field] = value
        raw = _json(doc)
    elif reason == ev.UNKNOWN_TYPE:
        doc["type"] = rng.choice(["gift", "reward", "VIEW"])
        raw = _json(doc)
    elif reason == ev.WRONG_TOPIC:
        raw = _json(doc)
        topic = rng.choice([t for t in ev.EVENT_TOPICS if t != topic])
    elif reason == ev.TOO_LARGE:
        # A chat message pasted with a megabyte... well, 80 KiB, of text.
        doc = {"type": "danmaku", "room_id": doc["room_id"], "user_id": doc["user_id"],
               "ts": doc["ts"], "text": "好" * 28000}
        topic = ev.TOPIC_OF_TYPE["danmaku"]
        raw = _json(doc)
    elif reason in (ev.LATE, ev.FUTURE):
        doc["ts"] = round(doc["ts"] + (-LATE_BY if reason == ev.LATE else FUTURE_BY), 3)
        raw = _json(doc)
    else:  # pragma: no cover - KINDS lists only the reasons above
        raise ValueError(reason)
    return Bad(reason, raw, template.room_id, topic, standalone)


def _json(doc) -> bytes:
    return msgspec.json.encode(doc)
