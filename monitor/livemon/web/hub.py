"""ControlRoomHub: the control room's view of all rooms, fed by every worker's step records.

Each worker publishes its step record (`{"worker", "now", "live": [...], "final": [...]}`) to
`liveroom.snapshots` and its alert, failover and incident records to `liveroom.alerts`. The hub reads
both topics without a consumer group (every worker's hub sees every partition, so each page shows
all rooms), keeps a short history per room for the charts, records final snapshots and records in
the RecordingStore, and wakes the page streams. It can also be fed in-process with `feed_step` and
`feed_alert`.
"""

from __future__ import annotations

import asyncio
import collections
import heapq
import logging
import math
import time
from array import array
from dataclasses import dataclass
from typing import Awaitable, Callable

import orjson

from livemon import catalogue
from livemon.alerting import targets as targets_of
from livemon.kafka_connection import KafkaConnection
from livemon.topics import ALERTS_TOPIC, OPERATOR_TOPIC, SNAPSHOTS_TOPIC, STEP_RECORD_HEADER

log = logging.getLogger(__name__)

ACTIONS = ("ack", "silence", "failover", "cancel_failover")

HISTORY_SECONDS = 600       # chart history kept per room
FEED_LENGTH = 300           # alert feed and failover history kept in memory
ROOM_GONE_SECONDS = 900     # a room with no live snapshot for this long leaves the grid
BACKFILL_SECONDS = 600      # on start, read this much of the topics back (charts, recording gap)
# The page is live: a fetch at the topic's end answers within this (Tansu waits it out even when
# records came), and the embedded broker's trim waits for fetches in flight before it cuts.
HUB_FETCH_WAIT_MS = 100
GRID_ROOMS = 100            # rooms in a grid (most online viewers first), plus those a viewer asks for
FRAME_CACHE = 256           # encoded frames kept per state version
RECORD_AFTER = 30           # snapshots with an audience before a room without a producer show is recorded
MIN_AUDIENCE = 2            # distinct viewers in the window for a snapshot to count towards RECORD_AFTER
BANNER_ALERTS = 20          # firing critical alerts listed in a grid frame (the banner); more are counted
MAX_TARGETS = 10_000        # room and show targets held (file and operators together)
MAX_MARKS = 50              # chart markers (pins, alerts, failovers) kept per room, newest last
PAGE_PROMOS = 20            # promotions of the show going on drawn on a room's charts, newest last
FUNNEL_STAGES = ("viewers", "stayed_60s", "clickers", "ordering", "buyers")   # SPEC §10 `funnel`
MARKED_FAILOVERS = ("taken", "pinned", "unpinned")   # failover decisions drawn on the charts


def target_metrics() -> dict[str, str]:
    """Targets a tile is measured against: target name -> the catalogue metric it applies to."""
    return {metric.target: metric.name for metric in catalogue.ROOM if metric.target}


# How far below its target a figure is amber rather than green, and red below that.
TARGET_AMBER = 0.8
SORT_KEYS = ("room_id", "alert", "gmv_progress")   # besides the tile metrics
ALERT_RANK = {"ok": 0, "pending": 1, "warning": 2, "critical": 3}

# The metrics a tile and the room charts show (the catalogue's); the full snapshot is kept as `latest`.
CHART_METRICS = catalogue.CHART_NAMES

Publish = Callable[[str, bytes, bytes], Awaitable[None]]   # (topic, key, value)


@dataclass(frozen=True)
class GridView:
    """What a grid reader asked for: sort, filter and page (hashable: frames are cached per view)."""
    sort: str = "online"
    desc: bool = True
    q: str = ""
    state: str = ""          # "" | "alert" | "critical"
    offset: int = 0


def producer_show(snap: dict) -> bool:
    """Whether the snapshot's show was started by the producer's `show` event. The engine names a
    show it opened itself at a room's first event `<room_id>-<start>`, without a title; a producer
    may use that same form, so a title also marks its show."""
    show = snap.get("show")
    if not show or not show.get("id") or show.get("start") is None:
        return False
    return bool(show.get("title")) or show["id"] != f"{snap['room_id']}-{int(show['start'])}"


def alert_identity(rec: dict) -> tuple:
    return rec.get("rule"), rec.get("room_id"), rec.get("cdn")


# ---- sales and start-up figures of a snapshot (SPEC §8, §9, §11), bounded for the page ------------
# A snapshot's `by` lists every value seen (a region per province or city, whatever the audience)
# and `products` every product with a click, cart or order in the window: frames carry a bounded,
# ranked cut of them, and only the room page's frame carries the breakdowns at all.
TOP_VALUES = 20             # values per breakdown dimension on the room page (sources, devices, ...)
TOP_REGIONS = 10            # regions on the room page
TOP_PRODUCTS = 20           # rows of the room page's product ranking
PAGE_CDNS = 16              # CDN readings in a room frame (a room is served by two or three)
TILE_STREAM = ("fast_start_ratio",)   # 秒开率 beside the stall ratio on a tile
PRODUCT_FIELDS = 12          # figures passed on per product
SHOW_FIELDS = ("id", "start", "title", "ended_at", "pinned", "gmv", "spend_total", "refund_rate",
               "top10_share", "roi")


def _count(value) -> float:
    return value if isinstance(value, (int, float)) and value == value else 0


def _ranked_values(values: dict, n: int) -> list[list]:
    """`[[value, figures], ...]` of one dimension: most viewers first (then GMV, then the value), at
    most `n` (a list: the order survives JSON in the browser, whatever the value's name)."""
    rows = [(v, f) for v, f in values.items() if isinstance(f, dict)]
    best = heapq.nsmallest(n, rows, key=lambda r: (-_count(r[1].get("viewers")), -_count(r[1].get("gmv")), str(r[0])))
    return [[v, f] for v, f in best]


