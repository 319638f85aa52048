"""One room's state and its snapshot at any instant at or after its frontier.

Everything a snapshot needs is kept as per-bucket counts (see `windows.py`), so the snapshot at
instant `t` depends on the events with `ts <= t` only, and a snapshot is a read, never a replay.

Viewer presence is the one order-sensitive part: a viewer's events must act in event-time order
(a `leave` that arrives before an earlier `heartbeat` must still end the presence). Each viewer
keeps a short log of the operations not yet final (newer than the watermark, so at most the
allowed lateness); an event older than the viewer's newest logged operation undoes the newer
ones, applies, and redoes them, so the result equals processing in `ts` order.

Viewer records are the bulk of the memory (a million of them at a time), so they are not objects:
a viewer has a slot number, and its times are doubles at that slot of a few arrays, as is its log
when it is one short entry, as most are (see `Room.__init__`).
"""

from __future__ import annotations

import math
from typing import Any
from array import array
from collections import Counter
from itertools import chain, repeat
from operator import itemgetter

import msgspec
import orjson

from ..ingest.events import Show as ShowEvent
from . import ledger as L
from .audience import (DIMENSIONS, Regions, column_names, columns, presence_figures, sales_figures,
                       uv_figure)
from .config import RETENTION_HORIZONS, EngineConfig
from .ledger import Ledger
from .state import SET, Array, DictOf, Field, ListOf, Obj, Vectors, array_bytes, array_of, from_state
from .windows import BucketSums, DistinctWindow, FlatPairs, GroupedDistinct, KeyedSums, LatencySketch, frozen, pairs_of

# Fields of a room's bucket vector, by name (checkpoints store the names: a field added here needs
# its constant below and nothing else). The retention cohorts (STARTS and SHORT) come first: a
# bucket out of the window keeps only them (see `finalize_next`).
ROOM_VECTOR = ("starts", *(f"short_{h}s" for h in RETENTION_HORIZONS), "ends", "watch", "cover", "events",
               "danmaku", "paid", "gmv_micro", "stall_ms", "play_ms", "stalls", "beacons", "errors",
               "startups", "fast_starts", "slow_starts")
STARTS = 0
SHORT = tuple(range(1, 1 + len(RETENTION_HORIZONS)))  # presences started here lasting < horizon
COHORT_FIELDS = 1 + len(RETENTION_HORIZONS)
(ENDS, WATCH, COVER, EVENTS, DANMAKU, PAID, GMV_MICRO, STALL_MS, PLAY_MS, STALLS, BEACONS, ERRORS,
 STARTUPS, FAST_STARTS, SLOW_STARTS) = range(COHORT_FIELDS, len(ROOM_VECTOR))
ROOM_FIELDS = len(ROOM_VECTOR)
# Fields of a CDN's bucket vector.
CDN_VECTOR = ("stall_ms", "play_ms", "beacons", "errors", "startups", "fast_starts", "slow_starts")
C_STALL_MS, C_PLAY_MS, C_BEACONS, C_ERRORS, C_STARTUPS, C_FAST_STARTS, C_SLOW_STARTS = range(len(CDN_VECTOR))
# Start-up quality (SPEC §11): a start at most FAST_START ms is fast (秒开), one of SLOW_START or more slow.
FAST_START, SLOW_START = 1000.0, 3000.0
# The short window of the `*_10s` figures (stall, errors, p95 latency, 秒开率, plays started) beside W: a
# sudden fault shows there within seconds, diluted in W for much longer (docs/ALERTING.md). They are
# read from the window's own buckets, so they cost no state.
RECENT_WINDOW = 10.0
# Fields of a breakdown column's sums (see audience.py): key = column * ATTR_STRIDE + field. A view's
# journal (see `_bump`) names them ATTR + key, apart from the room vector's fields.
A_STARTS, A_COVER, A_ENDS, A_WATCH, A_ORDERS, A_GMV = range(6)
ATTR_STRIDE = 8
ATTR = 1 << 20
# The keys of each column's fields, as shared int objects (a key above 256 made anew at each
# update would be an object of its own in every bucket's dict).
_KEYS: list[tuple[int, ...]] = []


def _keys(column: int) -> tuple[int, ...]:
    while len(_KEYS) <= column:
        base = len(_KEYS) * ATTR_STRIDE
        _KEYS.append(tuple(range(base, base + ATTR_STRIDE)))
    return _KEYS[column]
# Product sums: key = (product, field).
P_ORDERS, P_GMV = 0, 1

# Presence operations; EXPIRE is the timeout checked by the sweep.
ENTER, HEARTBEAT, LEAVE, EXPIRE = "enter", "heartbeat", "leave", "expire"
# A time not set in a viewer's slot: no start (never present) or no end (present, or never was).
# Event times are finite, so it is never a real one.
UNSET = -math.inf
_NO_CHANGES = ()


def _shared(time: float) -> float:
    """A time read from a slot, as the one UNSET object when unset (each read makes a new float)."""
    return UNSET if time == UNSET else time


# Slot numbers as int objects shared by every room: a number above 256 is an object of its own,
# which per viewer (in `Room.viewers`) would cost as much as the slot itself.
_SLOT_NUMBERS: list[int] = []


def _slot_number(i: int) -> int:
    if i >= len(_SLOT_NUMBERS):
        _SLOT_NUMBERS.extend(range(len(_SLOT_NUMBERS), max(2 * i, 1024)))
    return _SLOT_NUMBERS[i]


_TIME_ARRAYS = ("starts", "seen", "log_seen")  # a Room's per-slot doubles
# The operation of the log entry kept in a slot (`Room.log_op`), by its code; 0: none.
_SLOT_OPS = (None, HEARTBEAT, ENTER)
_SLOT_OP_CODES = {HEARTBEAT: 1, ENTER: 2}

MICRO = 1_000_000
# What a lean final snapshot leaves out: the breakdowns and products (SPEC §8-9), a third of the
# work of a snapshot. A worker's finals go only to the recording, which keeps a room's metrics,
# CDNs and show per instant; the breakdowns and products are in the live snapshots (page,
# /metrics, alerting) and in the show summary (SPEC §10); `livemon replay` writes whole lines.
LEAN_PARTS = ("by", "products")


def make_lean(snapshot: dict) -> dict:
    """`snapshot` without the `LEAN_PARTS` (taken out in place)."""
    for part in LEAN_PARTS:
        snapshot.pop(part, None)
    return snapshot


QUANTILES = (0.5, 0.95)
_FIRST = itemgetter(0)


def _ratio(numerator, denominator):
    return numerator / denominator if denominator else None


_PRIORITY = {"end": L.LAST}


def _item_order(item):
    """Items of one ts: a show's marks first (the events of their ts belong to what they begin),
    its end last (the events of its ts are in the show)."""
    if item[1] == L.SHOW:
        return item[0], _PRIORITY.get(item[2].action, L.FIRST)
    return item[0], L.MIDDLE


def _keep(snapshot: dict) -> bytes:
    """What `Room.kept` holds of a live snapshot: its lean part as JSON (see `Room.kept`)."""
    return orjson.dumps({part: value for part, value in snapshot.items() if part not in LEAN_PARTS})


# A show's totals before anything of it is settled or held (see `Room._show_figures`).
_NO_TOTALS: dict[str, Any] = {"gmv": 0, "spend": 0, "orders": 0, "refunds": 0, "products": {}}


class _Ends:
    """`Room.ends` in a checkpoint: {slot: end}; an older checkpoint's array of every slot's
    (UNSET for none) is read as such a dict."""

    @staticmethod
    def encode(ends):
        return ends

    @staticmethod
    def decode(data):
        if isinstance(data, dict):
            return data
        return {slot: end for slot, end in enumerate(array_of("d", data)) if end != UNSET}


class _Logs:
    """Viewers' logs in a checkpoint (see `Room._apply`): an entry's changes to the sums name
    their field, so that they still undo the right one after the vector changed."""

    def __init__(self, names: tuple[str, ...]):
        self.names = names
        self.position = {name: i for i, name in enumerate(names)}

    def encode(self, logs):
        names = self.names
        return {slot: [entry if len(entry) < 6 else
                       [*entry[:5], [names[x] if i % 3 == 1 and x < ATTR else x for i, x in enumerate(entry[5])]]
                       for entry in log] for slot, log in logs.items()}

    def decode(self, data):
        logs: dict[int, list] = {}
        for slot, log in data.items():
            entries = logs[slot] = []
            for entry in log:
                if len(entry) < 6:
                    entries.append((entry[0], entry[1], _shared(entry[2])) if len(entry) == 3 else tuple(entry))
                    continue
                ts, op, start, last_seen, end, changes = entry
                flat: list = []
                for i in range(0, len(changes), 3):
                    name = changes[i + 1]
                    field = name if type(name) is int else self.position.get(name)
                    if field is not None:  # a field removed since: nothing to undo any more
                        flat += changes[i], field, changes[i + 2]
                entries.append((ts, op, _shared(start), _shared(last_seen), _shared(end),
                                tuple(flat) if flat else _NO_CHANGES))
        return logs


_DOUBLES = Array("d")


def _sketch_like(owner) -> LatencySketch:
    """An empty sketch beside `owner.latency` (a checkpoint from before start-up quality)."""
    return LatencySketch(owner.latency.width, owner.latency.frontier)


