"""The engine's checkpoint format: named, versioned state, not the in-memory class layout.

A checkpoint is one msgpack document (msgspec):

    {"format": "livemon.engine.state", "version": 1, "clock": float | None,
     "rooms": {room_id: <Room state>}, "candidates": {room_id: <Candidate state>},
     "finals_due": [snapshot, ...]}

Each state-holding class declares what it persists once, in a class-level `STATE` table of
`Field(name, codec, default)`; `to_state` and `from_state` walk that table, and nothing else
knows the layout. A state is a map of field name to value: numbers, strings, lists and maps,
arrays as their bytes (little-endian), sets as sorted lists, nested objects as their own state.
Bucket vectors and the log entries that point into them carry field names, not positions.

Adding a field: one `Field` with a default; a checkpoint without it gets the default, so no
version change and no shim. The version changes only when a field changes meaning (a loader in
`UPGRADES` then turns the older document into the current one). Checkpoints of the pickle era
(before this format) are read by `legacy.py`, kept for rolling upgrades only.
"""

from __future__ import annotations

import sys
from array import array
from collections.abc import Callable
from typing import Any, NamedTuple

import msgspec

FORMAT = "livemon.engine.state"
VERSION = 1
# version -> function turning a document of that version into one of the next (none yet).
UPGRADES: dict[int, Callable[[dict], dict]] = {}

_BIG_ENDIAN = sys.byteorder == "big"
_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder()


class _Required:
    def __repr__(self):
        return "REQUIRED"


REQUIRED = _Required()  # a field every checkpoint of its version has: no default


class Field(NamedTuple):
    """One persisted attribute. `codec` None: a plain value (number, string, None, or lists and
    maps of them) stored as it is. `default`: for a checkpoint without the field, a value (not a
    mutable one) or a function of the object restored so far (called with it)."""

    name: str
    codec: Any = None
    default: Any = REQUIRED


def to_state(obj, cls=None) -> dict:
    """The state of `obj` as its class (or `cls`) declares it. A missing attribute (an object
    read from an older checkpoint) is left out: `from_state` gives it the default."""
    state = {}
    for name, codec, _ in (cls or type(obj)).STATE:
        value = getattr(obj, name, REQUIRED)
        if value is not REQUIRED:
            state[name] = value if codec is None else codec.encode(value)
    return state


def from_state(obj, state: dict):
    """Fill a bare `obj` (`cls.__new__(cls)`, with whatever its class derives from the config
    set) from its state; then its `_restored` hook, if any, rebuilds what follows from it."""
    for name, codec, default in type(obj).STATE:
        value = state.get(name, REQUIRED)
        if value is REQUIRED:
            if default is REQUIRED:
                raise ValueError(f"checkpoint state of a {type(obj).__name__} lacks {name!r}")
            value = default(obj) if callable(default) else default
        elif codec is not None:
            value = codec.decode(value)
        setattr(obj, name, value)
    restored = getattr(obj, "_restored", None)
    if restored is not None:
        restored()
    return obj


# ---- codecs: encode(value) -> plain data, decode(plain data) -> value ----

class Obj:
    """A nested object of `cls`, as its own state."""

    def __init__(self, cls):
        self.cls = cls

    def encode(self, value):
        return to_state(value, self.cls)

    def decode(self, data):
        return from_state(self.cls.__new__(self.cls), data)


class DictOf:
    def __init__(self, codec):
        self.codec = codec

    def encode(self, value):
        encode = self.codec.encode
        return {key: encode(item) for key, item in value.items()}

    def decode(self, data):
        decode = self.codec.decode
        return {key: decode(item) for key, item in data.items()}


class ListOf(DictOf):
    def encode(self, value):
        return [self.codec.encode(item) for item in value]

    def decode(self, data):
        return [self.codec.decode(item) for item in data]


class _Set:
    """A set, as a sorted list (a checkpoint's bytes do not depend on hash order)."""

    @staticmethod
    def encode(value):
        return sorted(value)

    @staticmethod
    def decode(data):
        return set(data)


SET = _Set()


def array_bytes(value: array) -> bytes:
    if _BIG_ENDIAN and value.itemsize > 1:
        value = array(value.typecode, value)
        value.byteswap()
    return value.tobytes()


def array_of(typecode: str, data: bytes) -> array:
    value = array(typecode, data)
    if _BIG_ENDIAN and value.itemsize > 1:
        value.byteswap()
    return value


class Array:
    """An array of one type code, as its bytes."""

    def __init__(self, typecode: str):
        self.typecode = typecode

    def encode(self, value):
        return array_bytes(value)

    def decode(self, data):
        return array_of(self.typecode, data)


class Vectors:
    """A `BucketSums` whose vectors hold the named fields `names` (in this order), stored with
    the names: a checkpoint whose vectors had other fields (one added, removed or moved since)
    is mapped by name, a field it lacks being 0."""

    def __init__(self, names: tuple[str, ...], cls):
        self.names, self.cls = names, cls

    def encode(self, value):
        state = to_state(value, self.cls)
        state["fields"] = list(self.names)
        return state

    def decode(self, data):
        stored = data.get("fields", self.names)
        if list(stored) != list(self.names):
            data = dict(data, **{key: remap(data[key], stored, self.names) for key in ("window", "total")},
                        buckets={b: remap(v, stored, self.names) for b, v in data["buckets"].items()})
        return from_state(self.cls.__new__(self.cls), data)


def remap(vector: list, stored, names) -> list:
    """A vector of the fields `stored` as one of the fields `names`, a field it lacks being 0. A
    bucket kept narrow (its first fields only, see `BucketSums.advance`) comes out whole, with
    zeros: nothing reads past its first fields."""
    position = {name: i for i, name in enumerate(stored[:len(vector)])}
    return [vector[position[name]] if name in position else 0 for name in names]


def encode(document: dict) -> bytes:
    return _encoder.encode(document)


def decode(blob: bytes) -> dict:
    """The document of a checkpoint, in the current version."""
    document = _decoder.decode(blob)
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise ValueError("not a livemon engine checkpoint")
    return upgrade(document)


def upgrade(document: dict) -> dict:
    """A document of an older version as one of the current version."""
    version = document.get("version")
    if isinstance(version, int) and version > VERSION:
        raise ValueError(f"engine checkpoint version {version} is newer than this worker's ({VERSION})")
    if not isinstance(version, int) or version < 1:
        raise ValueError(f"engine checkpoint version {version!r} unknown")
    while version < VERSION:
        document = UPGRADES[version](document)
        version = document["version"]
    return document
