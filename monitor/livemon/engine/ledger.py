"""Show summaries (SPEC §10): the 复盘 record of each show, counted exactly.

A room feeds its ledger once each instant is final, in event-time order (see `Room.settle`), so
nothing here ever sees an event out of order or undoes anything: the ledger is a plain running
tally per show. Items are tuples `(ts, kind, ...)` of the kinds below; a presence start or end
comes from the room's presence tracking, with its profile (see audience.py).

Distinct users over a whole show are sets (exact, as the SPEC asks): of the show's users by
their numbers (`Members`), or keyed by user. The largest is the show's viewers, a dict of user
-> profile that also remembers the attributes of viewers no longer tracked by the room (SPEC §8:
attribution by the most recent presence), for this show and the ones before it (up to
EngineConfig.max_remembered viewers, the oldest forgotten first).
"""

from __future__ import annotations

from array import array
from bisect import bisect_left
from collections import Counter
from itertools import chain, repeat
from typing import Any

from .audience import (AGE_COLUMNS, REGION_BASE, column_names, columns, presence_figures, sales_figures, shared,
                       source_column)
from .state import Field

MICRO = 1_000_000

# Item kinds, and their order among items of the same ts: a show start, pin, unpin, promotion
# start or end, product listing or spend acts before the events of its ts (they belong to what
# it begins); a show end after them (the events of its ts are in the show).
START, END, DANMAKU, CLICK, ORDER, HEALTH, SHOW, VIEW = range(8)
FIRST, MIDDLE, LAST = 0, 1, 2


def _ratio(numerator, denominator):
    return numerator / denominator if denominator else None


_COLUMN_SETS: dict[tuple, frozenset] = {}  # a profile's columns as one shared frozenset


def _column_set(cols: tuple[int, ...]) -> frozenset:
    found = _COLUMN_SETS.get(cols)
    if found is None:
        found = frozenset(cols)
        if len(_COLUMN_SETS) < 1 << 16:
            _COLUMN_SETS[cols] = found
    return found


def _add_columns(users: dict, user: str, cols: tuple[int, ...]) -> None:
    """`user` with the columns `cols` into `users` (user -> every column they acted under).
    The show's clickers and buyers per column are read from these: one entry a user, where a
    set per column held each user about six times (a third of a busy show's ledger)."""
    had = users.get(user)
    if had is None:
        users[user] = _column_set(cols)
    elif not had.issuperset(cols):
        users[user] = had.union(cols)  # (rare: the same user under another profile)


def _per_column(users: dict, among=None) -> dict[int, int]:
    """{column: how many of `users` (of those also in `among`) acted under it}, counted in C (a
    provisional summary of every room goes every few seconds)."""
    picked = users.values() if among is None else map(users.__getitem__, users.keys() & among)
    return Counter(chain.from_iterable(picked))


class Members:
    """Some of a show's users, as their numbers (see `Tally.number`) in a sorted int32 array: 4 B
    a member where a set entry costs about 40 B. Such sets are most of a busy show's record (its
    clickers, carters and buyers per product, hour, pinned stretch and promotion, its interacting,
    ordering and staying users) and grow with each new user of the show (SPEC §10 counts them
    exactly). Users come numbered in order of first sight, so a new one is appended."""

    __slots__ = ("numbers",)

    def __init__(self, numbers=()):
        self.numbers = array("i", sorted(set(numbers)))

    def add(self, number: int) -> None:
        numbers = self.numbers
        at = bisect_left(numbers, number)
        if at == len(numbers):
            numbers.append(number)
        elif numbers[at] != number:
            numbers.insert(at, number)

    def __len__(self) -> int:
        return len(self.numbers)

    def __iter__(self):
        return iter(self.numbers)

    def copy(self) -> "Members":
        copied = Members.__new__(Members)
        copied.numbers = array("i", self.numbers)
        return copied

    def common(self, other: "Members") -> int:
        """How many are also in `other`."""
        return len(set(self.numbers).intersection(other.numbers))