def pinned_product(snap: dict) -> dict | None:
    """The product pinned at the snapshot's instant (讲解中) with its window figures (zeros when it
    had no click, cart or order in the window), or None."""
    show = snap.get("show")
    pinned = show.get("pinned") if isinstance(show, dict) else None
    if not pinned:
        return None
    figures = (snap.get("products") or {}).get(pinned)
    if not isinstance(figures, dict):   # quiet in the window: the catalogue's values of an absent product
        viewers = (snap.get("metrics") or {}).get("viewers")
        figures = {**{m.name: m.absent for m in catalogue.PRODUCT}, "carts": 0, "ctr": 0 if viewers else None}
    return {"product_id": pinned, **_figures(figures)}


def _figures(figures: dict) -> dict:
    """A product's window figures (SPEC §9: six of them; a few more at most are passed on)."""
    return dict(list(figures.items())[:PRODUCT_FIELDS])


def tile_sales(snap: dict) -> dict:
    """What a grid tile adds to its figures: the pinned product and the top traffic source."""
    sources = (snap.get("by") or {}).get("source") or {}
    top = _ranked_values(sources, 1) if isinstance(sources, dict) else []
    viewers = (snap.get("metrics") or {}).get("viewers")
    source = None
    if top and _count(top[0][1].get("viewers")):
        value, figures = top[0]
        source = {"source": value, "viewers": figures.get("viewers"),
                  "share": figures["viewers"] / viewers if viewers else None}
    return {"pinned": pinned_product(snap), "top_source": source}


def room_sales(snap: dict) -> dict:
    """The room page's breakdowns of the latest snapshot, bounded whatever the audience: per
    dimension the values with most viewers (TOP_REGIONS regions, TOP_VALUES of the others) and how
    many there were; the product ranking (the pinned product first, then by window GMV, orders,
    clickers; TOP_PRODUCTS rows) and how many products there were."""
    by = snap.get("by") if isinstance(snap.get("by"), dict) else {}
    dims = {dim: values for dim, values in by.items() if isinstance(values, dict)}
    products = snap.get("products") if isinstance(snap.get("products"), dict) else {}
    pinned = pinned_product(snap)
    rows = heapq.nsmallest(TOP_PRODUCTS, ((p, f) for p, f in products.items()
                                          if isinstance(f, dict) and (pinned is None or p != pinned["product_id"])),
                           key=lambda r: (-_count(r[1].get("gmv")), -_count(r[1].get("orders")),
                                          -_count(r[1].get("clickers")), str(r[0])))
    ranking = ([{**pinned, "pinned": True}] if pinned else []) + [
        {"product_id": p, **_figures(f), "pinned": False} for p, f in rows[:TOP_PRODUCTS - (1 if pinned else 0)]]
    return {"by": {dim: _ranked_values(values, TOP_REGIONS if dim == "region" else TOP_VALUES)
                   for dim, values in dims.items()},
            "by_count": {dim: len(values) for dim, values in dims.items()},
            "products": ranking, "products_count": len(products) + (1 if pinned and pinned["product_id"] not in products else 0)}


def page_snapshot(snap: dict | None) -> dict | None:
    """The latest snapshot as the room page reads it: its metrics, at most PAGE_CDNS CDN readings
    (most viewers first) and the show (its totals so far, the pinned product, the top products);
    the breakdowns and products go out cut by `room_sales`."""
    if snap is None:
        return None
    out = {k: snap.get(k) for k in ("ts", "room_id", "metrics")}
    cdns = snap.get("cdn") if isinstance(snap.get("cdn"), dict) else {}
    out["cdn"] = dict(_ranked_values(cdns, PAGE_CDNS)) if len(cdns) > PAGE_CDNS else cdns
    show = snap.get("show")
    out["show"] = ({**{k: show.get(k) for k in SHOW_FIELDS},
                    "top_products": list(show.get("top_products") or [])[:catalogue.TOP_PRODUCTS]}
                   if isinstance(show, dict) else show)
    return out


def show_funnel(summary: dict | None) -> dict | None:
    """The show's funnel (SPEC §10: viewers, stayed 60 s, clicked, ordered, paid) as its provisional
    summary has it: the figures are the engine's, the page only draws them."""
    if not isinstance(summary, dict) or not isinstance(summary.get("funnel"), list):
        return None
    return {"show_id": summary.get("show_id"), "start": summary.get("start"), "end": summary.get("end"),
            "stages": list(FUNNEL_STAGES), "counts": summary["funnel"][:len(FUNNEL_STAGES)]}


def room_marks(room: "Room", summary: dict | None) -> list[dict]:
    """The chart markers of a room, oldest first: pinned stretches, alert transitions and
    failovers it keeps, and the promotions of the show going on (its provisional summary's)."""
    marks = list(room.marks)
    promos = summary.get("promos") if isinstance(summary, dict) else None
    if isinstance(promos, list):
        for promo in promos[-PAGE_PROMOS:]:
            if isinstance(promo, dict) and isinstance(promo.get("start"), (int, float)):
                marks.append({"kind": "promo", "ts": promo["start"], "end": promo.get("end"),
                              "promo_id": promo.get("promo_id"), "promo_type": promo.get("promo_type"),
                              "product_id": promo.get("product_id")})
    return sorted(marks, key=lambda m: m["ts"])


# The per-CDN fields the room page charts (room.js `cdnCol`); the rest of a CDN reading is not kept.
CDN_CHART_METRICS = catalogue.CDN_CHART_NAMES
# A room keeps chart history for at most this many CDNs (rooms are served by two or three); a CDN
# beyond it is left out of the charts unless one of the others has been absent for the whole window,
# whose rings it then takes over. This bounds a room's history memory whatever the input says.
MAX_CDNS_PER_ROOM = 8

NAN = float("nan")
_EMPTY_RING = array("d", [NAN]) * HISTORY_SECONDS


