"""The traffic generator: live rooms full of simulated viewers, as a pure function of its inputs.

No I/O and no clock: given the scenarios, rooms, seed, start time, duration and rate, it yields the
same messages, byte for byte, every time. Time advances in ticks of one second of event time; each
tick's events are sorted by `ts` and packed into batch envelopes per (topic, room), as client SDKs
and edge collectors send them. The Kafka edge (`cli.py`) paces and sends them, and feeds failover
commands back in through `Simulation.apply_failover`.

The rate sets the size of the audience: each viewer sends about `per_viewer_rate()` events a
second (heartbeats, health beacons, chat, clicks), so a room holds `rate * share / that` viewers.
Scenario episodes (a surge, an outage) change behaviour, and therefore the rate, while they last.

Every room runs one show that sells (SPEC §2, §8-11): its catalogue (`show` `product` events) at
the start, the host pinning products in turn (`pin`, sometimes `unpin`), clicks and orders that
follow the pinned product, promotions (`promo_start`/`promo_end`) that lift conversion, and ad
spend per minute (`spend`) that buys the room its paid traffic. Viewers enter with attributes
(source, device, region, age band, gender, follower) that they keep when they come back, and
that shape what they buy. The tables are in `commerce.py`.
"""

from __future__ import annotations

import math
import random
import re
from bisect import bisect
from collections import deque
from collections.abc import Iterator
from itertools import accumulate
from typing import NamedTuple

from livemon.ingest.events import (LATE, TOPIC_OF_TYPE, AnyEvent, Click, Danmaku, Health,
                                   Order, Show, View, encode)

from . import commerce as shop
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
FIRST_PIN = (3.0, 20.0)     # seconds into the show when the host pins the first product
PIN_FOR = (60.0, 240.0)     # how long the host presents a pinned product (讲解中, "上链接")
UNPIN_SHARE = 0.3           # the host unpins before the next pin this often ...
UNPIN_GAP = (5.0, 40.0)     # ... for this long (chatting, a lottery, the next product's prep)
PIN_BUZZ = 45.0             # seconds of extra chat after a pin
PIN_FOCUS = 0.8             # share of product clicks that go to the pinned product
PIN_LIFT, PIN_RUSH, PIN_RUSH_FOR = 2.5, 3.0, 60.0  # product clicks x (lift + rush * e^(-t/for))
PIN_CONVERSION = 1.2        # conversion of the pinned product (the host answers questions)
RELIST_SHARE = 0.5          # a product pinned again is re-listed (返场, often at a lower price)
NEW_PRODUCT_SHARE = 0.05    # a pin lists a new product (上新)
MAX_PRODUCTS = 40
CART_SHARE, ORDER_SHARE, PAY_SHARE = 0.28, 0.18, 0.85  # click -> cart -> created -> paid
SPEND_EVERY = 60.0

# Per viewer per second, outside any presentation or episode.
DANMAKU_RATE = 1 / 100
LIKE_RATE = 1 / 60
SHARE_RATE = 1 / 1500
FOLLOW_RATE = 1 / 1500
PRODUCT_CLICK_RATE = 1 / 800  # x PIN_LIFT and more while a product is pinned

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


def _table(names_cum):
    names, cum = names_cum
    return names, cum, cum[-1], len(cum) - 1


_PEOPLE, _PROMOS = _table(shop.PEOPLE), _table(shop.PROMO_TYPES)
_TASTES = shop.TASTES
# The watching-time mix of arrivals, and of those who come at the opening (see `arrive`).
_WATCH = _table((WATCH_MIX, list(accumulate(w for w, _ in WATCH_MIX))))
_WATCH_OPENING = _table((WATCH_MIX, list(accumulate(w * m for w, m in WATCH_MIX))))


def pick(rng: random.Random, table) -> str:
    """A weighted draw from a `_table`: (names, cumulative weights, total, last index)."""
    names, cum, total, last = table
    return names[bisect(cum, rng.random() * total, 0, last)]


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
                 "sends_leave", "gone", "index", "followed", "profile", "taste")

    def __init__(self, user_id, enter_t, device, cdn, player, heartbeat_every, leave_at, sends_leave,
                 profile):
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
        self.profile = profile  # (source, device, region, age band, gender, follower)
        self.followed = profile[5]
        self.taste = _TASTES[profile[3], profile[4], device, profile[5]]


class Promo:
    __slots__ = ("promo_id", "kind", "product", "end", "lift", "click_lift")

    def __init__(self, promo_id, kind, product, end, lift, click_lift):
        self.promo_id, self.kind, self.product, self.end = promo_id, kind, product, end
        self.lift, self.click_lift = lift, click_lift


