"""The traffic generator: live rooms full of simulated viewers, as a pure function of its inputs.

No I/O and no clock: given the scenarios, rooms, seed, start time, duration and rate, it yields the
same messages, byte for byte, every time. Time advances in ticks of one second of event time; each
tick's events are sorted by `ts` and packed into batch envelopes per (topic, room), as client SDKs
and edge collectors send them. The Kafka edge (`cli.py`) paces and sends them, and feeds failover
commands back in through `Simulation.apply_failover`.

The rate sets the size of the audience: each viewer sends about `per_viewer_rate()` events a
second (heartbeats, health beacons, chat, clicks), so a room holds `rate * share / that` viewers.
Scenario episodes (a surge, an outage) change behaviour, and therefore the rate, while they last.
"""

from __future__ import annotations

import math
import random
import re
from collections import deque
from collections.abc import Iterator
from typing import NamedTuple

from livemon.ingest.events import (LATE, TOPIC_OF_TYPE, AnyEvent, Click, Danmaku, Health,
                                   Order, Show, View, encode)

from .badinput import Bad, make_bad
from .player import BuiltinNetwork, Player, TraceNetwork
from .scenarios import FaultWindow, parse_scenarios
from .traces import Trace

TICK = 1.0
CDN_POOL = ("cdn-a", "cdn-b", "cdn-c")
CDN_SPLIT = (0.7, 0.2, 0.1)  # a multi-CDN room spreads its viewers; cdn-a is the primary
HEARTBEAT_EVERY = (10.0, 20.0)
OPENING = 15.0  # seconds in which the audience of a starting show arrives
# Watching time is a mix: bouncers, regular viewers, fans who stay (mean about 6 minutes).
WATCH_MIX = ((0.35, 30.0), (0.45, 240.0), (0.20, 1200.0))
VANISH_SHARE = 0.15  # viewers who close the app without a `leave`: presence has to time out
RETURN_SHARE = 0.08  # arrivals who are earlier viewers coming back
PRESENTATION_EVERY = (150.0, 240.0)  # the host presents the next product ("上链接")
PRESENTATION_BUZZ = 45.0             # seconds of extra clicks and chat after that

# Per viewer per second, outside any presentation or episode.
DANMAKU_RATE = 1 / 100
LIKE_RATE = 1 / 60
SHARE_RATE = 1 / 1500
FOLLOW_RATE = 1 / 1500
PRODUCT_CLICK_RATE = 1 / 400

SOURCES = (("organic", 35), ("follow", 20), ("paid", 20), ("social", 10), ("search", 10),
           ("other", 5))
DEVICES = (("mobile", 85), ("pc", 10), ("tv", 3), ("other", 2))
REGIONS = (("guangdong", 14), ("zhejiang", 10), ("jiangsu", 9), ("shandong", 8), ("henan", 7),
           ("sichuan", 6), ("shanghai", 6), ("beijing", 5), ("hubei", 5), ("fujian", 5),
           ("hunan", 5), ("other", 20))
PRICES = (9.9, 19.9, 29.9, 39.0, 59.0, 69.0, 99.0, 129.0, 199.0, 299.0, 399.0, 599.0)
CHAT = ("666", "好看", "上链接", "多少钱", "已拍", "主播好美", "有优惠券吗", "还有货吗", "包邮吗",
        "尺码怎么选", "冲冲冲", "来了来了", "什么时候开抢", "抢到了", "没抢到", "再上一波",
        "画面卡了", "nice", "wow", "求讲解")
STORM_THROUGHPUT = 0.1  # share of throughput left to every viewer in a stall storm
CDN_ERRORS = ("ERR_CDN_5XX", "ERR_SEGMENT_TIMEOUT", "ERR_CONNECTION_RESET")


class Message(NamedTuple):
    """One Kafka message: where it goes, its bytes, and what the monitor should make of it."""

    topic: str
    key: str                 # the room id
    value: bytes
    events: tuple            # the events of `value` the monitor should accept, in order
    rejected: tuple = ()     # (reason, raw bytes) of the deliberate bad input in `value`


def _weighted(pairs):
    names, weights = zip(*pairs)
    return names, list(weights)


_SOURCES, _DEVICES, _REGIONS = _weighted(SOURCES), _weighted(DEVICES), _weighted(REGIONS)