def _number(value) -> float:
    """A metric value as a double; None (and anything not a number) is NaN, read back as None."""
    if value is None:
        return NAN
    try:
        return float(value)
    except (TypeError, ValueError):
        return NAN


def _value(x: float):
    return None if x != x else x   # NaN -> None (JSON null)


class CdnHistory:
    """One CDN's chart series in a room: a ring of doubles per field of CDN_CHART_METRICS, aligned
    with the room's timestamp ring, and whether the CDN was in the snapshot at each point."""
    __slots__ = ("series", "present")

    def __init__(self):
        self.series = [array("d", _EMPTY_RING) for _ in CDN_CHART_METRICS]
        self.present = bytearray(HISTORY_SECONDS)

    def write(self, i: int, reading) -> None:
        if isinstance(reading, dict):
            for ring, name in zip(self.series, CDN_CHART_METRICS):
                ring[i] = _number(reading.get(name))
        else:
            for ring in self.series:
                ring[i] = NAN
        self.present[i] = 1

    def clear(self, i: int) -> None:
        self.present[i] = 0


class Room:
    """The latest snapshot of a room and its chart history for the last HISTORY_SECONDS points.

    The history is preallocated, so its memory is flat from the first point: a ring of timestamps
    and one ring of doubles per CHART_METRICS series (NaN for a missing value), a write index and a
    count, and per CDN (allocated on first sight) a ring per CDN_CHART_METRICS field and a presence
    ring. About (len(CHART_METRICS) + 1) * HISTORY_SECONDS * 8 bytes per room, plus
    (len(CDN_CHART_METRICS) * 8 + 1) * HISTORY_SECONDS per CDN."""

    def __init__(self, room_id: str):
        self.room_id = room_id
        self.latest: dict | None = None
        self.seen = 0.0                       # wall clock of the last live snapshot
        self.worker: str | None = None
        self.ts = array("d", _EMPTY_RING)     # ring of point timestamps
        self.series = [array("d", _EMPTY_RING) for _ in CHART_METRICS]
        self.cdns: dict[str, CdnHistory] = {}
        self.head = 0                         # ring index the next new point is written to
        self.count = 0                        # points held, at most HISTORY_SECONDS
        # Chart markers, newest last: pinned stretches (from the live snapshots' `show.pinned`),
        # alert transitions and failovers; at most MAX_MARKS, none older than the chart history.
        self.marks: collections.deque = collections.deque(maxlen=MAX_MARKS)
        self.pinned: dict | None = None       # the open pinned stretch (one of `marks`)

    def add(self, snap: dict, worker: str | None, wall: float):
        ts = float(snap["ts"])                # before any write: a bad record leaves the rings as they were
        if self.latest is not None and ts < self.latest["ts"]:
            return   # an older provisional value (e.g. from the topic backfill) is superseded
        metrics = snap.get("metrics") or {}
        last = (self.head - 1) % HISTORY_SECONDS
        if self.count and self.ts[last] == ts:
            i = last                          # same second again: overwrite the last point
        else:
            i = self.head
            self.head = (i + 1) % HISTORY_SECONDS
            self.count = min(self.count + 1, HISTORY_SECONDS)
        self.ts[i] = ts
        for ring, name in zip(self.series, CHART_METRICS):
            ring[i] = _number(metrics.get(name))
        cdns = snap.get("cdn") or {}
        for name, history in self.cdns.items():
            if name not in cdns:
                history.clear(i)
        for name, reading in cdns.items():
            history = self.cdns.get(name) or self._new_cdn(name)
            if history is not None:
                history.write(i, reading)
        self.latest, self.seen, self.worker = snap, wall, worker
        show = snap.get("show")
        pinned = show.get("pinned") if isinstance(show, dict) else None
        pinned = pinned if isinstance(pinned, str) else None
        if (self.pinned and self.pinned["product_id"]) != pinned:
            if self.pinned is not None:
                self.pinned["end"] = ts
            self.pinned = None
            if pinned:
                self.pinned = {"kind": "pin", "ts": ts, "end": None, "product_id": pinned}
                self.mark(self.pinned)

    def mark(self, marker: dict) -> None:
        """Keep a chart marker: those that ended before the chart history go first, then (at
        MAX_MARKS) the oldest one other than the pinned stretch still going."""
        cutoff = (self.latest["ts"] if self.latest is not None else marker["ts"]) - HISTORY_SECONDS

        def gone(m):
            ended = m["end"] if m["kind"] == "pin" else m["ts"]
            return ended is not None and ended < cutoff
        if any(gone(m) for m in self.marks):
            self.marks = collections.deque((m for m in self.marks if not gone(m)), maxlen=MAX_MARKS)
        if len(self.marks) == MAX_MARKS:
            del self.marks[next(i for i, m in enumerate(self.marks) if m is not self.pinned)]
        self.marks.append(marker)

    def _new_cdn(self, name) -> CdnHistory | None:
        if len(self.cdns) < MAX_CDNS_PER_ROOM:
            history = self.cdns[name] = CdnHistory()
            return history
        for old, history in self.cdns.items():
            if 1 not in history.present:      # absent for the whole window: reuse its rings
                del self.cdns[old]
                self.cdns[name] = history
                return history
        return None

    def _indices(self, since: float | None = None) -> range:
        """Logical positions (0 = oldest point held) of the points newer than `since`."""
        start = (self.head - self.count) % HISTORY_SECONDS
        lo, hi = 0, self.count
        if since is not None:                 # timestamps rise along the ring: bisect
            while lo < hi:
                mid = (lo + hi) // 2
                if self.ts[(start + mid) % HISTORY_SECONDS] > since:
                    hi = mid
                else:
                    lo = mid + 1
        return range(lo, self.count)

    def points(self, since: float | None = None) -> list[list]:
        """`[ts, *CHART_METRICS]` per point, oldest first, None for a missing value."""
        start = (self.head - self.count) % HISTORY_SECONDS
        rings = (self.ts, *self.series)
        out = []
        for k in self._indices(since):
            i = (start + k) % HISTORY_SECONDS
            out.append([v if v == v else None for v in (ring[i] for ring in rings)])   # NaN -> None
        return out

    def cdn_points(self, since: float | None = None) -> list[dict]:
        """`{"ts", "cdn": {cdn: {field: value}}}` per point, with the CDNs present at that point."""
        start = (self.head - self.count) % HISTORY_SECONDS
        cdns = list(self.cdns.items())
        out = []
        for k in self._indices(since):
            i = (start + k) % HISTORY_SECONDS
            out.append({"ts": self.ts[i],
                        "cdn": {name: {field: _value(ring[i]) for field, ring in zip(CDN_CHART_METRICS, h.series)}
                                for name, h in cdns if h.present[i]}})
        return out

    def recent(self, name: str, n: int) -> list:
        """The last `n` values of one CHART_METRICS series, oldest first."""
        ring = self.series[CHART_METRICS.index(name)]
        n = min(n, self.count)
        return [_value(ring[(self.head - n + k) % HISTORY_SECONDS]) for k in range(n)]