class Room:
    def __init__(self, sim: "Simulation", index: int, room_id: str, share: float):
        self.sim = sim
        self.index = index
        self.room_id = room_id
        self.rng = random.Random(f"{sim.seed}:{room_id}")
        self.audience = sim.rate * share / sim.per_viewer_rate()
        self.present: list[Viewer] = []
        self.departed: deque[tuple] = deque(maxlen=500)  # (user_id, profile) of those who left
        self.agenda: dict[int, list] = {}
        self.next_user = 0
        self.next_order = 0
        self.cdn_weights = dict(zip(CDN_POOL, CDN_SPLIT))
        self.cdn_table = _table((CDN_POOL, list(accumulate(CDN_SPLIT))))
        rng = self.rng
        self.category, self.products = shop.catalogue(rng, index)
        self.title = shop.show_title(rng, self.category)
        self.popularity = list(accumulate(p.weight for p in self.products))
        self.pinned: shop.Product | None = None
        self.pinned_at = -1e9
        self.next_host = rng.uniform(*FIRST_PIN)
        self.promos: list[Promo] = []
        self.next_promo = rng.uniform(20.0, 120.0)
        self.promo_count = 0
        # Ad spend: a paid push (x the paid share of arrivals) that changes every few minutes,
        # and the cost of a visitor on each channel the room buys.
        self.costs = {channel: rng.uniform(*cost) for channel, cost in shop.COST_PER_VISITOR.items()
                      if channel == "paid" or rng.random() < (0.6 if channel == "social" else 0.3)}
        self.campaigns = {"paid": f"qc-{index + 1}-1",
                          "social": f"soc-{index + 1}" if rng.random() < 0.5 else None, "search": None}
        self.set_push(math.exp(rng.gauss(0.0, 0.4)))
        self.next_push = rng.uniform(*shop.PUSH_EVERY)
        self.push_count = 1
        self.visitors = dict.fromkeys(self.costs, 0)  # entries per bought channel since the last spend
        self.spent_at = 0.0

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
        if t >= self.next_host:
            self.host(t)
        if t >= self.next_promo:
            self.promote(t)
        if t >= self.next_push:
            self.change_push(t)
        if t - self.spent_at >= SPEND_EVERY:
            self.spend(t)
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
        random = rng.random
        profile = None
        if self.departed and random() < RETURN_SHARE:
            user_id, profile = self.departed.popleft()
            if random() < shop.RESOURCE_SHARE:  # back, but another way in this time
                profile = (pick(rng, self.sources), *profile[1:])
        if profile is None:
            self.next_user += 1
            user_id = f"u{self.index}-{self.next_user}"
            source = pick(rng, self.sources)
            profile = (source, *pick(rng, _PEOPLE), random() < shop.FOLLOWER_SHARE[source])
        source, device, region, age_band, gender, follower = profile
        if source in self.visitors:
            self.visitors[source] += 1
        cdn = pick(rng, self.cdn_table)
        network = (TraceNetwork(rng, self.sim.traces) if self.sim.traces
                   else BuiltinNetwork(rng, device))
        # Connecting takes a few round trips; now and then a DNS or TLS retry takes much longer.
        connect = 0.15 + 0.45 * random() + (rng.uniform(0.5, 2.5) if random() < 0.04 else 0.0)
        player = Player(network, target_latency=2.0 + 2.0 * random(), connect=connect)
        # Those who come at the opening are the show's audience at its steady state: the longer
        # watchers are overrepresented among them (length bias), so the audience holds steady.
        _, mean = pick(rng, _WATCH_OPENING if opening else _WATCH)
        viewer = Viewer(user_id, t, device, cdn, player, rng.uniform(*HEARTBEAT_EVERY),
                        t + rng.expovariate(1 / mean), rng.random() >= VANISH_SHARE, profile)
        viewer.index = len(self.present)
        self.present.append(viewer)
        self.emit(t, View(self.room_id, user_id, self.ts(t), "enter", source=source, device=device,
                          region=region, age_band=age_band, gender=gender, follower=follower))
        self.at(t + viewer.heartbeat_every, "heartbeat", viewer)
        self.at(t + rng.uniform(0.2, 1.0) * self.sim.beacon_interval, "beacon", viewer)
        self.at(viewer.leave_at, "leave", (viewer, viewer.leave_at))

    def remove(self, viewer: Viewer) -> None:
        viewer.gone = True
        last = self.present.pop()
        if last is not viewer:
            last.index = viewer.index
            self.present[viewer.index] = last
        profile = viewer.profile
        if viewer.followed and not profile[5]:  # followed the room during this visit
            profile = (*profile[:5], True)
        self.departed.append((viewer.user_id, profile))

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
        if not player.started and player.clock - player.starting_since >= 10.0:
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
            startup_ms=None if interval.startup_ms is None else float(interval.startup_ms),
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
        self.cdn_table = _table((tuple(self.cdn_weights), list(accumulate(self.cdn_weights.values()))))
        return len(moving)

    # -- the show: catalogue, pins, promotions, spend -------------------------------------------
    def open(self, t: float) -> None:
        """The show starts: its title, then its catalogue."""
        self.emit(t, Show(self.room_id, self.ts(t), "start", show_id=self.sim.show_id(self), title=self.title))
        for product in self.products:
            self.list_product(t, product)

    def list_product(self, t: float, product: shop.Product) -> None:
        self.emit(t, Show(self.room_id, self.ts(t), "product", product_id=product.product_id,
                          title=product.title, category=product.category, price=product.price))

    def host(self, t: float) -> None:
        """The host moves on: unpins for a while, or pins the next product."""
        rng = self.rng
        if self.pinned is not None and rng.random() < UNPIN_SHARE:
            self.pinned = None
            self.emit(t, Show(self.room_id, self.ts(t), "unpin"))
            self.next_host = t + rng.uniform(*UNPIN_GAP)
            return
        if len(self.products) < MAX_PRODUCTS and rng.random() < NEW_PRODUCT_SHARE:
            product = shop.new_product(rng, self.index, len(self.products), self.category)
            self.products.append(product)
            self.popularity.append(self.popularity[-1] + product.weight)
            self.list_product(t, product)
        else:
            # The hits again and again, the rest in turn; never the one on show now.
            weights = [0.0 if p is self.pinned else p.weight * (0.5 if p.pinned_before else 1.0)
                       for p in self.products]
            product = rng.choices(self.products, weights)[0]
            if product.pinned_before and rng.random() < RELIST_SHARE:
                product.price = shop.relisted_price(rng, product)
                self.list_product(t, product)
        self.pin(t, product)

    def pin(self, t: float, product: shop.Product) -> None:
        product.pinned_before = True
        self.pinned, self.pinned_at = product, t
        self.emit(t, Show(self.room_id, self.ts(t), "pin", product_id=product.product_id))
        self.next_host = t + self.rng.uniform(*PIN_FOR)

    def popular(self) -> shop.Product:
        """A product by popularity: what viewers browse when not following the host."""
        popularity = self.popularity
        return self.products[bisect(popularity, self.rng.random() * popularity[-1], 0, len(popularity) - 1)]

    def promote(self, t: float) -> None:
        rng = self.rng
        kind = pick(rng, _PROMOS)
        _, (shortest, longest), scoped, lift, click_lift = shop.PROMOS[kind]
        product = None
        if rng.random() < scoped:
            product = self.pinned or self.popular()
            if kind == "seckill" and product is not self.pinned:
                self.pin(t, product)  # a seckill is run on the product on show
        self.promo_count += 1
        promo = Promo(f"promo-{self.index + 1}-{self.promo_count}", kind, product,
                      t + rng.uniform(shortest, longest), lift, click_lift)
        self.promos.append(promo)
        self.emit(t, Show(self.room_id, self.ts(t), "promo_start", promo_id=promo.promo_id, promo_type=kind,
                          product_id=None if product is None else product.product_id))
        self.at(promo.end, "promo_end", promo)
        self.next_promo = math.inf  # one promotion at a time: the next is planned when it ends

    def do_promo_end(self, t: float, promo: Promo) -> None:
        if promo in self.promos:
            self.promos.remove(promo)
            self.emit(t, Show(self.room_id, self.ts(t), "promo_end", promo_id=promo.promo_id))
            self.next_promo = t + self.rng.uniform(*shop.PROMO_GAP)

    def set_push(self, push: float) -> None:
        self.push = push
        self.sources = _table((shop.SOURCE_NAMES, shop.source_weights(push)))

    def change_push(self, t: float) -> None:
        """The room's paid push changes: paused now and then, else anywhere from a fifth to 4x."""
        rng = self.rng
        self.spend(t)  # settle the spend of the old campaign
        paused = rng.random() < 0.15
        self.set_push(0.0 if paused else min(4.0, max(0.2, math.exp(rng.gauss(0.0, 0.6)))))
        if not paused:
            self.push_count += 1
            self.campaigns["paid"] = f"qc-{self.index + 1}-{self.push_count}"
        self.next_push = t + rng.uniform(*shop.PUSH_EVERY)

    def spend(self, t: float) -> None:
        """What the room's channels cost since the last spend event: their visitors at their cost."""
        rng = self.rng
        for channel, cost in self.costs.items():
            visitors = self.visitors[channel]
            self.visitors[channel] = 0
            if visitors and (channel != "paid" or self.push > 0):
                amount = round(visitors * cost * rng.uniform(0.85, 1.15), 2)
                self.emit(t, Show(self.room_id, self.ts(t), "spend", amount=amount, channel=channel,
                                  campaign=self.campaigns[channel]))
        self.spent_at = t

    # -- interaction and commerce ---------------------------------------------------------------
    def interact(self, t: float, surge: bool) -> None:
        rng, sim = self.rng, self.sim
        n = len(self.present)
        if not n:
            return
        promos, pinned = self.promos, self.pinned
        chat = DANMAKU_RATE * (2.0 if t - self.pinned_at < PIN_BUZZ else 1.0) * (3.0 if surge else 1.0)
        clicks = PRODUCT_CLICK_RATE * (5.0 if surge else 1.0)
        if pinned is not None:  # the host presents it: a rush of clicks, then steady interest
            clicks *= PIN_LIFT + PIN_RUSH * math.exp((self.pinned_at - t) / PIN_RUSH_FOR)
        promoted = None
        if promos:
            clicks *= max(promo.click_lift for promo in promos)
            for promo in promos:
                if promo.kind == "lottery":
                    chat *= 3.0  # viewers send the lottery's password (口令) to take part
                if promo.product is not None:
                    promoted = promo.product
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
        for _ in range(poisson(rng, n * clicks * TICK)):
            when, viewer = t + rng.random() * TICK, self.present[rng.randrange(n)]
            draw = rng.random()
            if pinned is not None and draw < PIN_FOCUS:
                product = pinned
            elif promoted is not None and draw < 0.9:
                product = promoted
            else:
                product = self.popular()
            self.emit(when, Click(self.room_id, viewer.user_id, self.ts(when), "product",
                                  product_id=product.product_id))
            # How likely this viewer buys it: taste (age band, gender, device, follower), the
            # host presenting it, the best promotion on it.
            conversion = viewer.taste[product.category] * (PIN_CONVERSION if product is pinned else 1.0)
            for promo in promos:
                if (promo.product is None or promo.product is product) and promo.lift > 1.0:
                    conversion = max(conversion, conversion * promo.lift)
            conversion = math.sqrt(conversion)
            if rng.random() < CART_SHARE * conversion:
                self.at(when + rng.uniform(2.0, 20.0), "cart", (viewer.user_id, product, conversion, surge))

    def do_cart(self, t: float, payload) -> None:
        user_id, product, conversion, surge = payload
        rng = self.rng
        self.emit(t, Click(self.room_id, user_id, self.ts(t), "cart", product_id=product.product_id))
        if rng.random() < ORDER_SHARE * conversion * (2.0 if surge else 1.0):
            self.next_order += 1
            order_id = f"o{int(self.sim.start):x}-{self.index}-{self.next_order}"
            quantity = rng.choices((1, 2, 3), (80, 15, 5))[0]
            order = (order_id, user_id, product, round(product.price * quantity, 2))
            self.at(t + rng.uniform(5.0, 30.0), "order", (order, "created"))

    def do_order(self, t: float, payload) -> None:
        (order_id, user_id, product, amount), status = payload
        rng = self.rng
        self.emit(t, Order(self.room_id, user_id, self.ts(t), order_id, product.product_id, amount,
                           "paid" if status == "paid-again" else status))
        if status == "created" and rng.random() < PAY_SHARE:
            self.at(t + rng.uniform(3.0, 40.0), "order", (payload[0], "paid"))
        elif status == "paid":
            if rng.random() < 0.04:  # the payment callback is retried: the same paid event again
                self.at(t + rng.uniform(1.0, 8.0), "order", (payload[0], "paid-again"))
            if rng.random() < product.refund:  # 服饰 most (sizes), 食品 least
                self.at(t + rng.uniform(60.0, 300.0), "order", (payload[0], "refunded"))

    def close(self, t: float) -> None:
        """The show ends: the host closes the room and the audience goes."""
        for viewer in list(self.present):
            self.leave(t + self.rng.random() * 0.5, viewer)
        for promo in list(self.promos):
            self.do_promo_end(t + 0.8, promo)
        self.spend(t + 0.8)
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
                + LIKE_RATE + SHARE_RATE + FOLLOW_RATE + PRODUCT_CLICK_RATE * 3.3 * 1.5
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
                    room.open(0.0)
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