class CdnStats:
    __slots__ = ("sums", "latency", "viewers", "startup")
    STATE = (Field("sums", Vectors(CDN_VECTOR, BucketSums)), Field("latency", Obj(LatencySketch)),
             Field("viewers", Obj(DistinctWindow)), Field("startup", Obj(LatencySketch), default=_sketch_like))

    def __init__(self, width: int, frontier: int):
        self.sums = BucketSums(len(CDN_VECTOR), width, frontier)
        self.latency = LatencySketch(width, frontier)
        self.viewers = DistinctWindow(width, frontier)
        self.startup = LatencySketch(width, frontier)

    def advance(self, keep: int) -> None:
        self.sums.advance(keep)
        self.latency.advance()
        self.viewers.advance()
        self.startup.advance()

    def read(self, t: int, recent: int) -> dict | None:
        """The CDN's figures at `t`; None while it has no viewers (not listed)."""
        viewers = self.viewers.count_at(t)
        if not viewers:
            return None
        window, _ = self.sums.vectors_at(t)
        stall, play = window[C_STALL_MS], window[C_PLAY_MS]
        starts = window[C_STARTUPS]
        return {
            "viewers": viewers,
            "stall_ratio": _ratio(stall, stall + play),
            "latency_p95_ms": self.latency.quantiles_at(t, (0.95,))[0],
            "error_rate": _ratio(window[C_ERRORS], window[C_BEACONS]),
            "startup_p50_ms": self.startup.quantiles_at(t, (0.5,))[0] if starts else None,
            "fast_start_ratio": _ratio(window[C_FAST_STARTS], starts),
            "slow_start_ratio": _ratio(window[C_SLOW_STARTS], starts),
            "startups": starts,
            **_recent_figures(self.sums, self.latency, t, recent, _C_RECENT),
        }


# The fields the `*_10s` figures read: stall, play, beacons, errors, starts, fast starts.
_RECENT = (STALL_MS, PLAY_MS, BEACONS, ERRORS, STARTUPS, FAST_STARTS)
_C_RECENT = (C_STALL_MS, C_PLAY_MS, C_BEACONS, C_ERRORS, C_STARTUPS, C_FAST_STARTS)


def _recent_figures(sums: BucketSums, latency: LatencySketch, t: int, buckets: int, fields: tuple) -> dict:
    """The figures of the short window `(t-buckets, t]` (RECENT_WINDOW), defined as their W ones."""
    stall = play = beacons = errors = starts = fast = 0
    f_stall, f_play, f_beacons, f_errors, f_starts, f_fast = fields
    for vector in map(sums.buckets.get, range(t - buckets + 1, t + 1)):  # one read of each bucket's vector
        if vector is None:
            continue
        stall += vector[f_stall]
        play += vector[f_play]
        beacons += vector[f_beacons]
        errors += vector[f_errors]
        starts += vector[f_starts]
        fast += vector[f_fast]
    return {
        "stall_ratio_10s": _ratio(stall, stall + play),
        "latency_p95_ms_10s": latency.recent_quantiles(t, buckets, (0.95,))[0],
        "error_rate_10s": _ratio(errors, beacons),
        "fast_start_ratio_10s": _ratio(fast, starts),
        "startups_10s": starts,
    }


class Show:
    __slots__ = ("id", "start", "title", "start_bucket", "gmv_base", "orders_base", "ended_at", "implicit",
                 "given_id", "marks")
    STATE = (*(Field(name) for name in __slots__[:8]), Field("given_id", default=None), Field("marks", default=0))

    def __init__(self, show_id, start, title, start_bucket, implicit=False):
        self.id, self.start, self.title, self.start_bucket = show_id, start, title, start_bucket
        self.given_id = show_id  # as a start or end event named it (SPEC §10), else None
        self.gmv_base = self.orders_base = None  # totals before the show, set once final
        self.ended_at = None
        self.implicit = implicit  # begun by the room's first event, not by a start marker
        self.marks = 0  # promotions and pins so far (bounded: EngineConfig.max_show_marks)


def _attr_sums(width: int, frontier: int) -> KeyedSums:
    """A room's breakdown sums: keys `column * ATTR_STRIDE + field`, coverage cumulative."""
    return KeyedSums(width, frontier, ATTR_STRIDE, A_COVER)


class _SlotsOrNames:
    """Expiry lists: slots, as an int32 array's bytes; an older checkpoint's user ids are kept as
    they are, for `Room._restored` to map to slots."""

    @staticmethod
    def encode(slots):
        return array_bytes(slots)

    @staticmethod
    def decode(data):
        return array_of("i", data) if isinstance(data, bytes) else list(data)


class _HeldItems:
    """Held items (see `Room.held`) in a checkpoint: a show event as its SPEC object."""

    @staticmethod
    def encode(held):
        return {b: [[*item[:2], msgspec.to_builtins(item[2]), *item[3:]] if item[1] == L.SHOW else list(item)
                    for item in items] for b, items in held.items()}

    @staticmethod
    def decode(data):
        return {b: [(item[0], item[1], msgspec.convert(item[2], ShowEvent), *item[3:]) if item[1] == L.SHOW
                    else tuple(item) for item in items] for b, items in data.items()}