class ControlRoomHub:
    def __init__(self, recorder=None, publish: Publish | None = None, *, clock=time.time,
                 record_after: int = RECORD_AFTER):
        self.recorder = recorder
        self.record_after = record_after
        self._recorded: set[str] = set()      # rooms whose final snapshots are recorded
        # Other rooms: (snapshots with an audience so far, the newest finals held back). Once the
        # room qualifies, what was held is recorded too: the show's review starts at its start.
        self._pending: dict[str, tuple[int, collections.deque]] = {}
        self.provisional: dict[str, dict] = {}   # room -> latest provisional summary of its show going on
        self._summarized: dict[str, float] = {}  # room -> start of its newest show with a final summary
        self.publish = publish
        self.clock = clock
        self.rooms: dict[str, Room] = {}
        self.active_alerts: dict[tuple, dict] = {}                        # identity -> last record
        self.alert_feed: collections.deque = collections.deque(maxlen=FEED_LENGTH)
        self.failovers: collections.deque = collections.deque(maxlen=FEED_LENGTH)
        self.incidents: dict[str, dict] = {}
        self.operator_log: collections.deque = collections.deque(maxlen=FEED_LENGTH)
        self.workers: dict[str, float] = {}                               # worker id -> wall clock
        self.version = 0
        self._changed = asyncio.Event()   # binds to the loop that first waits on it
        self._tasks: list[asyncio.Task] = []
        self._frames: dict[tuple, bytes] = {}
        self._frames_version = -1
        self.alerts_version = 0           # moves with every alert record: room frames resend lists then
        self.thresholds: dict[str, dict] = {}
        self.targets: dict[str, dict] = {"default": {}, "rooms": {}, "shows": {}}
        self._consumer = None
        self._producer = None
        self.broker_error: str | None = None
        self.outage: str | None = None    # set by the worker's watchdog while the broker is down
        self._closed_at = self._purged_at = self._swept_at = clock()
        # The worker this hub runs in, when it feeds its step records in process: (its key, the
        # broker time from which its step records on the topic are skipped as already read).
        self._local: tuple[bytes, int] | None = None

    # ---- feeding -------------------------------------------------------------------------------

    def feed_step(self, record: dict):
        """One worker step record: live snapshots for the page, final ones for the recording."""
        wall = self.clock()
        worker = record.get("worker")
        if worker is not None:
            self.workers[str(worker)] = wall
        for snap in record.get("live") or ():
            room = self.rooms.get(snap["room_id"]) or self.rooms.setdefault(snap["room_id"], Room(snap["room_id"]))
            room.add(snap, worker, wall)
        if record.get("summaries") or record.get("provisional"):
            self._feed_summaries(record, wall)
        if self.recorder is not None:
            finals = self._to_record(record.get("final") or ())
            if finals:
                self.recorder.write(snapshots=finals, wall=wall)
            self._maintain(wall, record.get("now"))
        if wall - self._swept_at >= 60:
            self._swept_at = wall
            self._forget_gone(wall)
        self._touch()

    def read_locally(self, worker: str):
        """This worker's step records come to `feed_step` in process from now on: skip them on the
        topic (those written before, e.g. by a previous run under the same id, are still read)."""
        self._local = (worker.encode(), int(self.clock() * 1000))

    def _read_already(self, message) -> bool:
        local = self._local
        return local is not None and message.key == local[0] and message.timestamp >= local[1] \
            and STEP_RECORD_HEADER in (message.headers or ())

    def _feed_summaries(self, record: dict, wall: float):
        """Show summaries (SPEC §10): those of ended shows into the recording (a room's show opens
        one there if the producer named it or the room is recorded; else only the room's recorded
        show of that start takes it), the provisional ones of shows going on kept per room."""
        for summary in record.get("summaries") or ():
            if not isinstance(summary, dict) or not isinstance(summary.get("room_id"), str) \
                    or not isinstance(summary.get("start"), (int, float)):
                continue
            room_id, start = summary["room_id"], summary["start"]
            if start >= self._summarized.get(room_id, start):
                self._summarized[room_id] = start
            going = self.provisional.get(room_id)
            if going is not None and going["start"] <= start:
                del self.provisional[room_id]   # that show is over
            if self.recorder is not None:
                self.recorder.write_summary(summary, wall, open_show=bool(summary.get("show_id"))
                                            or room_id in self._recorded)
        for summary in record.get("provisional") or ():
            if isinstance(summary, dict) and isinstance(summary.get("room_id"), str) \
                    and isinstance(summary.get("start"), (int, float)) \
                    and summary["start"] > self._summarized.get(summary["room_id"], -math.inf):
                self.provisional[summary["room_id"]] = summary

    def _to_record(self, finals) -> list[dict]:
        """The final snapshots to record. A room is recorded from the start of a producer's show, or
        already has an open show in the recording (a restart), or else once RECORD_AFTER of its
        snapshots had an audience of MIN_AUDIENCE viewers: one-off room ids (a flood of junk
        beacons) never open a show. The last RECORD_AFTER finals of a room not yet recorded are
        held back and recorded when it qualifies, so its review starts at its first instant."""
        out = []
        for snap in finals:
            room_id = snap["room_id"]
            if room_id in self._recorded:
                out.append(snap)
                continue
            first = room_id not in self._pending
            audience, held = self._pending.get(room_id) or (0, collections.deque(maxlen=self.record_after))
            if producer_show(snap) or (first and self.recorder.has_open_show(room_id)):
                qualified = True
            else:
                audience += ((snap.get("metrics") or {}).get("viewers") or 0) >= MIN_AUDIENCE
                qualified = audience >= self.record_after
            held.append(snap)
            if not qualified:
                self._pending[room_id] = (audience, held)
                continue
            out.extend(held)
            self._recorded.add(room_id)
            self._pending.pop(room_id, None)
        return out

    def _maintain(self, wall: float, now_ts):
        # Once a minute end the shows of rooms silent past the idle timeout; once an hour apply
        # the retention.
        if wall - self._closed_at >= 60 and now_ts is not None:
            self._closed_at = wall
            self.recorder.close_idle(float(now_ts))
        if wall - self._purged_at >= 3600:
            self._purged_at = wall
            self.recorder.purge(wall)

    def _forget_gone(self, wall: float):
        # Rooms without a live snapshot for ROOM_GONE_SECONDS leave the grid: drop their history too.
        cutoff = wall - ROOM_GONE_SECONDS
        for room_id in [r for r, room in self.rooms.items() if room.seen < cutoff]:
            del self.rooms[room_id]
            self._recorded.discard(room_id)
            self._pending.pop(room_id, None)
        for held in (self.provisional, self._summarized):
            for room_id in [r for r in held if r not in self.rooms]:
                del held[room_id]

    def feed_alert(self, rec: dict):
        """An alert transition, failover decision or incident update from the alerting service."""
        kind = rec.get("kind") or "alert"
        if kind == "alert":
            ident = alert_identity(rec)
            if rec.get("state") in ("resolved", "inactive"):   # inactive: a pending one that cleared
                self.active_alerts.pop(ident, None)
            else:
                previous = self.active_alerts.get(ident, {})
                merged = dict(rec)
                for flag in ("acknowledged", "acknowledged_by", "silenced_until"):
                    if flag in previous and flag not in merged:
                        merged[flag] = previous[flag]
                self.active_alerts[ident] = merged
            self.alert_feed.appendleft(rec)
            room = self.rooms.get(rec.get("room_id"))
            if room is not None and rec.get("state") in ("firing", "resolved") and isinstance(rec.get("ts"), (int, float)):
                room.mark({"kind": "alert", "ts": rec["ts"], "state": rec["state"], "rule": rec.get("rule"),
                           "cdn": rec.get("cdn"), "severity": rec.get("severity")})
        elif kind == "failover":
            self.failovers.appendleft(rec)
            room = self.rooms.get(rec.get("room_id"))
            if room is not None and rec.get("decision") in MARKED_FAILOVERS and isinstance(rec.get("ts"), (int, float)):
                room.mark({"kind": "failover", "ts": rec["ts"], "decision": rec["decision"],
                           "from_cdn": rec.get("from_cdn"), "to_cdn": rec.get("to_cdn")})
        elif kind == "incident":
            if rec.get("id") is not None:
                self.incidents[str(rec["id"])] = rec
            if rec.get("acked_ts") is not None:
                self._mark(rec, acknowledged=True, acknowledged_by=rec.get("acked_by"))
        elif kind == "silence":
            self._mark(rec, silenced_until=rec.get("until"))
        elif kind == "operator":
            self.operator_log.appendleft(rec)
            self._apply_operator(rec)
        if self.recorder is not None and rec.get("room_id"):
            self.recorder.write(records=[rec], wall=self.clock())
        self.alerts_version += 1
        self._touch()

    def _apply_operator(self, rec: dict):
        # Show an acknowledgement or silence at once; the alerting service's own records follow.
        if rec["action"] == "ack":
            self._mark(rec, acknowledged=True, acknowledged_by=rec.get("by"))
        elif rec["action"] == "silence":
            self._mark(rec, silenced_until=rec["ts"] + float(rec.get("duration") or 3600))

    def _mark(self, rec: dict, **flags):
        """Set flags on the active alerts a record names (a missing rule or CDN matches any)."""
        for (rule, room_id, cdn), alert in self.active_alerts.items():
            if room_id == rec.get("room_id") and rec.get("rule") in (None, "", rule) \
                    and rec.get("cdn") in (None, "", cdn):
                alert.update(flags)

    def _touch(self):
        self.version += 1
        self._changed.set()

    async def wait_change(self, version: int, timeout: float) -> int:
        """Wait until the state is newer than `version` or `timeout` passes; returns the version."""
        if self.version == version:
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), timeout)
            except asyncio.TimeoutError:
                pass
        return self.version

    # ---- control actions -----------------------------------------------------------------------

    async def act(self, action: dict) -> dict:
        """Publish an operator action to `liveroom.operator` for the owning worker's alerting."""
        if self.publish is None:
            raise RuntimeError("no producer to publish control actions")
        record = {"action": action["action"], "room_id": action["room_id"], "rule": action.get("rule"),
                  "cdn": action.get("cdn"), "to_cdn": action.get("to_cdn"), "by": action.get("by"),
                  "ts": self.clock()}
        if action.get("duration") is not None:
            record["duration"] = action["duration"]
        await self.publish(OPERATOR_TOPIC, record["room_id"].encode(), orjson.dumps(record))
        self.feed_alert({"kind": "operator", **record})
        return record

    # ---- views for the page --------------------------------------------------------------------

    def room_alert_state(self, room_id: str) -> str:
        """'critical' | 'warning' | 'pending' | 'ok': the worst active alert of the room."""
        return self._alert_states().get(room_id, "ok")

    def _alert_states(self) -> dict[str, str]:
        """The worst active, unsilenced alert of every room with one (one pass over the alerts)."""
        now = self.clock()
        states: dict[str, str] = {}
        for (_, room, _), rec in self.active_alerts.items():
            if (rec.get("silenced_until") or 0) > now:
                continue
            level = "pending" if rec.get("state") == "pending" else (
                "critical" if rec.get("severity") in ("critical", "page") else "warning")
            if ALERT_RANK[level] > ALERT_RANK[states.get(room, "ok")]:
                states[room] = level
        return states

    def critical_alerts(self) -> list[dict]:
        """Firing critical alerts nobody has acknowledged or silenced yet: the grid's banner."""
        now = self.clock()
        return [rec for rec in self.active_alerts.values()
                if rec.get("state") == "firing" and rec.get("severity") in ("critical", "page")
                and not rec.get("acknowledged") and (rec.get("silenced_until") or 0) <= now]

    # ---- thresholds and targets -----------------------------------------------------------------

    def set_thresholds(self, thresholds: dict[str, dict]) -> None:
        """Colour lines per room metric, from the alert rules: `{metric: {"op", "warn", "crit",
        "rule", "severity"}}` (see server.rule_thresholds)."""
        self.thresholds = dict(thresholds)
        self._touch()

    def tile_names(self) -> tuple[str, ...]:
        """What a tile carries: the catalogue's tile metrics, then those with a colour line."""
        extra = [m for m in (*TILE_STREAM, *self.thresholds, *target_metrics().values()) if m in catalogue.BY_NAME]
        return tuple(dict.fromkeys((*catalogue.TILE_NAMES, *extra)))

    def set_targets(self, targets: dict) -> None:
        """Replace every target: `{"default": {...}, "rooms": {room: {...}}, "shows": {key: {...}}}`."""
        self.targets = {"default": dict(targets.get("default") or {}),
                        "rooms": dict(targets.get("rooms") or {}), "shows": dict(targets.get("shows") or {})}
        self._touch()

    def set_target(self, room_id: str, show: str | None, values: dict, by: str | None = None) -> dict:
        """An operator's target for a room, or for one show of it (`show` = the show id): the given
        fields replace the held ones, a None removes one. Returns the target now held. With `by`
        (the operator's name) the change goes into the operator log and the recording."""
        table, key = (self.targets["shows"], f"{room_id}.{show}") if show else (self.targets["rooms"], room_id)
        held = dict(table.get(key) or {})
        for name, value in values.items():
            if value is None:
                held.pop(name, None)
            else:
                held[name] = value
        if held:
            if key not in table and len(self.targets["rooms"]) + len(self.targets["shows"]) >= MAX_TARGETS:
                raise ValueError(f"at most {MAX_TARGETS} targets")
            table[key] = held
        else:
            table.pop(key, None)
        if by is not None:
            self.feed_alert({"kind": "operator", "action": "target", "room_id": room_id, "show": show,
                             "target": values, "by": by, "ts": self.clock()})
        self._touch()
        return held

    def target_of(self, snap: dict) -> dict:
        """The targets a room's current show is measured against: the show's over the room's over the
        default ones."""
        return targets_of.target_of(self.targets, snap)

    def levels(self, snap: dict, target: dict) -> tuple[dict[str, str], float | None]:
        """Per metric 'ok' | 'warn' | 'bad' from the rule thresholds and the targets (the worse of
        both), and the show's GMV as a share of its target."""
        m = snap.get("metrics") or {}
        out: dict[str, str] = {}

        def worse(name, level):
            rank = ("ok", "warn", "bad")
            if rank.index(level) >= rank.index(out.get(name, "ok")):
                out[name] = level
        for name, line in self.thresholds.items():
            value = m.get(name)
            if value is None:
                continue
            past = (lambda limit: value > limit) if line["op"] in (">", ">=") else (lambda limit: value < limit)
            worse(name, "bad" if past(line["crit"]) else "warn" if line.get("warn") is not None and past(line["warn"]) else "ok")
        names = target_metrics()
        for field in ("online", "conversion"):
            metric = names.get(field)
            goal, value = target.get(field), m.get(metric)
            if goal and value is not None:
                worse(metric, "ok" if value >= goal else "warn" if value >= goal * TARGET_AMBER else "bad")
        progress = None
        goal, gmv = target.get("gmv"), m.get(names.get("gmv"))
        if goal and gmv is not None:
            progress = gmv / goal
            _, pace = targets_of.pace(snap, target)  # against the share of the planned show gone by
            if pace is not None:
                worse(names["gmv"], "ok" if pace >= 1 else "warn" if pace >= TARGET_AMBER else "bad")
            else:
                # No planned length: reached is green, half way amber.
                worse(names["gmv"], "ok" if progress >= 1 else "warn" if progress >= 0.5 else "bad")
        return out, progress

    def live_rooms(self) -> list[Room]:
        cutoff = self.clock() - ROOM_GONE_SECONDS
        return [room for room in self.rooms.values() if room.latest is not None and room.seen >= cutoff]

    def _tile(self, room: Room, states: dict, counts: collections.Counter, names: tuple, spark: bool) -> dict:
        m = room.latest.get("metrics") or {}
        target = self.target_of(room.latest)
        levels, progress = self.levels(room.latest, target)
        show = room.latest.get("show")
        tile = {"room_id": room.room_id, "ts": room.latest["ts"], "worker": room.worker,
                "show": {k: show.get(k) for k in ("id", "start", "title")} if isinstance(show, dict) else None,
                "metrics": {k: m.get(k) for k in names},
                "alert": states.get(room.room_id, "ok"), "alerts": counts[room.room_id],
                "target": target or None, "levels": levels, "gmv_progress": progress, **tile_sales(room.latest)}
        if spark:   # the JSON API's first load; stream frames carry the latest values only
            tile["spark"] = room.recent("online", 120)
        return tile

    def grid(self, limit: int = GRID_ROOMS, extra: tuple[str, ...] = (), view: GridView | None = None,
             spark: bool = True) -> dict:
        """One page of the live rooms: filtered by `view.q` (in the room id or show title) and
        `view.state` ('alert': any active alert, 'critical'), sorted by `view.sort` (a tile metric,
        'room_id', 'alert' or 'gmv_progress'; rooms without the figure last), at most `limit` from
        `view.offset`; plus the `extra` rooms asked for. The default view: most online first.
        `total_rooms` counts every live room, `matched` those the filter keeps."""
        view = view or GridView()
        states = self._alert_states()
        names = self.tile_names()
        live = self.live_rooms()
        total = len(live)
        if view.q:
            q = view.q.casefold()
            live = [room for room in live if q in room.room_id.casefold()
                    or q in str(((room.latest.get("show") or {}).get("title")) or "").casefold()]
        if view.state == "alert":
            live = [room for room in live if room.room_id in states]
        elif view.state == "critical":
            live = [room for room in live if states.get(room.room_id) == "critical"]
        rank = self._rank(view, states)
        backwards = view.sort == "room_id" and view.desc
        if backwards:
            chosen = sorted(live, key=rank, reverse=True)[view.offset:view.offset + limit]
        else:
            chosen = heapq.nsmallest(view.offset + limit, live, key=rank)[view.offset:]
        shown = {room.room_id for room in chosen}
        cutoff = self.clock() - ROOM_GONE_SECONDS
        for room_id in extra:
            room = self.rooms.get(room_id)
            if room is not None and room_id not in shown and room.latest is not None and room.seen >= cutoff:
                chosen.append(room)
        chosen.sort(key=rank, reverse=backwards)
        counts = collections.Counter(r for (_, r, _) in self.active_alerts)
        critical = self.critical_alerts()
        return {"version": self.version, "now": self.clock(),
                "rooms": [self._tile(room, states, counts, names, spark) for room in chosen],
                "total_rooms": total,
                "matched": len(live), "offset": view.offset, "limit": limit,
                "sort": view.sort, "desc": view.desc, "workers": sorted(self.workers),
                "broker_error": self.broker_error or self.outage, "alerts_active": len(self.active_alerts),
                "critical": [{k: a.get(k) for k in ("room_id", "rule", "cdn", "summary", "ts", "value")}
                             for a in sorted(critical, key=lambda a: -(a.get("ts") or 0))[:BANNER_ALERTS]],
                "critical_count": len(critical)}

    def _rank(self, view: GridView, states: dict):
        """The sort key of a room in `view`: rooms without the figure go last either way."""
        sign = -1 if view.desc else 1

        def rank(room):
            if view.sort == "room_id":
                return (0, 0, room.room_id)   # descending: the caller reverses (strings do not negate)
            if view.sort == "alert":
                value = ALERT_RANK[states.get(room.room_id, "ok")]
            elif view.sort == "gmv_progress":
                goal = self.target_of(room.latest).get("gmv")
                gmv = (room.latest.get("metrics") or {}).get(target_metrics().get("gmv"))
                value = gmv / goal if goal and gmv is not None else None
            else:
                value = (room.latest.get("metrics") or {}).get(view.sort)
            if not isinstance(value, (int, float)) or value != value:
                return (1, 0, room.room_id)
            return (0, sign * value, room.room_id)
        return rank

    def _cached(self, key: tuple, build: Callable[[], bytes]) -> bytes:
        """Encoded frames, built once per state version and shared by every reader asking the same."""
        if self._frames_version != self.version:
            self._frames.clear()
            self._frames_version = self.version
        frame = self._frames.get(key)
        if frame is None:
            frame = build()
            if len(self._frames) < FRAME_CACHE:   # distinct requests beyond it are built, not kept
                self._frames[key] = frame
        return frame

    def grid_json(self, limit: int = GRID_ROOMS, extra: tuple[str, ...] = (), view: GridView | None = None) -> bytes:
        return self._cached(("grid", limit, extra, view), lambda: orjson.dumps(self.grid(limit, extra, view)))

    def grid_frame(self, limit: int = GRID_ROOMS, extra: tuple[str, ...] = (), view: GridView | None = None) -> bytes:
        """The `grid` server-sent event: the page's tiles with their latest values only (no history),
        so a frame stays about `limit` times a few hundred bytes whatever the show's length."""
        return self._cached(("grid-event", limit, extra, view),
                            lambda: b"event: grid\ndata: " + orjson.dumps(self.grid(limit, extra, view, False)) + b"\n\n")

    def room_frame(self, room_id: str, since: float | None, lists: bool = True) -> tuple[bytes | None, float | None]:
        """The `room` server-sent event with the points newer than `since`, and the newest point's
        time (the reader's next `since`); (None, since) for an unknown room. The alert, failover,
        incident and operator lists only with `lists` (the reader asks for them when
        `alerts_version` moved). Readers of a room that are in step ask with the same `since`, so
        they share one encoding."""
        room = self.rooms.get(room_id)
        if room is None:
            return None, since
        newest = room.ts[(room.head - 1) % HISTORY_SECONDS] if room.count else None
        newest = since if newest is None or (since is not None and newest <= since) else newest
        frame = self._cached(("room", room_id, since, lists),
                             lambda: b"event: room\ndata: " + orjson.dumps(self.room_view(room_id, since, lists)) + b"\n\n")
        return frame, newest

    def room_view(self, room_id: str, since: float | None = None, lists: bool = True) -> dict | None:
        room = self.rooms.get(room_id)
        if room is None:
            return None
        view = {"version": self.version, "room_id": room_id, "latest": page_snapshot(room.latest),
                "sales": room_sales(room.latest) if room.latest is not None else None, "worker": room.worker,
                "alert": self.room_alert_state(room_id),
                "columns": ["ts", *CHART_METRICS], "points": room.points(since),
                "cdn_points": room.cdn_points(since), "funnel": show_funnel(self.provisional.get(room_id)),
                "marks": room_marks(room, self.provisional.get(room_id))}
        if not lists:
            return view
        return {**view, "alerts_active": [a for (r_, room_, c_), a in self.active_alerts.items() if room_ == room_id],
                "alert_feed": [a for a in self.alert_feed if a.get("room_id") == room_id][:100],
                "failovers": [f for f in self.failovers if f.get("room_id") == room_id][:100],
                "incidents": [i for i in self.incidents.values() if i.get("room_id") == room_id][-50:],
                "operator": [o for o in self.operator_log if o.get("room_id") == room_id][:50]}

    def alerts_view(self) -> dict:
        return {"active": list(self.active_alerts.values()), "feed": list(self.alert_feed)[:200],
                "failovers": list(self.failovers)[:200]}

    # ---- Kafka ---------------------------------------------------------------------------------

    async def start(self, bootstrap_servers: str | KafkaConnection, *, backfill: float = BACKFILL_SECONDS):
        """Consume `liveroom.snapshots` and `liveroom.alerts` from `backfill` seconds back (or from
        the recording's last write, whichever is older, so a restart leaves no gap in the recording),
        and publish control actions with a producer of its own unless one was given. Returns at once:
        the connection is made, and remade, in the background, so a broker that is down delays the
        page's data but never the worker's start."""
        start_wall = self.clock() - backfill
        if self.recorder is not None and self.recorder.last_write():
            start_wall = min(start_wall, self.recorder.last_write() - 5)
        if self.publish is None:
            self.publish = self._publish_via_own_producer
        self._bootstrap = KafkaConnection.of(bootstrap_servers)
        self._tasks.append(asyncio.create_task(self._consume(self._bootstrap, start_wall)))

    async def _publish_via_own_producer(self, topic, key, value):
        from aiokafka import AIOKafkaProducer

        if self._producer is None:
            producer = AIOKafkaProducer(**self._bootstrap.aiokafka_kwargs(), request_timeout_ms=10000)
            try:
                await producer.start()
            except Exception:
                await producer.stop()
                raise
            self._producer = producer
        await self._producer.send_and_wait(topic, value, key=key)

    async def _assign(self, start_wall: float):
        from aiokafka import TopicPartition

        parts = []
        for topic in (SNAPSHOTS_TOPIC, ALERTS_TOPIC):
            for p in self._consumer.partitions_for_topic(topic) or ():
                parts.append(TopicPartition(topic, p))
        if not parts:
            return False
        self._consumer.assign(parts)
        try:
            offsets = await self._consumer.offsets_for_times({tp: int(start_wall * 1000) for tp in parts})
        except Exception as error:   # a broker without timestamp lookup: read from the end
            log.info("no offset lookup by time (%s); reading from the end", error)
            offsets = {}
        ends = await self._consumer.end_offsets(parts)
        for tp in parts:
            found = offsets.get(tp)
            self._consumer.seek(tp, found.offset if found is not None else ends[tp])
        return True

    async def _consume(self, bootstrap_servers: KafkaConnection, start_wall: float):
        from aiokafka import AIOKafkaConsumer

        # The broker may be down and the topics may not exist yet (the page starts before the first
        # worker): retry until both are there.
        while True:
            try:
                if self._consumer is None:
                    self._consumer = AIOKafkaConsumer(**bootstrap_servers.aiokafka_kwargs(), group_id=None,
                                                      enable_auto_commit=False, auto_offset_reset="latest",
                                                      fetch_max_wait_ms=HUB_FETCH_WAIT_MS)
                    await self._consumer.start()
                await self._consumer.topics()
                if await self._assign(start_wall):
                    break
                self.broker_error = "waiting for the topics"
            except asyncio.CancelledError:
                raise
            except Exception as error:
                self.broker_error = f"{type(error).__name__}: {error}"
                if self._consumer is not None:
                    await self._consumer.stop()
                    self._consumer = None
            self._touch()
            await asyncio.sleep(1.0)
        self.broker_error = None
        while True:
            try:
                batches = await self._consumer.getmany(timeout_ms=500, max_records=2000)
                if self.broker_error:
                    self.broker_error = None
                    self._touch()
            except asyncio.CancelledError:
                raise
            except Exception as error:
                self.broker_error = f"{type(error).__name__}: {error}"
                log.warning("control room consumer: %s", self.broker_error)
                self._touch()
                await asyncio.sleep(1.0)
                continue
            for tp, messages in batches.items():
                for message in messages:
                    if not self._read_already(message):
                        self._handle(tp.topic, message.value)

    def _handle(self, topic: str, value: bytes):
        try:
            data = orjson.loads(value or b"")  # None: a tombstone or an unreadable batch
        except orjson.JSONDecodeError:
            log.warning("undecodable record on %s", topic)
            return
        try:
            if topic == SNAPSHOTS_TOPIC and isinstance(data, dict):
                self.feed_step(data)
            elif topic == ALERTS_TOPIC:
                for rec in data if isinstance(data, list) else [data]:
                    if isinstance(rec, dict):
                        self.feed_alert(rec)
        except Exception:   # one malformed record must not stop the page or the recording
            log.exception("bad record on %s", topic)

    async def stop(self):
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            try:
                await task
            except (asyncio.CancelledError, Exception):
                pass
        self._tasks.clear()
        if self._consumer is not None:
            await self._consumer.stop()
        if self._producer is not None:
            await self._producer.stop()
        close = getattr(self.recorder, "close_writer", None)
        if close is not None:  # a recording written from its own thread: what is queued is written
            await asyncio.to_thread(close)

