"""Reader of the engine checkpoints written before the versioned format (state.py): pickles of
the engine's objects. Kept for rolling upgrades only (a worker taking a partition over from a
worker of an older version); nothing writes them any more, and it can go once no such worker runs.

A pickle can run code on load, so this reader builds no object of ours from one: a restricted
unpickler admits only the globals those checkpoints used, and turns the engine's objects into
stand-ins holding their attributes, which are then put into a version-1 document, the mapping
of the pickle era being frozen here.
"""

from __future__ import annotations

import io
import pickle
from array import array

import msgspec

from .state import array_bytes

# The pickle-era bucket vectors, by name (see room.ROOM_VECTOR): the compact layout's, and that
# of the earlier layout with a list per viewer (its cohort fields came last).
ROOM_VECTOR = ("starts", "short_30s", "short_60s", "short_180s", "ends", "watch", "cover", "events", "danmaku",
               "paid", "gmv_micro", "stall_ms", "play_ms", "stalls", "beacons", "errors")
LIST_RECORDS_ROOM_VECTOR = (ROOM_VECTOR[0], *ROOM_VECTOR[4:], *ROOM_VECTOR[1:4])
CDN_VECTOR = ("stall_ms", "play_ms", "beacons", "errors")
UNSET = float("-inf")  # a time not set, in the compact layout (None in the list layout)


def is_legacy(blob: bytes) -> bool:
    """A pickle (protocol 2 or later opens with 0x80); a msgpack document opens with a map."""
    return blob[:1] == b"\x80"


class _Pickled:
    """An engine object of the pickle era: its attributes, in `state`."""

    def __setstate__(self, state):
        if isinstance(state, tuple):  # (__dict__, slots) of a class with __slots__
            state = {**(state[0] or {}), **(state[1] or {})}
        self.state = state


_STAND_INS = {("livemon.engine." + module, name): type(name, (_Pickled,), {})
              for module, name in (("room", "Room"), ("room", "CdnStats"), ("room", "Show"),
                                   ("windows", "BucketSums"), ("windows", "DistinctWindow"),
                                   ("windows", "LatencySketch"), ("engine", "Candidate"), ("config", "EngineConfig"))}
_EVENTS = ("View", "Danmaku", "Click", "Order", "Health", "Show")


class _Unpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) in _STAND_INS:
            return _STAND_INS[module, name]
        if module == "array" and name in ("array", "_array_reconstructor"):
            return super().find_class(module, name)
        if module == "livemon.ingest.events" and name in _EVENTS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"{module}.{name} is not in an engine checkpoint")


def load(blob: bytes) -> dict:
    """The version-1 document of a pickled checkpoint."""
    try:
        pickled = _Unpickler(io.BytesIO(blob)).load()
    except (pickle.UnpicklingError, EOFError, AttributeError, ImportError) as error:
        raise ValueError(f"unreadable engine checkpoint: {error}") from error
    return {"format": "livemon.engine.state", "version": 1, "clock": pickled["clock"],
            "rooms": {room_id: _room(room.state) for room_id, room in pickled["rooms"].items()},
            # Checkpoints from before admission have neither.
            "candidates": {room_id: _candidate(c.state) for room_id, c in pickled.get("candidates", {}).items()},
            "finals_due": pickled.get("finals_due", [])}


def _room(state: dict) -> dict:
    vector = ROOM_VECTOR
    if "users" not in state:
        state, vector = _from_list_records(state), LIST_RECORDS_ROOM_VECTOR
    room = dict(state)  # attributes not in the format (config, step, ...) are ignored
    for name in ("starts", "seen", "ends", "log_seen", "log_op"):
        room[name] = array_bytes(state[name])
    room["logs"] = {slot: [entry if len(entry) < 6 else
                           [*entry[:5], [vector[x] if i % 3 == 1 else x for i, x in enumerate(entry[5])]]
                           for entry in log] for slot, log in state["logs"].items()}
    room["paid_orders"] = sorted(state["paid_orders"])
    room["sums"] = _sums(state["sums"].state, vector)
    for name in ("interacting", "clicking", "paying"):
        room[name] = _distinct(state[name].state)
    room["latency"] = _sketch(state["latency"].state)
    room["cdns"] = {name: {"sums": _sums(cdn.state["sums"].state, CDN_VECTOR),
                           "latency": _sketch(cdn.state["latency"].state),
                           "viewers": _distinct(cdn.state["viewers"].state)} for name, cdn in state["cdns"].items()}
    room["shows"] = [show.state for show in state["shows"]]
    return room


def _sums(state: dict, vector) -> dict:
    return dict(state, fields=list(vector))


def _distinct(state: dict) -> dict:
    # Checkpoints of earlier versions also have `members`, which the format ignores.
    return dict(state, pending={b: sorted(users) for b, users in state["pending"].items()})


def _sketch(state: dict) -> dict:
    return dict(state, buckets={b: bins if type(bins) is dict else [bins.typecode, array_bytes(bins)]
                                for b, bins in state["buckets"].items()})


def _candidate(state: dict) -> dict:
    return dict(state, held=[[msgspec.to_builtins(event), watermark] for event, watermark in state["held"]])


def _from_list_records(state: dict) -> dict:
    """The attributes of a room of the earliest layout, a list per viewer
    `[start, last_seen, end, log, user]` (None for a time not set), as those of the compact
    layout; its vectors and log changes keep their field order (LIST_RECORDS_ROOM_VECTOR)."""
    state = dict(state)
    users, starts, seen, ends, logs = [], array("d"), array("d"), array("d"), {}

    def unset(value):
        return UNSET if value is None else value

    for slot, (start, last_seen, end, log, user) in enumerate(state.pop("viewers").values()):
        users.append(user)
        starts.append(unset(start))
        seen.append(unset(last_seen))
        ends.append(unset(end))
        if log:
            # Entries as the compact layout has them; changes were (bucket, field, delta) tuples, now flat.
            logs[slot] = [(ts, op, unset(a), unset(b), unset(c),
                           tuple(x for change in changes for x in change))
                          for ts, op, a, b, c, changes in log]
    state.update(users=users, starts=starts, seen=seen, ends=ends, logs=logs,
                 log_op=array("b", bytes(len(users))), log_seen=array("d", [UNSET] * len(users)))
    return state