class Room:
    # What a checkpoint holds of a room (see state.py): one line per attribute, in restoring
    # order (a default may read the fields before it). Not here: what `_configure` derives from
    # the engine's config and what `_restored` rebuilds.
    STATE = (
        Field("id"), Field("max_ts"), Field("live_floor"), Field("frontier"), Field("swept"),
        Field("sums", Vectors(ROOM_VECTOR, BucketSums)),
        Field("interacting", Obj(DistinctWindow)), Field("clicking", Obj(DistinctWindow)),
        Field("paying", Obj(DistinctWindow)), Field("latency", Obj(LatencySketch)),
        Field("cdns", DictOf(Obj(CdnStats))),
        Field("users"), Field("starts", _DOUBLES), Field("seen", _DOUBLES), Field("ends", _Ends()),
        Field("log_op", Array("b")), Field("log_seen", _DOUBLES), Field("logs", _Logs(ROOM_VECTOR)),
        Field("expiries", DictOf(_SlotsOrNames())), Field("cleanups"), Field("logged", DictOf(_SlotsOrNames()), default=lambda room: {}),
        Field("paid_orders", SET), Field("earlier_paid_orders", SET, default=lambda room: set()), Field("cohorts"), Field("last_event_bucket"),
        Field("shows", ListOf(Obj(Show))),
        # Sales analytics (SPEC §8-11), added in place: an older checkpoint gets empty ones.
        Field("profile", Array("i"), default=lambda room: array("i", bytes(4 * len(room.starts)))),
        Field("past", default=lambda room: {}),
        Field("region_names", default=lambda room: None),
        Field("product_names", default=lambda room: []),
        Field("attr", Obj(KeyedSums), default=lambda room: _attr_sums(room.width, room.frontier)),
        Field("first_starts", FlatPairs("i"), default=lambda room: {}),
        Field("first_window", default=lambda room: {}),
        Field("interacting_by", Obj(GroupedDistinct), default=lambda room: GroupedDistinct(room.width, room.frontier)),
        Field("clicking_by", Obj(GroupedDistinct), default=lambda room: GroupedDistinct(room.width, room.frontier)),
        Field("product_clicks", Obj(GroupedDistinct), default=lambda room: GroupedDistinct(room.width, room.frontier)),
        Field("product_carts", Obj(GroupedDistinct), default=lambda room: GroupedDistinct(room.width, room.frontier)),
        Field("product_payers", Obj(GroupedDistinct), default=lambda room: GroupedDistinct(room.width, room.frontier)),
        Field("product_sums", Obj(KeyedSums), default=lambda room: KeyedSums(room.width, room.frontier)),
        Field("startup", Obj(LatencySketch), default=_sketch_like),
        Field("pins", default=lambda room: []),
        Field("held", _HeldItems(), default=lambda room: {}),
        Field("beacons", DictOf(_DOUBLES), default=lambda room: {}),
        Field("view_stamps", DictOf(_DOUBLES), default=lambda room: {}),
        Field("started", default=lambda room: {}),
        Field("ended", default=lambda room: {}),
        Field("ledger", Obj(Ledger), default=lambda room: Ledger()),
    )

    def __init__(self, room_id: str, config: EngineConfig, first_ts: float, frontier: int):
        self.id = room_id
        self._configure(config)
        width = self.width
        self.max_ts = first_ts
        self.live_floor = frontier  # the newest live instant shown
        self.frontier = frontier  # the last final instant (in buckets)
        self.swept = frontier  # presence timeouts checked up to this bucket
        self.sums = BucketSums(ROOM_FIELDS, width, frontier)
        self.interacting = DistinctWindow(width, frontier)
        self.clicking = DistinctWindow(width, frontier)
        self.paying = DistinctWindow(width, frontier)
        self.latency = LatencySketch(width, frontier)
        self.cdns: dict[str, CdnStats] = {}
        # Viewer records. A list or an object per viewer costs ~180 B with its GC header and float
        # objects; a slot in these arrays costs 33 B. `users[slot]` is the room's one copy of the
        # user id string, shared by all its structures (every event brings its own copy; kept in
        # expiry lists and distinct-user windows they would add up); None for a free slot.
        self.viewers: dict[str, int] = {}  # user id -> slot
        self.users: list = []  # the user id of each slot; None for a free one
        self.starts = array("d")  # UNSET: never present
        self.seen = array("d")  # last_seen; UNSET: never present
        # slot -> end of its last presence, for the viewers not present (most tracked viewers are
        # present: a dict of the few costs less than a double per slot); none: present, or never was
        self.ends: dict[int, float] = {}
        self.free: list[int] = []  # free slots
        # A viewer's log of non-final operations: most are one short entry (see `view`), and every
        # heartbeat makes one, so that one is kept in the slot, allocating nothing: its operation
        # (a code of _SLOT_OPS; 0: none) and last_seen before it (UNSET: a first enter); its ts is
        # the slot's last_seen, as the viewer's next operation moves it out of the slot first. Any
        # other log is a list in `logs` (and then the slot keeps none).
        self.log_op = array("b")
        self.log_seen = array("d")
        self.logs: dict[int, list] = {}  # slot -> log
        self.expiries: dict[int, array] = {}  # bucket -> slots whose viewer's timeout may fall there
        self.cleanups: dict[int, list[str]] = {}  # bucket -> ended viewers to forget
        self.logged: dict[int, array] = {}  # bucket -> slots whose viewer's log may be final then
        self.paid_orders: set[str] = set()
        self.earlier_paid_orders: set[str] = set()
        self.cohorts = [[0, 0] for _ in self.horizons]  # per horizon: [started, short] at frontier
        self.last_event_bucket: int | None = None  # newest final bucket holding an event
        self.shows: list[Show] = []
        # ---- sales analytics (SPEC §8-11) ----
        # A presence's attributes, packed (audience.py): `profile[slot]` is the current (latest)
        # presence's; `past` keeps a re-entering viewer's earlier presences as (start, end,
        # profile) while they may still count (a breakdown's window, attribution).
        self.profile = array("i")
        self.past: dict[int, list] = {}
        self.region_names: list[str] | None = None  # set by `_sales_parts`
        self.product_names: list[str] = []  # products kept apart, in order met (the rest: "other")
        # Breakdown columns' sums (presences and paid orders, key column * ATTR_STRIDE + field) and
        # distinct interacting and clicking users per column.
        self.attr = _attr_sums(width, frontier)
        # Viewers' first presences per profile and bucket (most presences are one: one update
        # each, not one per column): a dict until final, then flat (profile, count) pairs kept
        # for the window, their entries per column in `first_window` (see `_fold_first_starts`).
        self.first_starts: dict[int, Any] = {}
        self.first_window: dict[int, int] = {}
        self.first_columns: dict[int, dict[int, int]] = {}  # see `_first_columns`
        self.interacting_by = GroupedDistinct(width, frontier)
        self.clicking_by = GroupedDistinct(width, frontier)
        # Products (SPEC §9): distinct clickers, carters and payers per product; orders and GMV.
        self.product_clicks = GroupedDistinct(width, frontier)
        self.product_carts = GroupedDistinct(width, frontier)
        self.product_payers = GroupedDistinct(width, frontier)
        self.product_sums = KeyedSums(width, frontier)
        self.startup = LatencySketch(width, frontier)
        self.pins: list = []  # [ts, product or None] of the current show's pins and unpins, by ts
        # Until an instant is final: its events for the show ledger and the re-attribution
        # (`settle`), the ts of its views, and the viewers whose presence started or ended in it.
        self.held: dict[int, list] = {}
        self.beacons: dict[int, array] = {}  # bucket -> its beacons' flat (ts, stall_ms, play_ms, error)
        self.view_stamps: dict[int, array] = {}  # bucket -> the ts of its views
        self.started: dict[int, list] = {}
        self.ended: dict[int, list] = {}
        self.ledger = Ledger()
        self.ledger.link(self.viewers, self.users)
        self._sales_parts()

    def _configure(self, config: EngineConfig) -> None:
        """What a room derives from the engine's config, and its transient parts."""
        self.config = config
        self.step = config.step
        self.width = config.buckets(config.window)
        self.horizons = tuple(config.buckets(h) for h in RETENTION_HORIZONS)
        self.keep = self.width + max(self.horizons) + 2  # buckets a snapshot may read
        self.recent = max(1, min(self.width, config.buckets(RECENT_WINDOW)))  # buckets of the `*_10s` figures
        self.timeout = config.presence_timeout
        # Reference time (see Engine.reference) when max_ts last rose. A restored room's is None:
        # another process's reference is not comparable (see Engine.import_rooms).
        self.seen_at: float | None = None
        self._journal: Any = None  # a view's undo journal (see `view`): a list of flat triples while it runs
        # Live snapshots of instants not yet final, while no event of them or before has come
        # since: such an instant's final snapshot is the same (SPEC §3: they differ only by events
        # that arrive within the lateness), so it is not made twice. A lean final (a worker's) is
        # read back from `kept`, the lean part's JSON (2 KB at a busy room; encoding it costs a
        # fiftieth of making it; a whole final is made again). `kept_upto`: the newest kept.
        # `live_kept`: the newest live snapshot itself, (instant, snapshot), returned again while
        # it holds (a quiet room's live instant stays put), so it costs nothing to show again; the
        # caller holds it anyway until the next step. Live snapshots are shared: read, not changed.
        self.kept: dict[int, bytes] = {}
        self.kept_upto: float = -math.inf
        self.live_kept: tuple[int, dict] | None = None
        # A live snapshot made `deferred` (see `live_snapshot`), waiting for its breakdowns and
        # products: (snapshot, what `_parts` reads); and the live snapshot shown before it.
        self.unfinished: tuple[dict, tuple] | None = None
        self.shown: dict | None = None

    # ---- checkpoints (see state.py) ----

    @classmethod
    def restore(cls, config: EngineConfig, state: dict) -> Room:
        room = cls.__new__(cls)
        room._configure(config)
        return from_state(room, state)

    def _sales_parts(self) -> None:
        """The derived lookups of the sales parts (after `__init__` or a restore)."""
        self.regions = Regions(self.config.max_regions, self.region_names)
        self.region_names = self.regions.names
        self.product_index = set(self.product_names)

    def _restored(self) -> None:
        self._sales_parts()
        self.first_columns = {}
        self.past = {_slot_number(slot): [tuple(p) for p in presences] for slot, presences in self.past.items()}
        users, number = self.users, _slot_number
        number(len(self.starts))  # every slot of the arrays has its number
        self.viewers = {user: number(slot) for slot, user in enumerate(users) if user is not None}
        self.free = [number(slot) for slot, user in enumerate(users) if user is None]
        self.ledger.link(self.viewers, users)
        self.logs = {number(slot): log for slot, log in self.logs.items()}
        # One copy of each user id (see `users`): a checkpoint brings one per place it occurs.
        own = {user: user for user in users if user is not None}
        for bucket, names in self.cleanups.items():
            self.cleanups[bucket] = list(map(own.get, names, names))
        viewers = self.viewers
        for lists in (self.expiries, self.logged):
            for bucket, entries in lists.items():
                if not isinstance(entries, array):  # user ids, from an older checkpoint
                    lists[bucket] = array("i", [viewers[user] for user in entries if user in viewers])
        for window in (self.interacting, self.clicking, self.paying, *(cdn.viewers for cdn in self.cdns.values())):
            window.share(own)
        for grouped in (self.interacting_by, self.clicking_by, self.product_clicks, self.product_carts,
                        self.product_payers):
            grouped.share(own)

    # ---- ingestion (events already validated and not late) ----

    def bucket_of(self, ts: float) -> int:
        return math.ceil(ts / self.step)

    def note_event(self, ts: float, bucket: int) -> None:
        """Count an event for the room; a show begins at the first event after a gap or an end."""
        self.sums.at(bucket)[EVENTS] += 1
        show = self.shows[-1] if self.shows else None
        if show is None or ts - self.max_ts > self.config.show_idle or (
                show.ended_at is not None and ts > show.ended_at):
            self.begin_show(None, ts, None)
        elif ts < show.start and show.implicit and (len(self.shows) < 2 or self.shows[-2].ended_at is None
                                                    or ts > self.shows[-2].ended_at):
            self._move_start(show, ts)  # an earlier event arrived late: the show began with it
        self.max_ts = max(self.max_ts, ts)

    def begin_show(self, show_id, ts, title):
        bucket = self.bucket_of(ts)
        current = self.shows[-1] if self.shows else None
        if current is not None and current.start_bucket >= bucket:
            # The start marker of the show that just began with this bucket: it names it.
            current.id, current.title = show_id or current.id, title or current.title
            current.given_id = show_id or current.given_id
            if ts < current.start:
                self._move_start(current, ts)
            current.implicit = False
            return
        show = Show(show_id or f"{self.id}-{int(ts)}", ts, title, bucket, implicit=show_id is None)
        show.given_id = show_id
        if bucket - 1 <= self.frontier:
            show.gmv_base, show.orders_base = self.sums.total[GMV_MICRO], self.sums.total[PAID]
        self.shows.append(show)
        # An order id counts once (SPEC §2): remembered across shows, up to a bound.
        self.earlier_paid_orders |= self.paid_orders
        self.paid_orders = set()
        if len(self.earlier_paid_orders) > self.config.max_remembered:
            self.earlier_paid_orders = set()

    def _move_start(self, show, ts):
        """Move a show's start back to `ts` (not final: an event of its bucket is being taken)."""
        if show.implicit and show.id == f"{self.id}-{int(show.start)}":
            show.id = f"{self.id}-{int(ts)}"
        show.start = ts
        bucket = self.bucket_of(ts)
        if bucket < show.start_bucket:  # the base was not taken yet: the old start was not final
            show.start_bucket = bucket
            if bucket - 1 <= self.frontier:
                show.gmv_base, show.orders_base = self.sums.total[GMV_MICRO], self.sums.total[PAID]

    def end_show(self, ts, show_id=None, title=None):
        if self.shows and self.shows[-1].ended_at is None:
            show = self.shows[-1]
            show.ended_at = ts
            if show.given_id is None and show_id is not None:  # named by its end event (SPEC §10)
                show.given_id = show.id = show_id
            if show.title is None:
                show.title = title

    def add_danmaku(self, user, bucket):
        self.sums.at(bucket)[DANMAKU] += 1
        self.interacting.add(user, bucket)

    def add_click(self, user, target, bucket):
        if target == "product":
            self.clicking.add(user, bucket)
        elif target != "cart":
            self.interacting.add(user, bucket)

    def add_paid_order(self, order_id, user, amount, bucket) -> bool:
        if order_id in self.paid_orders or order_id in self.earlier_paid_orders:
            return False  # the first paid status counts; duplicates do nothing
        self.paid_orders.add(order_id)
        vector = self.sums.at(bucket)
        vector[PAID] += 1
        vector[GMV_MICRO] += round(amount * MICRO)
        self.paying.add(user, bucket)
        return True

    def add_health(self, event, bucket):
        vector = self.sums.at(bucket)
        vector[STALL_MS] += event.stall_ms
        vector[PLAY_MS] += event.play_ms
        vector[STALLS] += event.stall_count
        vector[BEACONS] += 1
        cdn = self.cdns.get(event.cdn)
        if cdn is None:
            cdn = self.cdns[event.cdn] = CdnStats(self.width, self.frontier)
        cvec = cdn.sums.at(bucket)
        cvec[C_STALL_MS] += event.stall_ms
        cvec[C_PLAY_MS] += event.play_ms
        cvec[C_BEACONS] += 1
        if event.error is not None:
            vector[ERRORS] += 1
            cvec[C_ERRORS] += 1
        if event.latency_ms is not None:
            self.latency.add(event.latency_ms, bucket)
            cdn.latency.add(event.latency_ms, bucket)
        if event.startup_ms is not None:
            self.add_startup(event.startup_ms, cdn, bucket, vector, cvec)
        cdn.viewers.add(self.user_key(event.user_id), bucket)
        self.beacons.setdefault(bucket, array("d")).extend(
            (event.ts, event.stall_ms, event.play_ms, event.error is not None))

    # ---- sales analytics (SPEC §8-11) ----

    def profile_at(self, user: str, ts: float) -> int:
        """The attributes a user has at `ts` (SPEC §8): those of their latest presence started at
        or before it; else all unknown (0)."""
        slot = self.viewers.get(user)
        if slot is not None:
            start = self.starts[slot]
            if start != UNSET and start <= ts:
                return self.profile[slot]
            for presence in reversed(self.past.get(slot, ())):
                if presence[0] <= ts:
                    return presence[2]
        # None tracked began by `ts`: the show ledger remembers the presences before (final).
        found = self.ledger.profile_of(user)
        return 0 if found is None else found

    def product_key(self, product: str) -> str:
        """The product as the room counts it: its own id, or "other" past the cap."""
        if product in self.product_index:
            return product
        if len(self.product_names) < self.config.max_products:
            self.product_names.append(product)
            self.product_index.add(product)
            return product
        return "other"

    def _hold(self, bucket: int, item: tuple) -> None:
        held = self.held.get(bucket)
        if held is None:
            self.held[bucket] = [item]
        else:
            held.append(item)

    def interaction(self, user: str, ts: float, bucket: int, item: tuple) -> None:
        """A danmaku or a like/share/follow click (`add_danmaku`/`add_click` counted it)."""
        profile = self.profile_at(user, ts)
        self.interacting_by.add_groups(columns(profile), user, bucket)
        self._hold(bucket, item[:3] + (profile,) + item[3:])

    def product_click(self, user: str, ts: float, bucket: int, target: str, product: str) -> None:
        product = self.product_key(product)
        profile = self.profile_at(user, ts)
        if target == "product":
            self.clicking_by.add_groups(columns(profile), user, bucket)
            self.product_clicks.add((product, user), bucket)
        else:
            self.product_carts.add((product, user), bucket)
        self._hold(bucket, (ts, L.CLICK, user, profile, target, product))

    def order(self, event, user: str, ts: float, bucket: int) -> None:
        product = self.product_key(event.product_id)
        micro = round(event.amount * MICRO)
        profile = self.profile_at(user, ts)
        counted = False
        if event.status == "paid":
            counted = self.add_paid_order(event.order_id, user, event.amount, bucket)
            if counted:
                self._attribute_order(bucket, profile, micro, 1)
                self.product_payers.add((product, user), bucket)
                sums = self.product_sums
                sums.add(bucket, (product, P_ORDERS), 1)
                sums.add(bucket, (product, P_GMV), micro)
        self._hold(bucket, (ts, L.ORDER, user, profile, event.status, event.order_id, product, micro, counted))

    def _attribute_order(self, bucket: int, profile: int, micro: int, sign: int) -> None:
        sums = self.attr.at(bucket)
        for column in columns(profile):
            keys = _keys(column)
            sums[keys[A_ORDERS]] = sums.get(keys[A_ORDERS], 0) + sign
            sums[keys[A_GMV]] = sums.get(keys[A_GMV], 0) + sign * micro

    def show_event(self, event, ts: float, bucket: int, check_only: bool = False) -> bool:
        """A show event for the ledger (and the live pin); False: a pin or promotion over the
        per-show cap (rejected `show_limit`, nothing counted). `check_only`: just say so."""
        action = event.action
        show = self.shows[-1] if self.shows else None
        if action in ("pin", "promo_start") and show is not None and show.marks >= self.config.max_show_marks:
            return False
        if check_only:
            return True
        if action in ("pin", "promo_start") and show is not None:
            show.marks += 1
        if event.product_id is not None:
            product = self.product_key(event.product_id)
            if product != event.product_id:
                event = msgspec.structs.replace(event, product_id=product)
        if action in ("pin", "unpin"):
            pin = [ts, event.product_id if action == "pin" else None]
            pins = self.pins
            at = len(pins)
            while at and pins[at - 1][0] > ts:
                at -= 1
            pins.insert(at, pin)
            if len(pins) > 2 * self.config.max_show_marks:
                del pins[0]
        self._hold(bucket, (ts, L.SHOW, event))
        return True

    def add_startup(self, startup_ms: float, cdn: "CdnStats", bucket: int, vector, cvector) -> None:
        vector[STARTUPS] += 1
        cvector[C_STARTUPS] += 1
        if startup_ms <= FAST_START:
            vector[FAST_STARTS] += 1
            cvector[C_FAST_STARTS] += 1
        elif startup_ms >= SLOW_START:
            vector[SLOW_STARTS] += 1
            cvector[C_SLOW_STARTS] += 1
        index = LatencySketch.bin_of(startup_ms)
        self.startup.add_bin(index, bucket)
        cdn.startup.add_bin(index, bucket)

    def pinned_at(self, t: int, show) -> str | None:
        """The product pinned at instant `t` (SPEC §9), within the room's show at `t`."""
        if show is None:
            return None
        moment = t * self.step
        if show.ended_at is not None and moment >= show.ended_at:
            return None
        if moment - self.max_ts > self.config.show_idle:
            return None
        pinned = None
        for ts, product in self.pins:
            if ts > moment:
                break
            if ts >= show.start:
                pinned = product
        return pinned

    def presences_at(self, moment: float):
        """(user, start, profile) of every presence containing `moment` (tracked viewers)."""
        starts, ends, profile, past = self.starts, self.ends, self.profile, self.past
        for user, slot in self.viewers.items():
            start = starts[slot]
            if start == UNSET:
                continue
            if start <= moment:
                end = ends.get(slot, UNSET)
                if end == UNSET or end > moment:
                    yield user, start, profile[slot]
            elif slot in past:
                for start, end, other in reversed(past[slot]):
                    if start <= moment:
                        if end > moment:
                            yield user, start, other
                        break

    # ---- settling an instant: re-attribution and the show ledger ----

    def reattribute(self, t: int) -> None:
        """Attribute the events held for bucket `t` again by the presences as they are now, and
        fix the breakdowns where that differs from their attribution so far (an earlier enter or
        leave that came later). Final once `t` is (see `settle`); before, it makes a live
        snapshot's breakdowns those of every event arrived (`Engine.live_snapshots`)."""
        held = self.held.get(t)
        if not held:
            return
        moved = False
        profile_at = self.profile_at
        for i, item in enumerate(held):
            kind = item[1]
            if kind == L.DANMAKU or kind == L.CLICK or kind == L.ORDER:
                now = profile_at(item[2], item[0])
                if now != item[3]:
                    moved = True
                    if kind == L.ORDER and item[8]:
                        self._attribute_order(t, item[3], item[7], -1)
                        self._attribute_order(t, now, item[7], 1)
                    held[i] = item[:3] + (now,) + item[4:]
        if moved:
            self.interacting_by.drop_pending(t)
            self.clicking_by.drop_pending(t)
            for item in held:
                if item[1] == L.DANMAKU or (item[1] == L.CLICK and item[4] not in ("product", "cart")):
                    self.interacting_by.add_groups(columns(item[3]), item[2], t)
                elif item[1] == L.CLICK and item[4] == "product":
                    self.clicking_by.add_groups(columns(item[3]), item[2], t)

    def settle(self, t: int) -> None:
        """Instant `t` is about to be final (every event of it is in): attribute its events by
        the now final presences, fix the breakdowns where that differs from their attribution
        on arrival (an earlier enter or leave that came later), and feed the show ledger its
        events in ts order."""
        self.reattribute(t)
        items = self.held.pop(t, None) or []
        for user in set(self.started.pop(t, ())):
            for start, _, profile in self._presences_of(user):
                if self.bucket_of(start) == t:
                    items.append((start, L.START, user, profile))
        for user in set(self.ended.pop(t, ())):
            for start, end, profile in self._presences_of(user):
                if end != UNSET and self.bucket_of(end) == t:
                    items.append((end, L.END, user, start, profile))
        stamps = self.view_stamps.pop(t, None)
        boundary = any(show.start_bucket == t or (show.ended_at is not None and self.bucket_of(show.ended_at) == t)
                       for show in self.shows)
        beacons = self.beacons.pop(t, None)
        if beacons:
            # (ts, HEALTH, stall_ms, play_ms, errors, beacons): one item for the bucket, unless a
            # show begins or ends in it (then each beacon goes to the show at its ts).
            if boundary:
                items.extend((beacons[i], L.HEALTH, beacons[i + 1], beacons[i + 2], beacons[i + 3], 1)
                             for i in range(0, len(beacons), 4))
            else:
                items.append((max(beacons[0::4]), L.HEALTH, sum(beacons[1::4]), sum(beacons[2::4]),
                              sum(beacons[3::4]), len(beacons) // 4))
        if stamps:
            if boundary:
                items.extend((ts, L.VIEW) for ts in stamps)
            else:
                items.append((max(stamps), L.VIEW))
        ledger = self.ledger
        utc = self.config.utc_seconds
        if items:
            items.sort(key=_item_order)
            for item in items:
                show = self._show_of(item[0])
                if show is None:
                    continue
                if ledger.show_key != show.start:
                    if ledger.current is not None:
                        self._close_tally()
                    ledger.open(self.id, show, self.presences_at(show.start))
                    ledger.show_key = show.start
                ledger.feed(item, utc)
        current = ledger.current
        if current is not None:
            data = current.data
            moment = t * self.step
            ended = data["ended_at"]
            if ended is not None and moment >= ended:
                self._close_tally()
            elif moment - data["last_ts"] > self.config.show_idle:
                self._close_tally()
            elif moment >= data["start"]:
                ledger.instant(moment, self.sums.total_at(t, STARTS) - self.sums.total_at(t, ENDS))

    def _close_tally(self) -> None:
        data = self.ledger.current.data  # type: ignore[union-attr]
        end = data["ended_at"] if data["ended_at"] is not None else data["last_ts"]
        self.ledger.close(end, self.presences_at(end), self.regions, self.config.utc_seconds,
                          self.config.max_remembered)

    def close_show(self) -> None:
        """End of input, or the room is let go: its show is over as of its last event. The
        instants not final yet hold no more events to wait for: settle them first."""
        pending = [*self.held, *self.view_stamps, *self.started, *self.ended, *self.beacons]
        for t in range(self.frontier + 1, max(pending, default=self.frontier) + 1):
            self.settle(t)
        if self.ledger.current is not None:
            self._close_tally()

    def provisional_summary(self) -> dict | None:
        """The summary of the show going on, as of the final frontier."""
        moment = self.frontier * self.step
        return self.ledger.provisional(moment, self.presences_at(moment), self.regions, self.config.utc_seconds)

    def _presences_of(self, user: str):
        slot = self.viewers.get(user)
        if slot is None:
            return ()
        current = (self.starts[slot], self.ends.get(slot, UNSET), self.profile[slot])
        return (*self.past.get(slot, ()), current) if current[0] != UNSET else tuple(self.past.get(slot, ()))

    def _show_of(self, ts: float):
        """The room's show at `ts` (None: after a show's end, before any event began another)."""
        found = None
        for show in self.shows:
            if show.start <= ts:
                found = show
        if found is not None and found.ended_at is not None and ts > found.ended_at:
            return None
        return found

    # ---- presence ----

    def user_key(self, user: str) -> str:
        """The room's own copy of a user id, when it has one (see `users`)."""
        slot = self.viewers.get(user)
        return user if slot is None else self.users[slot]

    def _new_viewer(self, user: str) -> int:
        """A slot for a viewer not tracked yet: nothing set."""
        free, users = self.free, self.users
        if free:
            slot = free.pop()
            users[slot] = user
            self.starts[slot] = self.seen[slot] = UNSET
            self.ends.pop(slot, None)
            self.log_op[slot] = 0
            self.profile[slot] = 0
        else:
            slot = len(users)
            if slot == len(self.starts):
                self._grow()
            slot = _SLOT_NUMBERS[slot]
            users.append(user)
        self.viewers[user] = slot
        return slot

    def _grow(self) -> None:
        """More slots (unset) past `users`: an eighth more at a time, not one array append each."""
        size = len(self.starts)
        more = max(16, size // 8)
        _slot_number(size + more)
        for name in _TIME_ARRAYS:
            getattr(self, name).extend(repeat(UNSET, more))
        self.log_op.extend(repeat(0, more))
        self.profile.extend(repeat(0, more))

    def _forget_viewer(self, user: str, slot: int) -> None:
        self.ledger.release(slot, user)
        self.past.pop(slot, None)
        del self.viewers[user]
        self.users[slot] = None
        self.logs.pop(slot, None)
        self.log_op[slot] = 0
        self.ends.pop(slot, None)
        self.free.append(slot)

    def view(self, user: str, action: str, ts: float, watermark: float, profile: int = 0) -> None:
        """A view event. `profile`: an `enter`'s attributes (audience.py). In a viewer's log an
        enter with attributes is logged as its profile (an int) so that a redo restarts the
        presence with them."""
        op = profile if profile and action == ENTER else action
        slot = self.viewers.get(user)
        if slot is None:
            slot = self._new_viewer(user)
            if action != ENTER:  # no presence yet: kept only while an earlier enter may arrive
                self.cleanups.setdefault(self.bucket_of(ts) + self.keep, []).append(user)
        else:
            user = self.users[slot]
        # The viewer's log (see `log_op`), less its entries now final: no event can go before them.
        logs = self.logs
        log = logs.get(slot)
        if log:
            while log and log[0][0] < watermark:
                del log[0]
            if not log:
                del logs[slot]
                log = None
        elif self.log_op[slot]:
            if self.seen[slot] < watermark:
                self.log_op[slot] = 0
            else:
                log = self._log_list(slot)  # this operation's entry follows it
        newest = log[-1][0] if log else UNSET
        if action != LEAVE and ts >= newest and slot not in self.ends:
            # The common cases of `_apply`, in event-time order for this viewer, with short log
            # entries (see `_undo`): a heartbeat (or repeated enter) of a present viewer before its
            # timeout moves last_seen and changes no sums; the first enter of a viewer starts it.
            seen = self.seen
            last_seen = seen[slot]
            if self.starts[slot] != UNSET:
                short = ts < last_seen + self.timeout
                if short:
                    seen[slot] = ts
            else:
                short = action == ENTER
                if short:  # `_start` of a viewer never present
                    bucket = math.ceil(ts / self.step)
                    vector = self.sums.at(bucket)
                    vector[COVER] += 1
                    vector[STARTS] += 1
                    self.starts[slot] = seen[slot] = ts
                    self.profile[slot] = profile
                    self._first_start(bucket, profile, 1)
                    started = self.started.get(bucket)
                    if started is None:
                        self.started[bucket] = [user]
                    else:
                        started.append(user)
                    last_seen = UNSET
            if short:
                expiry = math.ceil((ts + self.timeout) / self.step)
                expiries = self.expiries.get(expiry)
                if expiries is None:
                    self.expiries[expiry] = array("i", (slot,))
                else:
                    expiries.append(slot)
                if log is None and (op is action or last_seen == UNSET):
                    # The log is empty: the entry goes in the slot (a first start's profile is the
                    # slot's, see `_log_list`).
                    self.log_op[slot] = _SLOT_OP_CODES[action]  # an enter's code for op's too
                    self.log_seen[slot] = last_seen
                    self._logged(slot, ts)
                else:
                    if log is None:
                        log = self.logs[slot] = []
                        self._logged(slot, ts)
                    log.append((ts, op) if last_seen == UNSET else (ts, op, last_seen))
                return
        if ts < newest:
            redo = []
            while log and log[-1][0] > ts:
                entry = log.pop()
                self._undo(slot, entry)
                redo.append(entry[:2])
            self._apply(user, slot, op, ts)
            for op_ts, redo_op in reversed(redo):
                self._apply(user, slot, redo_op, op_ts)
        else:
            self._apply(user, slot, op, ts)

    def _log_list(self, slot):
        """Move the short entry kept in the slot to a list in `logs`; return the list."""
        ts, last_seen = self.seen[slot], self.log_seen[slot]
        entry = (ts, self.profile[slot] or ENTER) if last_seen == UNSET else (ts, _SLOT_OPS[self.log_op[slot]], last_seen)
        self.log_op[slot] = 0
        log = self.logs[slot] = [entry]
        return log

    def _undo(self, slot, entry):
        """Put a viewer back as it was before a log entry (the entries after it already undone).

        An entry is `(ts, op, start, last_seen, end, changes)`: the times before, and the changes
        to the sums as flat (bucket, field, delta) triples; or one of `view`'s short ones."""
        if len(entry) == 3:  # (ts, op, last_seen before): only last_seen moved
            self.seen[slot] = entry[2]
            return
        if len(entry) == 2:  # (ts, ENTER or a profile): the first start, from nothing set
            bucket = self.bucket_of(entry[0])
            vector = self.sums.buckets[bucket]
            vector[STARTS] -= 1
            vector[COVER] -= 1
            self._first_start(bucket, entry[1] if type(entry[1]) is int else 0, -1)
            self.starts[slot] = self.seen[slot] = UNSET
            return
        _, _, start, last_seen, end, changes = entry
        buckets, attr = self.sums.buckets, self.attr.buckets
        for i in range(len(changes) - 3, -1, -3):  # the last change first
            field = changes[i + 1]
            if field < ATTR:
                buckets[changes[i]][field] -= changes[i + 2]
            else:
                attr[changes[i]][field - ATTR] -= changes[i + 2]
        if start != self.starts[slot] and start != UNSET:
            # The operation began a presence: the one before it comes back from `past`.
            past = self.past[slot]
            self.profile[slot] = past.pop()[2]
            if not past:
                del self.past[slot]
        self.starts[slot], self.seen[slot] = start, last_seen
        if end == UNSET:
            self.ends.pop(slot, None)
        else:
            self.ends[slot] = end

    def _apply(self, user, slot, action, ts):
        """One presence operation, in event-time order for this viewer."""
        start, last_seen, end = self.starts[slot], self.seen[slot], self.ends.get(slot, UNSET)
        if action != EXPIRE and start != UNSET and end == UNSET and ts >= last_seen + self.timeout:
            # The presence timed out before this operation: the timeout is an operation of its
            # own, of its own time. In this operation's entry it would be undone with it by an
            # event that comes later and lies between the two, although its bucket may be final.
            self._apply(user, slot, EXPIRE, last_seen + self.timeout)
            start, last_seen, end = self.starts[slot], self.seen[slot], self.ends.get(slot, UNSET)
        changes: list = []
        self._journal = changes
        present = start != UNSET and end == UNSET
        if present and ts >= last_seen + self.timeout:
            self._end(user, slot, last_seen + self.timeout)
            present = False
        entering = action == ENTER or type(action) is int
        if entering and not present:
            self._start(user, slot, ts, action if type(action) is int else 0)
        elif present and (entering or action == HEARTBEAT):
            self.seen[slot] = ts
            self.expiries.setdefault(self.bucket_of(ts + self.timeout), array("i")).append(slot)
        elif present and action == LEAVE:
            self._end(user, slot, ts)
        self._journal = None
        log = self.logs.get(slot)  # the slot keeps no entry now (see `view`)
        if not log:
            log = self.logs[slot] = []
            self._logged(slot, ts)
        log.append((ts, action, _shared(start), _shared(last_seen), _shared(end),
                    tuple(changes) if changes else _NO_CHANGES))

    def _logged(self, slot, ts):
        """A viewer's log has become non-empty: look at it again once `ts` is final (`_prune_logs`).
        By slot (4 B): a slot freed and taken by another viewer meanwhile only has that viewer's
        log pruned early, which drops nothing that is not final."""
        logged = self.logged
        bucket = self.bucket_of(ts)
        slots = logged.get(bucket)
        if slots is None:
            logged[bucket] = array("i", (slot,))
        else:
            slots.append(slot)

    def _prune_logs(self, t):
        """Drop the log entries of bucket `t` and before (just made final): every event still to
        come, swept timeouts included, is of a later bucket, so none of them can be undone any
        more. Without this a final entry stays until the viewer's next event."""
        step, ceil, users, logs, log_op = self.step, math.ceil, self.users, self.logs, self.log_op
        for slot in self.logged.pop(t, ()):
            if users[slot] is None:  # forgotten since
                continue
            log = logs.get(slot)
            if not log:
                if log_op[slot]:  # the entry kept in the slot, of ts last_seen
                    newest = self.seen[slot]
                    if ceil(newest / step) <= t:
                        log_op[slot] = 0
                    else:
                        self._logged(slot, newest)
                continue
            if ceil(log[-1][0] / step) <= t:  # the usual case: all of it final
                del logs[slot]
                continue
            while ceil(log[0][0] / step) <= t:
                del log[0]
            self._logged(slot, log[-1][0])

    def _bump(self, bucket, field, delta):
        self.sums.at(bucket)[field] += delta
        self._journal += bucket, field, delta  # flat triples: a tuple each would cost 64 B more

    def _abump(self, bucket, key, delta):
        """`_bump` of a breakdown column's field (see ATTR)."""
        sums = self.attr.buckets.get(bucket)
        if sums is None:
            self.attr.buckets[bucket] = {key: delta}
        else:
            sums[key] = sums.get(key, 0) + delta
        self._journal += bucket, ATTR + key, delta

    def _first_start(self, bucket, profile, delta):
        """A viewer's first presence (or `delta` -1: undone), counted per profile until its
        bucket is final (`_fold_first_starts`): one update per viewer, not one per column. Not
        journaled: the short log entry `(ts, op)` says it all."""
        counts = self.first_starts.get(bucket)
        if counts is None:
            self.first_starts[bucket] = {profile: delta}
        else:
            counts[profile] = counts.get(profile, 0) + delta
        if self.first_columns:
            self.first_columns.pop(bucket, None)

    def _first_columns(self, bucket: int) -> dict[int, int]:
        """The first starts of `bucket` per column. Every live snapshot folds the same few
        buckets (those after the frontier, and those about to leave the window), so their fold
        is kept until the bucket changes (`_first_start`) or is settled (`finalize_next`)."""
        folded = self.first_columns.get(bucket)
        if folded is None:
            folded = self.first_columns[bucket] = {}
            get = folded.get
            for profile, n in pairs_of(self.first_starts[bucket], "i"):  # a dict, or flat pairs once final
                if n:
                    for column in columns(profile):
                        folded[column] = get(column, 0) + n
        return folded

    def _fold_first_starts(self, bucket: int, window: dict | None, total: dict | None, sign: int = 1) -> None:
        """The first starts of `bucket` into their columns' entries (STARTS) and coverage."""
        for column, n in self._first_columns(bucket).items():
            n *= sign
            keys = _keys(column)
            if window is not None:
                window[keys[A_STARTS]] = window.get(keys[A_STARTS], 0) + n
            if total is not None:
                total[keys[A_COVER]] = total.get(keys[A_COVER], 0) + n

    def _start(self, user, slot, ts, profile=0):
        bucket = self.bucket_of(ts)
        previous_end = self.ends.get(slot, UNSET)
        previous_start = self.starts[slot]
        if previous_end != UNSET and bucket < self.bucket_of(previous_end) + self.width:
            # Still counted as a viewer of the window: extend that coverage instead of a new one.
            self._bump(self.bucket_of(previous_end) + self.width, COVER, 1)
        else:
            self._bump(bucket, COVER, 1)
        self._bump(bucket, STARTS, 1)
        past = None
        if previous_start != UNSET:  # the presence before goes to `past` (`_undo` brings it back)
            past = self.past.get(slot)
            presence = (previous_start, previous_end, self.profile[slot])
            if past is None:
                past = self.past[slot] = [presence]
            else:
                past.append(presence)
                frontier, width = self.frontier, self.width
                while len(past) > 1 and self.bucket_of(past[1][1]) + width < frontier:
                    del past[0]  # no longer counted anywhere (the newest such is kept: attribution)
        for column in columns(profile):
            # Per column as the room's coverage above, extending the coverage of the viewer's
            # latest presence with the same value, when it still counts.
            cover = bucket
            if past:
                for _, end, other in reversed(past):
                    if column in columns(other):
                        extended = self.bucket_of(end) + self.width
                        if bucket < extended:
                            cover = extended
                        break
            keys = _keys(column)
            self._abump(cover, keys[A_COVER], 1)
            self._abump(bucket, keys[A_STARTS], 1)
        self.profile[slot] = profile
        self.starts[slot] = self.seen[slot] = ts
        self.ends.pop(slot, None)
        self.expiries.setdefault(self.bucket_of(ts + self.timeout), array("i")).append(slot)
        self.started.setdefault(bucket, []).append(user)

    def _end(self, user, slot, end):
        start = self.starts[slot]
        start_bucket, end_bucket = self.bucket_of(start), self.bucket_of(end)
        duration = end - start
        self._bump(end_bucket, ENDS, 1)
        self._bump(end_bucket, WATCH, duration)
        self._bump(end_bucket + self.width, COVER, -1)
        for field, horizon in zip(SHORT, RETENTION_HORIZONS):
            if duration < horizon:
                self._bump(start_bucket, field, 1)
        for column in columns(self.profile[slot]):
            keys = _keys(column)
            self._abump(end_bucket, keys[A_ENDS], 1)
            self._abump(end_bucket, keys[A_WATCH], duration)
            self._abump(end_bucket + self.width, keys[A_COVER], -1)
        self.ends[slot] = end
        self.cleanups.setdefault(end_bucket + self.width + 1, []).append(user)
        self.ended.setdefault(end_bucket, []).append(user)

    def sweep(self, upto: int, watermark: float) -> None:
        """End the presences whose timeout falls in buckets up to `upto`."""
        users = self.users
        for bucket in range(self.swept + 1, upto + 1):
            # A slot freed and taken by another viewer since is checked as that viewer's: its own
            # expiry is this bucket or it is left alone, as a stale entry of its own would be.
            for slot in self.expiries.pop(bucket, ()):
                user = users[slot]
                if user is None or slot in self.ends or self.starts[slot] == UNSET:
                    continue
                expiry = self.seen[slot] + self.timeout
                if self.bucket_of(expiry) == bucket:
                    self.view(user, EXPIRE, expiry, watermark)
        self.swept = max(self.swept, upto)

    # ---- the frontier ----

    def finalize_next(self) -> int:
        """Make the next instant final; return it."""
        t = self.frontier + 1
        sums = self.sums
        for i, horizon in enumerate(self.horizons):
            entering, leaving = sums.get(t - horizon), sums.get(t - horizon - self.width)
            cohort = self.cohorts[i]
            cohort[0] += entering[STARTS] - leaving[STARTS]
            cohort[1] += entering[SHORT[i]] - leaving[SHORT[i]]
        # A bucket out of the window is read (and bumped) for the retention cohorts only.
        sums.advance(self.keep, narrow=COHORT_FIELDS)
        self.interacting.advance()
        self.clicking.advance()
        self.paying.advance()
        self.latency.advance()
        self.startup.advance()
        first, folds = self.first_starts, self.first_columns
        counts = first.get(t)
        if counts:
            self._fold_first_starts(t, self.first_window, self.attr.total)
            first[t] = frozen(array("i", chain.from_iterable(counts.items())))
            folds.pop(t, None)  # read again once, when it leaves the window
        if first.get(t - self.width):
            self._fold_first_starts(t - self.width, self.first_window, None, -1)
        first.pop(t - self.width, None)
        folds.pop(t - self.width, None)
        for part in (self.attr, self.interacting_by, self.clicking_by, self.product_clicks, self.product_carts,
                     self.product_payers, self.product_sums):
            part.advance()
        for cdn in self.cdns.values():
            cdn.advance(self.width)  # a CDN reads its window only, not the retention cohorts
        if sums.get(t)[EVENTS]:
            self.last_event_bucket = t
        for show in self.shows:
            if show.gmv_base is None and show.start_bucket - 1 == t:
                show.gmv_base, show.orders_base = sums.total[GMV_MICRO], sums.total[PAID]
        while len(self.shows) > 1 and self.shows[1].start_bucket <= t:
            del self.shows[0]  # no instant from here on belongs to it
        if self.logged:
            self._prune_logs(t)
        pins = self.pins
        while len(pins) > 1 and pins[1][0] <= t * self.step:
            del pins[0]  # no instant from here on reads it: the one after is at or before them
        for user in self.cleanups.pop(t, ()):
            slot = self.viewers.get(user)
            if slot is None:
                continue
            end = self.ends.get(slot, UNSET)
            if self.starts[slot] == UNSET or (end != UNSET and self.bucket_of(end) + self.width < t):
                log = self.logs.get(slot)
                if log or self.log_op[slot]:
                    # An event of a later bucket is in its log (a leave that came before its
                    # enter): an earlier event may still undo it. Forget once that is final.
                    newest = log[-1][0] if log else self.seen[slot]
                    self.cleanups.setdefault(max(t + 1, self.bucket_of(newest)), []).append(user)
                else:
                    self._forget_viewer(user, slot)  # never present, or no longer able to count
        self.frontier = t
        return t

    # ---- live snapshots kept for the final one ----

    def live_snapshot(self, t: int, deferred: bool = False) -> dict:
        """The snapshot at `t` (> frontier) as the events so far make it, kept for the next call
        and for the final one. `deferred`: its breakdowns and products (`LEAN_PARTS`, half the
        work) are made by `complete_live`; until then it carries those of the live snapshot
        shown before, so that the headline figures can be shown first."""
        live_kept = self.live_kept
        if live_kept is not None and live_kept[0] == t and t in self.kept:
            return live_kept[1]
        snapshot, parts = self._lean_snapshot(t)
        if deferred:
            shown = self.shown or {}
            self._add_parts(snapshot, shown.get("by", {}), shown.get("products", {}))
            self.unfinished = (snapshot, parts)
        else:
            self._add_parts(snapshot, *self._parts(*parts))
        self.kept[t] = _keep(snapshot)
        self.live_kept = (t, snapshot)
        self.shown = snapshot
        if t > self.kept_upto:
            self.kept_upto = t
        return snapshot

    def complete_live(self) -> None:
        """The breakdowns and products of the live snapshot made `deferred`, put in it."""
        if self.unfinished is not None:
            snapshot, parts = self.unfinished
            self.unfinished = None
            snapshot["by"], snapshot["products"] = self._parts(*parts)

    def final_snapshot(self, t: int, lean: bool = False) -> dict | None:
        """The final snapshot at `t` (`frontier + 1`, settled); None for an instant without a line.
        `lean`: without the breakdowns and products (see `LEAN_PARTS`)."""
        kept = self.kept.pop(t, None)
        if not self.kept:
            self.kept_upto = -math.inf
        if self.live_kept is not None and self.live_kept[0] <= t:
            self.live_kept = None
        if not self.has_activity(t):
            return None
        if kept is None or not lean:
            return self.snapshot(t, lean)
        return orjson.loads(kept)

    def came(self, bucket: int) -> None:
        """An event of `bucket` (at or before `kept_upto`) came: the kept snapshots from it on no
        longer hold."""
        kept = self.kept
        for t in [t for t in kept if t >= bucket]:
            del kept[t]
        self.kept_upto = max(kept, default=-math.inf)
        if self.live_kept is not None and self.live_kept[0] >= bucket:
            self.live_kept = None

    def forget_kept(self) -> None:
        """Something of every instant changed (an `end` names the show): none kept holds."""
        self.kept.clear()
        self.kept_upto = -math.inf
        self.live_kept = None

    # ---- reading ----

    def has_activity(self, t: int) -> bool:
        """A present viewer at `t`, or an event in `(t-W-180, t]`: the room has a line at `t`."""
        sums = self.sums
        if sums.total_at(t, STARTS) > sums.total_at(t, ENDS):
            return True
        reach = t - self.width - max(self.horizons)
        if self.last_event_bucket is not None and self.last_event_bucket > reach:
            return True
        return any(sums.get(b)[EVENTS] for b in range(max(self.frontier + 1, reach + 1), t + 1))

    def show_at(self, t: int):
        current = None
        for show in self.shows:
            if show.start_bucket <= t:
                current = show
        return current

    def snapshot(self, t: int, lean: bool = False) -> dict:
        """The metrics at instant `t` (`t >= frontier`), as a SPEC replay line; `lean`: without
        the parts in `LEAN_PARTS`."""
        snapshot, parts = self._lean_snapshot(t)
        if not lean:
            self._add_parts(snapshot, *self._parts(*parts))
        return snapshot

    def _parts(self, t: int, paying: set, viewers: int) -> tuple[dict, dict]:
        """The `LEAN_PARTS` at `t`: breakdowns (SPEC §8) and products (SPEC §9)."""
        return self._breakdowns(t, paying), self._products(t, viewers)

    @staticmethod
    def _add_parts(snapshot: dict, by: dict, products: dict) -> None:
        show = snapshot.pop("show")  # (last, as in a replay line)
        snapshot["by"], snapshot["products"] = by, products
        snapshot["show"] = show

    def _lean_snapshot(self, t: int) -> tuple[dict, tuple]:
        """The snapshot at `t` without the `LEAN_PARTS`, and what `_parts` needs to make them."""
        sums = self.sums
        window, total = sums.vectors_at(t)
        online = total[STARTS] - total[ENDS]
        viewers = total[COVER]
        entries, leaves = window[STARTS], window[ENDS]
        paid, gmv_micro = window[PAID], window[GMV_MICRO]
        stall, play = window[STALL_MS], window[PLAY_MS]
        beacons = window[BEACONS]
        scale = 60.0 / self.config.window
        clickers = self.clicking.count_at(t)
        paying = self.paying.members_at(t) if (clickers or self.clicking_by.pending or self.clicking_by.window) else set()
        converted = self.clicking.count_among(paying, t) if clickers and paying else 0
        p50, p95 = self.latency.quantiles_at(t, QUANTILES)
        gmv = gmv_micro / MICRO
        show = self.show_at(t)
        gmv_total = orders_total = 0
        if show is not None:
            gmv_base, orders_base = show.gmv_base, show.orders_base
            if gmv_base is None:
                gmv_base = sums.total_at(show.start_bucket - 1, GMV_MICRO)
                orders_base = sums.total_at(show.start_bucket - 1, PAID)
            gmv_total = (total[GMV_MICRO] - gmv_base) / MICRO
            orders_total = total[PAID] - orders_base
        metrics = {
            "online": online,
            "entries": entries,
            "leaves": leaves,
            "viewers": viewers,
        }
        kept = sums.buckets.get  # (None for a bucket without events: most of a small room's)
        for i, horizon in enumerate(self.horizons):
            started, short = self.cohorts[i]
            field = SHORT[i]
            for b in range(self.frontier + 1, t + 1):
                entering, leaving = kept(b - horizon), kept(b - horizon - self.width)
                if entering is not None:
                    started += entering[STARTS]
                    short += entering[field]
                if leaving is not None:
                    started -= leaving[STARTS]
                    short -= leaving[field]
            metrics[f"retention_{RETENTION_HORIZONS[i]}s"] = _ratio(started - short, started)
        metrics.update(
            **presence_figures(viewers, entries, window[WATCH], leaves),
            interaction_rate=_ratio(self.interacting.count_at(t), viewers),
            danmaku_per_min=window[DANMAKU] * scale,
            product_ctr=_ratio(clickers, viewers),
            conversion_rate=_ratio(converted, clickers),
            orders_per_min=paid * scale,
            gmv=gmv,
            gmv_total=gmv_total,
            **uv_figure(gmv, viewers),
            gpm=_ratio(gmv * 1000, entries),
            stall_ratio=_ratio(stall, stall + play),
            stalls_per_min=_ratio(window[STALLS], (stall + play) / 60000),
            latency_p50_ms=p50,
            latency_p95_ms=p95,
            error_rate=_ratio(window[ERRORS], beacons),
            orders_total=orders_total,
            startup_p50_ms=self.startup.quantiles_at(t, (0.5,))[0] if window[STARTUPS] else None,
            fast_start_ratio=_ratio(window[FAST_STARTS], window[STARTUPS]),
            slow_start_ratio=_ratio(window[SLOW_STARTS], window[STARTUPS]),
            startups=window[STARTUPS],
            **_recent_figures(sums, self.latency, t, self.recent, _RECENT),
        )
        cdns = {}
        for name, cdn in self.cdns.items():
            reading = cdn.read(t, self.recent)
            if reading is not None:
                cdns[name] = reading
        snapshot: dict[str, Any] = {
            "ts": t * self.step if self.step != 1 else t,
            "room_id": self.id,
            "metrics": metrics,
            "cdn": cdns,
            "show": None if show is None else self._show_figures(t, show),
        }
        return snapshot, (t, paying, viewers)

    def _breakdowns(self, t: int, paying: set) -> dict:
        """SPEC §8 at instant `t`: per dimension and value."""
        window, total = self.attr.at_instant(t)
        window, total = dict(window), dict(total)
        for key, n in self.first_window.items():
            window[key] = window.get(key, 0) + n
        first = self.first_starts
        for b in range(self.attr.frontier + 1, t + 1):  # the first starts after the frontier
            if b in first:
                self._fold_first_starts(b, window, total)
            if b - self.width in first:
                self._fold_first_starts(b - self.width, window, None, -1)
        interacting = self.interacting_by.counts_at(t)
        clicking = self.clicking_by.counts_at(t)
        # The clickers who also paid, per column: each payer's own clicking keys looked up (a
        # surge room has tens of thousands of clicking keys and far fewer payers).
        converted = self.clicking_by.count_users_among(paying, t) if paying else {}
        listed = {key // ATTR_STRIDE for key, value in window.items() if value} | \
            {key // ATTR_STRIDE for key, value in total.items() if value and key % ATTR_STRIDE == A_COVER} | \
            {c for c, n in interacting.items() if n} | {c for c, n in clicking.items() if n}
        by: dict[str, dict] = {dim: {} for dim in DIMENSIONS}
        names = column_names(self.regions) if listed else {}
        get_w, get_t = window.get, total.get
        for column in sorted(listed):
            key = column * ATTR_STRIDE
            viewers = get_t(key + A_COVER, 0)
            entries, ends = get_w(key + A_STARTS, 0), get_w(key + A_ENDS, 0)
            acting, clickers, orders = interacting.get(column, 0), clicking.get(column, 0), get_w(key + A_ORDERS, 0)
            if not (viewers or entries or ends or acting or clickers or orders):
                continue
            dim, value = names[column]
            gmv = get_w(key + A_GMV, 0) / MICRO
            by[dim][value] = {
                **presence_figures(viewers, entries, get_w(key + A_WATCH, 0), ends),
                "interaction_rate": _ratio(acting, viewers), "product_ctr": _ratio(clickers, viewers),
                "conversion_rate": _ratio(converted.get(column, 0), clickers),
                **sales_figures(orders, gmv, viewers),
            }
        return by

    def _products(self, t: int, viewers: int) -> dict:
        """SPEC §9 at instant `t`: the products with clickers, carters or orders in the window."""
        clicks = self.product_clicks.counts_at(t)
        carts = self.product_carts.counts_at(t)
        sums, _ = self.product_sums.at_instant(t)
        listed = {p for p, n in clicks.items() if n} | {p for p, n in carts.items() if n} | \
            {key[0] for key, value in sums.items() if value and key[1] == P_ORDERS}
        if not listed:
            return {}
        converted: dict[str, int] = {}
        payers = self.product_payers.members_at(t)
        if payers:  # (product, user) keys that clicked and paid, per product
            converted = Counter(map(_FIRST, self.product_clicks.active_among(payers, t)))
        products = {}
        for product in sorted(listed):
            clickers = clicks.get(product, 0)
            products[product] = {
                "clickers": clickers, "carts": carts.get(product, 0),
                "orders": sums.get((product, P_ORDERS), 0), "gmv": sums.get((product, P_GMV), 0) / MICRO,
                "ctr": _ratio(clickers, viewers), "conversion_rate": _ratio(converted.get(product, 0), clickers),
            }
        return products

    def _pending_totals(self, totals: dict | None, show, t: int) -> dict | None:
        """`totals` with the show's products, paid orders, refunds and spend held after the frontier up to
        instant `t`, so that a live snapshot's show totals equal the final ones once its events
        are in (SPEC §3)."""
        items = sorted((item for b in range(self.frontier + 1, t + 1) for item in self.held.get(b, ())
                        if item[1] == L.ORDER or (item[1] == L.SHOW and item[2].action == "spend")
                        or (item[1] == L.CLICK and item[5] is not None)),
                       key=_item_order)
        moment = t * self.step
        items = [item for item in items if show.start <= item[0] <= moment and
                 (show.ended_at is None or item[0] <= show.ended_at)]
        if not items:
            return totals
        totals = dict(totals) if totals is not None else {
            "start": show.start, "gmv": 0, "spend": 0, "orders": 0, "refunds": 0, "products": {}, "paid": {},
            "refunded": set()}
        products, paid, refunded = dict(totals["products"]), dict(totals["paid"]), set(totals["refunded"])
        for item in items:
            if item[1] == L.SHOW:
                totals["spend"] += round(item[2].amount * MICRO)
            elif item[1] == L.CLICK:  # a product clicked or carted: one of the show's products
                products.setdefault(item[5], 0)
            elif item[4] == "paid" and item[8]:
                totals["gmv"] += item[7]
                totals["orders"] += 1
                products[item[6]] = products.get(item[6], 0) + item[7]
                paid[item[5]] = item[6]
            elif item[4] == "refunded" and item[5] in paid and item[5] not in refunded:
                refunded.add(item[5])
                totals["refunds"] += 1
        totals.update(products=products, paid=paid, refunded=refunded)
        return totals

    def _show_figures(self, t: int, show) -> dict:
        """The room's show at `t`: its marks, what is pinned, and its totals so far (from the
        ledger: as of the final frontier)."""
        moment = t * self.step
        ended = show.ended_at if show.ended_at is not None and show.ended_at <= moment else None  # not before it
        totals = self.ledger.totals(show.start)  # the show's, going on or just over, as of the frontier
        if t > self.frontier:
            totals = self._pending_totals(totals, show, t)
        if totals is None:  # begun, and nothing of it settled or held yet
            totals = _NO_TOTALS
        gmv = totals["gmv"] / MICRO
        spend = totals["spend"] / MICRO
        products = totals["products"]  # product -> its show GMV (micro)
        shares = sorted(products.values(), reverse=True)
        window, _ = self.product_sums.at_instant(t)
        candidates = set(products) | {key[0] for key, value in window.items() if value and key[1] == P_GMV}
        ranked = sorted(candidates, key=lambda p: (-products.get(p, 0), -window.get((p, P_GMV), 0), p))
        return {"id": show.id, "start": show.start, "title": show.title, "ended_at": ended,
                "pinned": self.pinned_at(t, show), "gmv": gmv, "spend_total": spend,
                "refund_rate": _ratio(totals["refunds"], totals["orders"]),
                "top10_share": _ratio(sum(shares[:10]) / MICRO, gmv), "roi": _ratio(gmv, spend),
                "top_products": ranked[:10]}