class ShowViewers:
    """The show's viewers, user -> profile of their most recent presence, read and written as a
    dict. The room's tracked viewers are kept by their slot in an int32 array (4 B each, where a
    dict entry costs ~37 B); the others (let go by the room, or read from a checkpoint) in a dict.
    The room links its user -> slot dict and its slots' users (`link`), and hands a viewer over
    (`release`) before it frees the slot."""

    __slots__ = ("slots", "users", "marks", "marked", "others")

    def __init__(self, others: dict | None = None):
        self.slots: dict | None = None  # the room's user -> slot, once linked
        self.users: list | None = None  # the room's slot -> user
        self.marks = array("i")  # per slot: the profile, or -1
        self.marked = 0  # marks set
        self.others: dict[str, int] = {} if others is None else others

    def link(self, slots: dict, users: list) -> None:
        self.slots, self.users = slots, users

    def get(self, user: str) -> int | None:
        if self.slots is not None:
            slot = self.slots.get(user)
            if slot is not None and slot < len(self.marks) and self.marks[slot] >= 0:
                return shared(self.marks[slot])
        return self.others.get(user)

    def __setitem__(self, user: str, profile: int) -> None:
        slot = None if self.slots is None else self.slots.get(user)
        if slot is None:
            self.others[user] = profile
            return
        marks = self.marks
        if slot >= len(marks):
            marks.extend(repeat(-1, max(slot + 1 - len(marks), 16, len(marks) // 8)))
        if marks[slot] < 0:
            self.marked += 1
            if self.others:
                self.others.pop(user, None)  # back after the room let it go: one place each
        marks[slot] = profile

    def release(self, slot: int, user: str) -> None:
        """The room frees `slot` (its viewer `user`)."""
        if slot < len(self.marks) and self.marks[slot] >= 0:
            self.others[user] = shared(self.marks[slot])
            self.marks[slot] = -1
            self.marked -= 1

    def __len__(self) -> int:
        return self.marked + len(self.others)

    def items(self):
        """(user, profile) of every viewer: those let go first, then the tracked ones by slot."""
        yield from self.others.items()
        users = self.users
        if self.marked and users is not None:  # marks are only set once linked
            for slot, profile in enumerate(self.marks):
                if profile >= 0:
                    yield users[slot], shared(profile)


class Tally:
    """One show's running counts."""

    # Checkpoints: a tally is plain data but for its sets, stored as sorted lists of their users or
    # order ids (see `encode`); the users' numbers are not stored (see `number`).
    _MEMBERS = ("stayed", "interacting", "carters", "ordering")
    _SETS = ("refunded",)
    _PART_MEMBERS = ("clickers", "carters", "buyers")  # of a product, hour, pinned stretch or promotion
    _BY_COLUMNS = ("clickers", "buyers")  # user -> the columns they acted under (see `_add_columns`)

    def __init__(self, room_id: str, show_id, start: float, title):
        self.data: dict[str, Any] = {
            "room_id": room_id, "show_id": show_id, "start": start, "title": title, "last_ts": start,
            "ended_at": None, "viewers": ShowViewers(), "extra": {}, "by_viewers": {}, "entries": 0, "by_entries": {},
            "ends": 0, "watch": 0.0, "by_ends": {}, "by_watch": {}, "peak_online": 0,
            "numbers": {}, "stayed": Members(), "interacting": Members(), "clickers": {}, "carters": Members(),
            "ordering": Members(), "buyers": {}, "orders": 0, "gmv": 0, "refunded": set(), "paid": {},
            "by_orders": {}, "by_gmv": {},
            "products": {}, "catalogue": {}, "age_product": {}, "segments": [], "promos": [],
            "spend": {}, "hours": {}, "stall_ms": 0, "play_ms": 0, "beacons": 0, "errors": 0,
            # After the show's last event so far, presence ends and instants may yet be in the show
            # or not: only a later event of the show says so (its end is its last event).
            "pending_ends": [], "pending_peaks": [],
            # The items of the latest ts for the pinned stretch and promotions going on: a stretch
            # is [start, end), so they count only once an item of a later ts shows that neither
            # the stretch nor the show ended at theirs.
            "tail": [],
        }

    @staticmethod
    def number(d: dict, user: str) -> int:
        """The user's number in the show (see `Members`): 0, 1, ... in order of first sight."""
        numbers = d["numbers"]
        found = numbers.get(user)
        if found is None:
            found = numbers[user] = len(numbers)
        return found

    # ---- checkpoints ----

    @classmethod
    def encode(cls, tally: "Tally") -> dict:
        d = dict(tally.data)
        users = [""] * len(d["numbers"])
        for user, number in d.pop("numbers").items():
            users[number] = user

        def named(members):
            return sorted(users[number] for number in members) if isinstance(members, Members) else members

        d["viewers"] = dict(d["viewers"].items())
        for name in cls._SETS:
            d[name] = sorted(d[name])
        for name in cls._MEMBERS:
            d[name] = named(d[name])
        d["extra"] = {user: sorted(ps) for user, ps in d["extra"].items()}
        for name in cls._BY_COLUMNS:  # users grouped by their columns: [[columns, users], ...]
            grouped: dict[frozenset, list] = {}
            for user, cols in d[name].items():
                grouped.setdefault(cols, []).append(user)
            d[name] = sorted([sorted(cols), sorted(users)] for cols, users in grouped.items())
        d["products"] = {p: {k: named(v) for k, v in rec.items()} for p, rec in d["products"].items()}
        d["hours"] = {h: {k: named(v) for k, v in rec.items()} for h, rec in d["hours"].items()}
        d["segments"] = [{k: named(v) for k, v in seg.items()} for seg in d["segments"]]
        d["promos"] = [{k: named(v) for k, v in promo.items()} for promo in d["promos"]]
        d["age_product"] = [[c, p, v] for (c, p), v in d["age_product"].items()]
        return d

    @classmethod
    def decode(cls, d: dict) -> "Tally":
        tally = cls.__new__(cls)
        d = dict(d)
        d["viewers"] = ShowViewers(d["viewers"])  # linked to the room's slots by `Ledger.link`
        numbers = d["numbers"] = {}

        def numbered(users):
            return Members([numbers.setdefault(user, len(numbers)) for user in users])

        for name in cls._SETS:
            d[name] = set(d[name])
        for name in cls._MEMBERS:
            d[name] = numbered(d[name])
        d["extra"] = {user: set(ps) for user, ps in d["extra"].items()}
        for name in cls._BY_COLUMNS:
            if "by_" + name in d:  # a checkpoint from before: the users, and a set per column
                users: dict[str, tuple] = {user: () for user in d.pop(name)}
                for c, members in d.pop("by_" + name).items():
                    for user in members:
                        users[user] += (c,)
                d[name] = {user: _column_set(tuple(sorted(cols))) for user, cols in users.items()}
            else:
                d[name] = {user: _column_set(tuple(cols)) for cols, members in d[name] for user in members}
        parts = cls._PART_MEMBERS
        d["products"] = {p: {k: numbered(v) if k in parts else v for k, v in rec.items()}
                         for p, rec in d["products"].items()}
        d["hours"] = {h: {k: numbered(v) if k in parts else v for k, v in rec.items()} for h, rec in d["hours"].items()}
        d["segments"] = [{k: numbered(v) if k in parts else v for k, v in seg.items()} for seg in d["segments"]]
        d["promos"] = [{k: numbered(v) if k in parts else v for k, v in promo.items()} for promo in d["promos"]]
        d["age_product"] = {(c, p): v for c, p, v in d["age_product"]}
        tally.data = d
        return tally


class _TallyCodec:
    @staticmethod
    def encode(tally):
        return None if tally is None else Tally.encode(tally)

    @staticmethod
    def decode(data):
        return None if data is None else Tally.decode(data)


class Ledger:
    """A room's show summaries. `feed` takes one final bucket's items in ts order; closed
    shows' summaries wait in `closed` for `take`."""

    STATE = (Field("current", _TallyCodec()), Field("show_key"), Field("remembered"), Field("closed"),
             Field("last", default=None))

    def __init__(self):
        self.current: Tally | None = None
        self.show_key = None  # (start, id) of the room Show the current tally counts
        self.remembered: dict[str, int] = {}  # earlier shows' viewers -> profile (bounded, oldest out)
        self.closed: list[dict] = []  # summaries of ended shows, not yet taken
        self.last: dict | None = None  # `totals` of the show closed last (its instants may still be read)

    _links: tuple | None = None  # the room's (user -> slot, slot -> user), see `ShowViewers`

    def link(self, slots: dict, users: list) -> None:
        """Keep the tracked viewers of each show by the room's slots (after `__init__` or a restore)."""
        self._links = (slots, users)
        if self.current is not None:
            self.current.data["viewers"].link(slots, users)

    def release(self, slot: int, user: str) -> None:
        """The room frees a viewer's slot."""
        if self.current is not None:
            self.current.data["viewers"].release(slot, user)

    def totals(self, start: float) -> dict | None:
        """The running totals of the show that began at `start` (the one going on, or the one
        just closed): GMV, spend, orders, refunds (micro units) and GMV per product."""
        if self.current is not None and self.show_key == start:
            d = self.current.data
            return {"start": start, "gmv": d["gmv"], "spend": sum(d["spend"].values()), "orders": d["orders"],
                    "refunds": len(d["refunded"]),
                    "products": {p: record["gmv"] for p, record in d["products"].items()},
                    "paid": d["paid"], "refunded": d["refunded"]}
        if self.last is not None and self.last["start"] == start:
            return self.last
        return None

    def profile_of(self, user: str) -> int | None:
        """The profile of a viewer's most recent presence in this show or the one before."""
        if self.current is not None:
            found = self.current.data["viewers"].get(user)
            if found is not None:
                return found
        return self.remembered.get(user)

    # ---- the show ----

    def open(self, room_id: str, show, present) -> None:
        """Begin the tally of a room Show; `present`: (user, start, profile) of the presences
        containing its start (they overlap it)."""
        self.current = tally = Tally(room_id, show.given_id, show.start, show.title)
        self.show_key = show.start
        if self._links is not None:
            tally.data["viewers"].link(*self._links)
        for user, _, profile in present:
            self._viewer(tally.data, user, profile)

    def close(self, end: float | None, present, regions, utc: int, remember: int = 1 << 62) -> None:
        """End the current tally at `end` (None: its last event); `present`: (user, start,
        profile) of the presences still going then (they count their time up to it)."""
        tally = self.current
        if tally is None:
            return
        d = tally.data
        end = d["last_ts"] if end is None else end
        # Presences going on at the end count their time up to it: those still tracked, and
        # those that ended after it (the room may have let their viewers go since).
        going = [(item[2], item[3]) for item in d["pending_ends"] if item[3] <= end]
        for user, start in (*going, *((user, start) for user, start, _ in present)):
            if end - start >= 60:
                d["stayed"].add(Tally.number(d, user))
        d["end"] = end
        self.last = {key: value for key, value in self.totals(d["start"]).items()  # type: ignore[union-attr]
                     if key not in ("paid", "refunded")}
        self.last.update(paid={}, refunded=[])
        self.closed.append(summary(d, regions, utc))
        remembered = self.remembered
        for user, profile in d["viewers"].items():  # the newest last: the first to go are the oldest
            remembered.pop(user, None)
            remembered[user] = profile
        while len(remembered) > remember:
            del remembered[next(iter(remembered))]
        self.current = None
        self.show_key = None

    def provisional(self, now: float, present, regions, utc: int) -> dict | None:
        """The summary of the show going on, as of `now` (the final frontier), not closing it."""
        if self.current is None:
            return None
        d = dict(self.current.data)
        d["stayed"] = d["stayed"].copy()
        for user, start, _ in present:
            if now - start >= 60:
                d["stayed"].add(Tally.number(d, user))  # (numbered for good: a viewer of the show)
        d["end"] = d["last_ts"]
        result = summary(d, regions, utc)
        result["provisional"] = True
        return result

    def take(self) -> list[dict]:
        taken, self.closed = self.closed, []
        return taken

    # ---- items ----

    def _viewer(self, d: dict, user: str, profile: int) -> None:
        profile = shared(profile)
        viewers = d["viewers"]
        known = viewers.get(user)
        by = d["by_viewers"]
        if known is None:
            for c in columns(profile):
                by[c] = by.get(c, 0) + 1
        elif known != profile:
            extra = d["extra"]
            seen = extra.get(user) or {known}
            if profile not in seen:
                had = {c for p in seen for c in columns(p)}
                for c in columns(profile):
                    if c not in had:
                        by[c] = by.get(c, 0) + 1
                seen.add(profile)
                extra[user] = seen
        viewers[user] = profile

    def feed(self, item: tuple, utc: int) -> None:
        """One item of the current show (the caller opened it)."""
        d = self.current.data  # type: ignore[union-attr]
        ts, kind = item[0], item[1]
        tail = d["tail"]
        if tail and kind != END and ts > tail[-1][0]:
            d["tail"] = []
            for earlier in tail:
                self._marks(d, earlier)
        if kind == END:
            if ts > d["last_ts"]:
                d["pending_ends"].append(item)
                return
        else:
            if ts > d["last_ts"]:
                d["last_ts"] = ts
            if d["pending_ends"] or d["pending_peaks"]:
                self._confirm(d, ts, utc)
        if kind == VIEW:
            return
        hour = "%02d" % (int((ts + utc) // 3600) % 24)
        if kind == START:  # (ts, START, user, profile)
            user, profile = item[2], item[3]
            self._viewer(d, user, profile)
            d["entries"] += 1
            by = d["by_entries"]
            for c in columns(profile):
                by[c] = by.get(c, 0) + 1
            self._hour(d, hour)["entries"] += 1
            d["tail"].append(item)
        elif kind == END:  # (ts, END, user, start, profile)
            user, start, profile = item[2], item[3], item[4]
            duration = ts - start
            d["ends"] += 1
            d["watch"] += duration
            if duration >= 60:
                d["stayed"].add(Tally.number(d, user))
            by_ends, by_watch = d["by_ends"], d["by_watch"]
            for c in columns(profile):
                by_ends[c] = by_ends.get(c, 0) + 1
                by_watch[c] = by_watch.get(c, 0.0) + duration
        elif kind == DANMAKU:  # (ts, DANMAKU, user, profile)
            d["interacting"].add(Tally.number(d, item[2]))
        elif kind == CLICK:  # (ts, CLICK, user, profile, target, product)
            user, profile, target, product = item[2], item[3], item[4], item[5]
            number = Tally.number(d, user)
            if target == "product":
                _add_columns(d["clickers"], user, columns(profile))
                self._product(d, product)["clickers"].add(number)
                self._hour(d, hour)["clickers"].add(number)
                d["tail"].append(item)
            elif target == "cart":
                d["carters"].add(number)
                self._product(d, product)["carters"].add(number)
            else:
                d["interacting"].add(number)
        elif kind == ORDER:  # (ts, ORDER, user, profile, status, order_id, product, micro, counted)
            user, profile, status, order_id, product, micro, counted = item[2:9]
            if status in ("created", "paid"):
                d["ordering"].add(Tally.number(d, user))
            if status == "paid" and counted:
                self._paid(d, user, profile, order_id, product, micro, hour)
                d["tail"].append(item)
            elif status == "refunded":
                paid = d["paid"].get(order_id)
                if paid is not None and order_id not in d["refunded"]:
                    d["refunded"].add(order_id)
                    self._product(d, paid)["refunds"] += 1
        elif kind == HEALTH:  # (ts, HEALTH, stall_ms, play_ms, errors, beacons): a bucket's at its last ts
            d["stall_ms"] += item[2]
            d["play_ms"] += item[3]
            d["errors"] += item[4]
            d["beacons"] += item[5]
        elif kind == SHOW:  # (ts, SHOW, event, limited)
            self._show_event(d, ts, item[2])

    def instant(self, moment: float, online: int) -> None:
        """An evaluation instant of the current show (at or after its start)."""
        d = self.current.data  # type: ignore[union-attr]
        if moment <= d["last_ts"]:
            if online > d["peak_online"]:
                d["peak_online"] = online
        else:
            d["pending_peaks"].append([moment, online])

    def _confirm(self, d, ts, utc) -> None:
        """An event at `ts`: what waited for one at or after it is in the show."""
        ends, d["pending_ends"] = d["pending_ends"], []
        for item in ends:
            if item[0] <= ts:
                self.feed(tuple(item), utc)
            else:
                d["pending_ends"].append(item)
        peaks, d["pending_peaks"] = d["pending_peaks"], []
        for moment, online in peaks:
            if moment <= ts:
                d["peak_online"] = max(d["peak_online"], online)
            else:
                d["pending_peaks"].append([moment, online])

    def _paid(self, d, user, profile, order_id, product, micro, hour):
        d["orders"] += 1
        d["gmv"] += micro
        d["paid"][order_id] = product
        by_orders, by_gmv = d["by_orders"], d["by_gmv"]
        age_column = None
        _add_columns(d["buyers"], user, columns(profile))
        for c in columns(profile):
            by_orders[c] = by_orders.get(c, 0) + 1
            by_gmv[c] = by_gmv.get(c, 0) + micro
            if c in AGE_COLUMNS:
                age_column = c
        key = (age_column, product)
        d["age_product"][key] = d["age_product"].get(key, 0) + micro
        number = Tally.number(d, user)
        record = self._product(d, product)
        record["buyers"].add(number)
        record["orders"] += 1
        record["gmv"] += micro
        hours = self._hour(d, hour)
        hours["buyers"].add(number)
        hours["orders"] += 1
        hours["gmv"] += micro

    def _marks(self, d, item) -> None:
        """An item's share of the pinned stretch and the promotions going on (see `tail`)."""
        segment = self._segment(d)
        kind = item[1]
        if kind == START:
            if segment is not None:
                segment["entries"] += 1
            return
        number = Tally.number(d, item[2])
        if kind == CLICK:
            product = item[5]
            if segment is not None and segment["product_id"] == product:
                segment["clickers"].add(number)
            for promo in d["promos"]:
                if promo["open"] and promo["product_id"] in (None, product):
                    promo["clickers"].add(number)
            return
        product, micro = item[6], item[7]  # a counted paid order
        if segment is not None:
            segment["gmv_all"] += micro
            if segment["product_id"] == product:
                segment["orders"] += 1
                segment["gmv"] += micro
        for promo in d["promos"]:
            if promo["open"] and promo["product_id"] in (None, product):
                promo["buyers"].add(number)
                promo["orders"] += 1
                promo["gmv"] += micro

    def _show_event(self, d, ts, event) -> None:
        action = event.action
        if action == "product":
            d["catalogue"][event.product_id] = [event.title, event.category]
        elif action == "pin":
            self._end_segment(d, ts)
            d["segments"].append({"product_id": event.product_id, "start": ts, "end": None, "entries": 0,
                                  "clickers": Members(), "orders": 0, "gmv": 0, "gmv_all": 0})
        elif action == "unpin":
            self._end_segment(d, ts)
        elif action == "promo_start":
            d["promos"].append({"promo_id": event.promo_id, "promo_type": event.promo_type,
                                "product_id": event.product_id, "start": ts, "end": None, "open": True,
                                "clickers": Members(), "buyers": Members(), "orders": 0, "gmv": 0})
        elif action == "promo_end":
            for promo in d["promos"]:
                if promo["open"] and promo["promo_id"] == event.promo_id:
                    promo["open"], promo["end"] = False, ts
        elif action == "spend":
            d["spend"][event.channel] = d["spend"].get(event.channel, 0) + round(event.amount * MICRO)
        elif action == "end":
            d["ended_at"] = ts
            if d["show_id"] is None:  # SPEC §10: from the start event, else from the end event
                d["show_id"] = event.show_id
            if d["title"] is None:
                d["title"] = event.title

    @staticmethod
    def _segment(d):
        segments = d["segments"]
        if segments and segments[-1]["end"] is None:
            return segments[-1]
        return None

    def _end_segment(self, d, ts):
        segment = self._segment(d)
        if segment is not None:
            segment["end"] = ts

    @staticmethod
    def _product(d, product) -> dict:
        record = d["products"].get(product)
        if record is None:
            record = d["products"][product] = {"clickers": Members(), "carters": Members(), "buyers": Members(),
                                               "orders": 0, "gmv": 0, "refunds": 0}
        return record

    @staticmethod
    def _hour(d, hour) -> dict:
        record = d["hours"].get(hour)
        if record is None:
            record = d["hours"][hour] = {"entries": 0, "clickers": Members(), "buyers": Members(), "orders": 0,
                                         "gmv": 0}
        return record


def summary(d: dict, regions, utc: int) -> dict:
    """The SPEC §10 object of a tally whose `end` is set."""
    end = d["end"]
    money = 1 / MICRO
    viewers = len(d["viewers"])
    gmv = d["gmv"] * money
    buyers = d["buyers"]
    clickers = d["clickers"]
    totals = {
        "viewers": viewers, "entries": d["entries"], "peak_online": d["peak_online"],
        **presence_figures(viewers, d["entries"], d["watch"], d["ends"]), "stayed_60s": len(d["stayed"]),
        "interacting": len(d["interacting"]), "clickers": len(clickers), "carters": len(d["carters"]),
        "ordering": len(d["ordering"]), "buyers": len(buyers), **sales_figures(d["orders"], gmv, viewers),
        "refunds": len(d["refunded"]), "refund_rate": _ratio(len(d["refunded"]), d["orders"]),
        "gpm": _ratio(gmv * 1000, d["entries"]),
        "conversion_rate": _ratio(len(clickers.keys() & buyers.keys()), len(clickers)),
        "stall_ratio": _ratio(d["stall_ms"], d["stall_ms"] + d["play_ms"]),
        "error_rate": _ratio(d["errors"], d["beacons"]),
    }
    names = column_names(regions)
    by: dict[str, dict] = {dim: {} for dim in ("source", "device", "region", "age_band", "gender", "follower")}
    by_clickers, by_buyers = _per_column(clickers), _per_column(buyers)
    by_converted = _per_column(clickers, buyers)  # the clickers who also paid, by their click's columns
    listed = set(d["by_viewers"]) | set(d["by_entries"]) | set(d["by_ends"]) | set(by_clickers) | \
        set(by_buyers) | set(d["by_orders"])
    for c in sorted(listed):
        dim, value = names.get(c, ("region", "other") if c >= REGION_BASE else (None, None))
        if dim is None:
            continue
        v_viewers = d["by_viewers"].get(c, 0)
        v_clickers, v_buyers = by_clickers.get(c, 0), by_buyers.get(c, 0)
        v_orders = d["by_orders"].get(c, 0)
        v_gmv = d["by_gmv"].get(c, 0) * money
        entries, ends = d["by_entries"].get(c, 0), d["by_ends"].get(c, 0)
        if not (v_viewers or entries or ends or v_clickers or v_buyers or v_orders):
            continue
        by[dim][value] = {
            **presence_figures(v_viewers, entries, d["by_watch"].get(c, 0.0), ends),
            "clickers": v_clickers, "buyers": v_buyers,
            "conversion_rate": _ratio(by_converted.get(c, 0), v_clickers),
            **sales_figures(v_orders, v_gmv, v_viewers),
        }
    catalogue = d["catalogue"]
    products = {}
    categories: dict[str, dict] = {}
    for pid, rec in sorted(d["products"].items()):
        if not (rec["clickers"] or rec["carters"] or rec["orders"]):
            continue
        title, category = catalogue.get(pid, (None, None))
        category = category or "unknown"
        p_gmv = rec["gmv"] * money
        products[pid] = {
            "title": title, "category": category, "clickers": len(rec["clickers"]), "carters": len(rec["carters"]),
            "buyers": len(rec["buyers"]), "orders": rec["orders"], "gmv": p_gmv, "refunds": rec["refunds"],
            "refund_rate": _ratio(rec["refunds"], rec["orders"]),
            "conversion_rate": _ratio(rec["clickers"].common(rec["buyers"]), len(rec["clickers"])),
        }
        cat = categories.get(category)
        if cat is None:
            cat = categories[category] = {"clickers": set(), "buyers": set(), "orders": 0, "gmv": 0}
        cat["clickers"].update(rec["clickers"])
        cat["buyers"].update(rec["buyers"])
        cat["orders"] += rec["orders"]
        cat["gmv"] += rec["gmv"]
    top = sorted((p["gmv"] for p in products.values()), reverse=True)[:10]
    age_category: dict[str, dict[str, float]] = {}
    for (age_column, pid), micro in sorted(d["age_product"].items(), key=lambda kv: (kv[0][0] or 0, kv[0][1])):
        age = AGE_COLUMNS.get(age_column, "unknown")
        category = (catalogue.get(pid, (None, None))[1]) or "unknown"
        cell = age_category.setdefault(age, {})
        cell[category] = cell.get(category, 0) + micro
    spend = {channel: micro * money for channel, micro in sorted(d["spend"].items())}
    spend_total = sum(d["spend"].values()) * money
    roi_by_channel = {}
    for channel, micro in sorted(d["spend"].items()):
        attributed = d["by_gmv"].get(source_column(channel), 0) * money
        roi_by_channel[channel] = _ratio(attributed, micro * money)
    return {
        "room_id": d["room_id"], "show_id": d["show_id"], "start": d["start"], "end": end, "title": d["title"],
        "totals": totals,
        "funnel": [viewers, totals["stayed_60s"], totals["clickers"], totals["ordering"], totals["buyers"]],
        "by": by,
        "products": products,
        "top10_share": _ratio(sum(top), gmv) if gmv else None,
        "categories": {
            name: {"clickers": len(c["clickers"]), "buyers": len(c["buyers"]), "orders": c["orders"],
                   "gmv": c["gmv"] * money,
                   "conversion_rate": _ratio(len(c["clickers"] & c["buyers"]), len(c["clickers"]))}
            for name, c in sorted(categories.items()) if c["clickers"] or c["buyers"] or c["orders"]},
        "age_category": {age: {cat: micro * money for cat, micro in cells.items()}
                         for age, cells in age_category.items()},
        "segments": [{"product_id": s["product_id"], "start": s["start"], "end": end if s["end"] is None else s["end"],
                      "entries": s["entries"], "clickers": len(s["clickers"]), "orders": s["orders"],
                      "gmv": s["gmv"] * money, "gmv_all": s["gmv_all"] * money} for s in d["segments"]],
        "promos": [{"promo_id": p["promo_id"], "promo_type": p["promo_type"], "product_id": p["product_id"],
                    "start": p["start"], "end": end if p["end"] is None else p["end"],
                    "clickers": len(p["clickers"]), "buyers": len(p["buyers"]), "orders": p["orders"],
                    "gmv": p["gmv"] * money,
                    "conversion_rate": _ratio(p["clickers"].common(p["buyers"]), len(p["clickers"]))}
                   for p in d["promos"]],
        "spend": spend,
        "spend_total": spend_total,
        "roi": _ratio(gmv, spend_total),
        "roi_by_channel": roi_by_channel,
        "hours": {h: {"entries": r["entries"], "clickers": len(r["clickers"]), "buyers": len(r["buyers"]),
                      "orders": r["orders"], "gmv": r["gmv"] * money}
                  for h, r in sorted(d["hours"].items())
                  if r["entries"] or r["clickers"] or r["buyers"] or r["orders"]},
    }