def poisson(rng: random.Random, lam: float) -> int:
    if lam <= 0:
        return 0
    if lam > 30:  # normal approximation; exact sampling costs O(lam)
        return max(0, round(rng.gauss(lam, math.sqrt(lam))))
    limit, k, p = math.exp(-lam), 0, rng.random()
    while p > limit:
        k += 1
        p *= rng.random()
    return k


class Viewer:
    __slots__ = ("user_id", "enter_t", "device", "cdn", "player", "heartbeat_every", "leave_at",
                 "sends_leave", "gone", "index", "followed")

    def __init__(self, user_id, enter_t, device, cdn, player, heartbeat_every, leave_at, sends_leave):
        self.user_id = user_id
        self.enter_t = enter_t
        self.device = device
        self.cdn = cdn
        self.player = player
        self.heartbeat_every = heartbeat_every
        self.leave_at = leave_at
        self.sends_leave = sends_leave
        self.gone = False
        self.index = -1
        self.followed = False


class Room:
    def __init__(self, sim: "Simulation", index: int, room_id: str, share: float):
        self.sim = sim
        self.index = index
        self.room_id = room_id
        self.rng = random.Random(f"{sim.seed}:{room_id}")
        self.audience = sim.rate * share / sim.per_viewer_rate()
        self.present: list[Viewer] = []
        self.departed: deque[str] = deque(maxlen=500)
        self.agenda: dict[int, list] = {}
        self.next_user = 0
        self.next_order = 0
        self.cdn_weights = dict(zip(CDN_POOL, CDN_SPLIT))
        rng = self.rng
        self.products = [(f"sku-{index}-{rng.randrange(10000, 99999)}", rng.choice(PRICES))
                         for _ in range(rng.randrange(6, 11))]
        self.featured = 0
        self.next_presentation = 0.0
        self.presented_at = -1e9

    # -- scheduling ---------------------------------------------------------------------------
    def at(self, t: float, kind: str, payload) -> None:
        """Do `kind` at sim time `t` (never within a tick already processed)."""
        tick = int(t // TICK)
        if tick <= self.sim.tick:
            tick = self.sim.tick + 1
            t = max(t, tick * TICK)
        self.agenda.setdefault(tick, []).append((t, kind, payload))

    def emit(self, t: float, event: AnyEvent) -> None:
        self.sim.out.append((t, event))

    def ts(self, t: float) -> float:
        return round(self.sim.start + t, 3)

    # -- one tick -------------------------------------------------------------------------------
    def run_tick(self, t: float) -> None:
        sim, rng = self.sim, self.rng
        if t >= self.next_presentation:
            self.featured = rng.randrange(len(self.products))
            self.presented_at = t
            self.next_presentation = t + rng.uniform(*PRESENTATION_EVERY)
        surge = sim.episode("surge", t)
        arrivals = self.audience / self.sim.mean_watch * (4.0 if surge else 1.0)
        for _ in range(poisson(rng, arrivals * TICK)):
            self.arrive(t + rng.random() * TICK)
        if t < OPENING:  # the show opens: its audience rushes in
            for _ in range(poisson(rng, self.audience / OPENING * TICK)):
                self.arrive(t + rng.random() * TICK, opening=True)
        for when, kind, payload in sorted(self.agenda.pop(sim.tick, ()), key=lambda e: e[0]):
            getattr(self, "do_" + kind)(when, payload)
        self.interact(t, surge)

    def arrive(self, t: float, opening: bool = False) -> None:
        rng = self.rng
        user_id = None
        if self.departed and rng.random() < RETURN_SHARE:
            user_id = self.departed.popleft()
        if user_id is None:
            self.next_user += 1
            user_id = f"u{self.index}-{self.next_user}"
        device = rng.choices(*_DEVICES)[0]
        cdn = rng.choices(list(self.cdn_weights), list(self.cdn_weights.values()))[0]
        network = (TraceNetwork(rng, self.sim.traces) if self.sim.traces
                   else BuiltinNetwork(rng, device))
        player = Player(network, target_latency=rng.uniform(2.0, 4.0), connect=rng.uniform(0.15, 0.6))
        # Those who come at the opening are the show's audience at its steady state: the longer
        # watchers are overrepresented among them (length bias), so the audience holds steady.
        share, mean = rng.choices(WATCH_MIX, [w * (m if opening else 1.0) for w, m in WATCH_MIX])[0]
        viewer = Viewer(user_id, t, device, cdn, player, rng.uniform(*HEARTBEAT_EVERY),
                        t + rng.expovariate(1 / mean), rng.random() >= VANISH_SHARE)
        viewer.index = len(self.present)
        self.present.append(viewer)
        self.emit(t, View(self.room_id, user_id, self.ts(t), "enter",
                          source=rng.choices(*_SOURCES)[0], device=device,
                          region=rng.choices(*_REGIONS)[0]))
        self.at(t + viewer.heartbeat_every, "heartbeat", viewer)
        self.at(t + rng.uniform(0.2, 1.0) * self.sim.beacon_interval, "beacon", viewer)
        self.at(viewer.leave_at, "leave", (viewer, viewer.leave_at))

    def remove(self, viewer: Viewer) -> None:
        viewer.gone = True
        last = self.present.pop()
        if last is not viewer:
            last.index = viewer.index
            self.present[viewer.index] = last
        self.departed.append(viewer.user_id)

    def do_heartbeat(self, t: float, viewer: Viewer) -> None:
        if viewer.gone:
            return
        self.emit(t, View(self.room_id, viewer.user_id, self.ts(t), "heartbeat"))
        self.at(t + viewer.heartbeat_every, "heartbeat", viewer)

    def do_beacon(self, t: float, viewer: Viewer) -> None:
        if viewer.gone:
            return
        self.beacon(t, viewer)
        self.at(t + self.sim.beacon_interval, "beacon", viewer)

    def beacon(self, t: float, viewer: Viewer) -> None:
        rng, sim, player = self.rng, self.sim, viewer.player
        cdn = viewer.cdn
        disturbed = sim.outage is not None or "stall-storm" in sim.scenarios
        factor = (lambda s: sim.throughput_factor(self, cdn, viewer.enter_t + s)) if disturbed else None
        player.advance(t - viewer.enter_t, factor)
        interval = player.take_interval()
        condition = sim.cdn_condition(self, cdn, t)
        error = None
        if not player.started and player.clock >= 10.0:
            error = "ERR_STARTUP_TIMEOUT"
        elif rng.random() < condition.error_probability:
            error = rng.choice(CDN_ERRORS)
        watched = interval.play_ms + interval.stall_ms
        self.emit(t, Health(
            self.room_id, viewer.user_id, self.ts(t), cdn=cdn, play_ms=interval.play_ms,
            stall_ms=interval.stall_ms, stall_count=interval.stall_count,
            latency_ms=(float(round((player.lag + condition.extra_latency) * 1000))
                        if player.started else None),
            bitrate_kbps=interval.bitrate_kbps,
            fps=round(30.0 * interval.play_ms / watched, 1) if watched else None,
            dropped_frames=float(poisson(rng, 0.5 + interval.stall_count)) if watched else None,
            startup_ms=float(interval.startup_ms) if interval.startup_ms and player.started else None,
            error=error))
        # Viewers lose patience with stalls and failed starts: each stall may send one away.
        if error == "ERR_STARTUP_TIMEOUT" or rng.random() > 0.93 ** interval.stall_count:
            leave_at = t + rng.uniform(0.5, 5.0)
            if leave_at < viewer.leave_at:
                viewer.leave_at = leave_at
                self.at(leave_at, "leave", (viewer, leave_at))

    def do_leave(self, t: float, payload) -> None:
        viewer, planned = payload
        if viewer.gone or planned != viewer.leave_at:
            return  # already gone, or a leave rescheduled earlier
        self.leave(t, viewer)

    def leave(self, t: float, viewer: Viewer) -> None:
        if viewer.sends_leave:
            self.beacon(t, viewer)  # the player reports its last interval on exit
            self.emit(t, View(self.room_id, viewer.user_id, self.ts(t), "leave"))
        self.remove(viewer)

    def move(self, t: float, from_cdn: str | None, to_cdn: str) -> int:
        """Fail the room's viewers over to `to_cdn`; new arrivals go there too."""
        moving = [v for v in self.present if v.cdn != to_cdn and from_cdn in (None, v.cdn)]
        for viewer in moving:
            self.beacon(t, viewer)  # close the interval on the old CDN: its stalls are that CDN's
            viewer.cdn = to_cdn
            viewer.player.rejoin()
        for cdn in list(self.cdn_weights):
            if cdn != to_cdn and from_cdn in (None, cdn):
                self.cdn_weights[to_cdn] = self.cdn_weights.get(to_cdn, 0.0) + self.cdn_weights[cdn]
                self.cdn_weights[cdn] = 0.0
        return len(moving)

    # -- interaction and commerce ---------------------------------------------------------------
    def interact(self, t: float, surge: bool) -> None:
        rng, sim = self.rng, self.sim
        n = len(self.present)
        if not n:
            return
        buzz = t - self.presented_at < PRESENTATION_BUZZ
        chat = DANMAKU_RATE * (2.0 if buzz else 1.0) * (3.0 if surge else 1.0)
        if self.index == 0 and sim.episode("danmaku-flood", t):
            chat *= 30.0
        for _ in range(poisson(rng, n * chat * TICK)):
            when, viewer = t + rng.random() * TICK, self.present[rng.randrange(n)]
            text = rng.choice(CHAT) if rng.random() < 0.9 else rng.choice(CHAT) + "!" * rng.randrange(1, 4)
            self.emit(when, Danmaku(self.room_id, viewer.user_id, self.ts(when), text))
        for target, rate in (("like", LIKE_RATE), ("share", SHARE_RATE), ("follow", FOLLOW_RATE)):
            for _ in range(poisson(rng, n * rate * TICK)):
                when, viewer = t + rng.random() * TICK, self.present[rng.randrange(n)]
                if target == "follow":
                    if viewer.followed:
                        continue
                    viewer.followed = True
                self.emit(when, Click(self.room_id, viewer.user_id, self.ts(when), target))
        clicks = PRODUCT_CLICK_RATE * (4.0 if buzz else 1.0) * (5.0 if surge else 1.0)
        for _ in range(poisson(rng, n * clicks * TICK)):
            when, viewer = t + rng.random() * TICK, self.present[rng.randrange(n)]
            product = self.featured if rng.random() < 0.7 else rng.randrange(len(self.products))
            self.emit(when, Click(self.room_id, viewer.user_id, self.ts(when), "product",
                                  product_id=self.products[product][0]))
            if rng.random() < 0.35:
                self.at(when + rng.uniform(2.0, 20.0), "cart", (viewer.user_id, product, surge))

    def do_cart(self, t: float, payload) -> None:
        user_id, product, surge = payload
        rng = self.rng
        self.emit(t, Click(self.room_id, user_id, self.ts(t), "cart",
                           product_id=self.products[product][0]))
        if rng.random() < (0.6 if surge else 0.3):
            self.next_order += 1
            order_id = f"o{int(self.sim.start):x}-{self.index}-{self.next_order}"
            sku, price = self.products[product]
            quantity = rng.choices((1, 2, 3), (80, 15, 5))[0]
            order = (order_id, user_id, sku, round(price * quantity, 2))
            self.at(t + rng.uniform(5.0, 30.0), "order", (order, "created"))

    def do_order(self, t: float, payload) -> None:
        (order_id, user_id, sku, amount), status = payload
        rng = self.rng
        self.emit(t, Order(self.room_id, user_id, self.ts(t), order_id, sku, amount,
                           "paid" if status == "paid-again" else status))
        if status == "created" and rng.random() < 0.85:
            self.at(t + rng.uniform(3.0, 40.0), "order", (payload[0], "paid"))
        elif status == "paid":
            if rng.random() < 0.04:  # the payment callback is retried: the same paid event again
                self.at(t + rng.uniform(1.0, 8.0), "order", (payload[0], "paid-again"))
            if rng.random() < 0.05:
                self.at(t + rng.uniform(60.0, 300.0), "order", (payload[0], "refunded"))

    def close(self, t: float) -> None:
        """The show ends: the host closes the room and the audience goes."""
        for viewer in list(self.present):
            self.leave(t + self.rng.random() * 0.5, viewer)
        self.emit(t + 0.9, Show(self.room_id, self.ts(t + 0.9), "end", show_id=self.sim.show_id(self)))


class _Condition(NamedTuple):
    throughput: float
    error_probability: float
    extra_latency: float


_HEALTHY = _Condition(1.0, 0.002, 0.0)
_OUTAGE = _Condition(0.03, 0.25, 1.5)


class Simulation:
    """The simulated live rooms. Iterate `messages()`; call `apply_failover` between messages."""

    def __init__(self, scenario: str | frozenset[str] = "normal", *, rooms: int = 5, seed: int = 0,
                 start: float = 1_700_000_000.0, duration: float | None = 60.0, rate: float = 1000.0,
                 envelope: int = 20, traces: list[Trace] | None = None, beacon_interval: float = 10.0,
                 fault_at: float | None = None, fault_for: float | None = None,
                 end_show: bool = True, bad_fraction: float = 0.02, room_prefix: str = "room-"):
        if rooms < 1 or rate <= 0 or envelope < 1 or beacon_interval <= 0:
            raise ValueError("rooms, rate, envelope and beacon interval must be positive")
        if not re.fullmatch(r"[A-Za-z0-9_.:\-]{0,50}", room_prefix):
            raise ValueError(f"room prefix {room_prefix!r} must be at most 50 of A-Z a-z 0-9 _ . : -")
        self.scenarios = parse_scenarios(scenario) if isinstance(scenario, str) else frozenset(scenario)
        self.seed, self.start, self.rate = seed, float(start), float(rate)
        self.duration = duration or None
        self.envelope, self.traces, self.beacon_interval = envelope, traces, beacon_interval
        self.end_show, self.bad_fraction = end_show, bad_fraction
        self.window = FaultWindow.default(self.duration, fault_at, fault_for)
        self.mean_watch = sum(share * mean for share, mean in WATCH_MIX)
        self.tick = -1
        self.out: list[tuple[float, AnyEvent]] = []
        self.failovers: list[tuple[float, str, str | None, str]] = []
        self.outage: tuple[str, str] | None = None  # (room, cdn) degraded in the current episode
        self.bad_rng = random.Random(f"{seed}:bad")
        self.bad_count = 0
        width = max(3, len(str(rooms)))
        weights = [1 / (i + 1) ** 1.3 for i in range(rooms)]  # room-0 is the hot room
        total = sum(weights)
        self.rooms = [Room(self, i, f"{room_prefix}{i + 1:0{width}d}", w / total) for i, w in enumerate(weights)]
        self.by_id = {room.room_id: room for room in self.rooms}

    @property
    def now(self) -> float:
        """Event time reached: the end of the last tick generated."""
        return self.start + (self.tick + 1) * TICK

    def per_viewer_rate(self) -> float:
        """Events a viewer sends per second on average (sets the audience for a target rate)."""
        return (1 / sum(HEARTBEAT_EVERY) * 2 + 1 / self.beacon_interval + DANMAKU_RATE * 1.3
                + LIKE_RATE + SHARE_RATE + FOLLOW_RATE + PRODUCT_CLICK_RATE * 2.2
                + 2.2 / sum(share * mean for share, mean in WATCH_MIX))

    def show_id(self, room: Room) -> str:
        return f"{room.room_id}-{int(self.start)}"

    def episode(self, name: str, t: float) -> bool:
        return name in self.scenarios and self.window.active(t)

    def throughput_factor(self, room: Room, cdn: str, t: float) -> float:
        factor = self.cdn_condition(room, cdn, t).throughput
        return factor * STORM_THROUGHPUT if self.episode("stall-storm", t) else factor

    def cdn_condition(self, room: Room, cdn: str, t: float) -> _Condition:
        if self.outage == (room.room_id, cdn) and self.window.active(t):
            return _OUTAGE
        return _HEALTHY

    def apply_failover(self, room_id: str, to_cdn: str, at_ts: float | None = None,
                       from_cdn: str | None = None) -> bool:
        """Move the room's viewers (those on `from_cdn`, or all) to `to_cdn` at event time `at_ts`
        (or at the next tick). False for a room this simulation does not have."""
        if room_id not in self.by_id:
            return False
        self.failovers.append((self.now if at_ts is None else at_ts, room_id, from_cdn, to_cdn))
        return True

    def messages(self) -> Iterator[Message]:
        end_tick = None if self.duration is None else math.ceil(self.duration / TICK)
        while True:
            self.tick += 1
            t = self.tick * TICK
            if self.tick == 0:
                for room in self.rooms:
                    self.out.append((0.0, Show(room.room_id, self.ts(0.0), "start",
                                               show_id=self.show_id(room), title=f"{room.room_id} live sale")))
            if end_tick is not None and self.tick >= end_tick:
                if self.end_show:
                    for room in self.rooms:
                        room.close(t)
                yield from self._pack(t)
                return
            self._start_episodes(t)
            for when, room_id, from_cdn, to_cdn in [f for f in self.failovers if f[0] < self.start + t + TICK]:
                self.by_id[room_id].move(max(t, when - self.start), from_cdn, to_cdn)
            self.failovers = [f for f in self.failovers if f[0] >= self.start + t + TICK]
            for room in self.rooms:
                room.run_tick(t)
            yield from self._pack(t)

    def ts(self, t: float) -> float:
        return round(self.start + t, 3)

    def _start_episodes(self, t: float) -> None:
        active = self.window.active(t)
        if "cdn-outage" in self.scenarios and active and self.outage is None:
            hot = self.rooms[0]  # it degrades the CDN the hot room mostly uses right now
            self.outage = (hot.room_id, max(hot.cdn_weights, key=hot.cdn_weights.get))
        elif not active:
            self.outage = None

    def _pack(self, t: float) -> Iterator[Message]:
        """Sort the tick's events by time and pack them into envelopes, mixing in bad input."""
        out = sorted(self.out, key=lambda item: item[0])
        self.out = []
        items: list = [event for _, event in out]
        if "bad-input" in self.scenarios and items:
            items = self._add_bad_input(items, t)
        envelopes: dict[tuple[str, str], list] = {}
        for item in items:
            if isinstance(item, Bad):
                if item.standalone:
                    yield self._message(item.topic, item.room_id, [item])
                    continue
                topic, room_id = item.topic, item.room_id
            else:
                topic, room_id = TOPIC_OF_TYPE[item.__struct_config__.tag], item.room_id
            batch = envelopes.setdefault((topic, room_id), [])
            batch.append(item)
            if len(batch) >= self.envelope:
                del envelopes[(topic, room_id)]
                yield self._message(topic, room_id, batch)
        for (topic, room_id), batch in envelopes.items():
            yield self._message(topic, room_id, batch)

    def _add_bad_input(self, items: list, t: float) -> list:
        rng = self.bad_rng
        templates = [i for i, e in enumerate(items) if isinstance(e, (View, Danmaku, Click, Health))]
        count = poisson(rng, self.bad_fraction * len(items)) if templates else 0
        inserts: dict[int, list[Bad]] = {}
        for _ in range(count):
            position = rng.choice(templates)
            bad = make_bad(self.bad_count, items[position], rng)
            self.bad_count += 1
            if bad.reason == LATE and t < 15.0:
                continue  # a room's first events are not late: it has no watermark yet
            inserts.setdefault(position, []).append(bad)
        if not inserts:
            return items
        mixed = []
        for i, item in enumerate(items):
            mixed.append(item)
            mixed.extend(inserts.get(i, ()))
        return mixed

    def _message(self, topic: str, room_id: str, batch: list) -> Message:
        if all(not isinstance(item, Bad) for item in batch):
            value = encode(batch[0] if self.envelope == 1 else batch)
            return Message(topic, room_id, value, tuple(batch))
        parts = [item.raw if isinstance(item, Bad) else encode(item) for item in batch]
        value = parts[0] if len(parts) == 1 and isinstance(batch[0], Bad) and (
            batch[0].standalone or self.envelope == 1) else b"[" + b",".join(parts) + b"]"
        events = tuple(item for item in batch if not isinstance(item, Bad))
        rejected = tuple((item.reason, item.raw) for item in batch if isinstance(item, Bad))
        return Message(topic, room_id, value, events, rejected)


def generate(scenario: str | frozenset[str] = "normal", **options) -> Iterator[Message]:
    """The messages of a simulated show, without Kafka. Options are those of `Simulation`."""
    return Simulation(scenario, **options).messages()
