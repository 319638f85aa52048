"""Time-bucketed aggregates with a final frontier.

Time is cut into buckets of one step: bucket `b` holds what happened in `((b-1)*step, b*step]`, so
every window of the SPEC, `(t-W, t]` with `t` and `W` multiples of the step, is a whole number of
buckets and bucketing loses nothing. Every aggregate here keeps running totals at the *frontier*
`F` (the last final instant: no event at or before it can arrive any more) and reads any instant
`t >= F` as those totals plus the few buckets after the frontier. Advancing the frontier costs a
constant per bucket, whatever the window.
"""

from __future__ import annotations

import math
from typing import Any
from array import array
from bisect import bisect_left
from collections import Counter
from itertools import accumulate, chain, compress, repeat
from operator import add, itemgetter, sub

from .state import SET, DictOf, Field, array_bytes, array_of

_ZERO_BIN = -(1 << 30)  # sketch bin of a zero value
_FIRST = itemgetter(0)


class BucketSums:
    """Integer sums per bucket, with window totals `(F-W, F]` and cumulative totals `<= F`."""

    __slots__ = ("width", "frontier", "buckets", "window", "total", "_zero")
    # Checkpoints (see state.py). The vectors' fields are named by the owner's codec (`Vectors`).
    STATE = (Field("width"), Field("frontier"), Field("buckets"), Field("window"), Field("total"))

    def __init__(self, fields: int, width: int, frontier: int):
        self.width = width  # window length in buckets
        self.frontier = frontier
        self.buckets: dict[int, Any] = {}  # bucket -> its vector (a list, or a short tuple once final)
        self.window = [0] * fields
        self.total = [0] * fields
        self._zero = (0,) * fields

    def _restored(self):
        self._zero = (0,) * len(self.window)

    def at(self, bucket: int) -> list[int]:
        vector = self.buckets.get(bucket)
        if vector is None:
            vector = self.buckets[bucket] = [0] * len(self.window)
        return vector

    def get(self, bucket: int):
        return self.buckets.get(bucket, self._zero)

    def advance(self, keep: int, narrow: int = 0) -> None:
        """Move the frontier by one bucket; keep buckets newer than `frontier - keep`, and of the
        one leaving the window only its first `narrow` fields when `narrow`."""
        self.frontier = frontier = self.frontier + 1
        entering = self.buckets.get(frontier, self._zero)
        leaving = self.buckets.get(frontier - self.width, self._zero)
        window, total = self.window, self.total
        for i, value in enumerate(entering):
            total[i] += value
            window[i] += value - leaving[i]
        self.buckets.pop(frontier - keep, None)
        if narrow and leaving is not self._zero and keep > self.width:
            self.buckets[frontier - self.width] = leaving[:narrow]

    def vectors_at(self, t: int) -> tuple[list, list]:
        """(window totals, cumulative totals) of every field at instant `t >= frontier`."""
        window, total = self.window, self.total
        if t <= self.frontier:
            return window, total
        get, zero, width = self.buckets.get, self._zero, self.width
        for b in range(self.frontier + 1, t + 1):
            # Whole vectors at a time, in C (the buckets inside the window are never narrow).
            entering, leaving = get(b, zero), get(b - width, zero)
            if entering is not zero:
                total = list(map(add, total, entering))
                window = list(map(add, window, entering))
            if leaving is not zero:
                window = list(map(sub, window, leaving))
        return window[:] if window is self.window else window, total[:] if total is self.total else total

    def window_at(self, t: int, field: int) -> int:
        """Sum of `field` over `(t-W, t]`, for `t >= frontier`."""
        value = self.window[field]
        get, zero, width = self.buckets.get, self._zero, self.width
        for b in range(self.frontier + 1, t + 1):
            value += get(b, zero)[field] - get(b - width, zero)[field]
        return value

    def total_at(self, t: int, field: int) -> int:
        """Sum of `field` over all buckets `<= t`, for `t >= frontier`."""
        value = self.total[field]
        get, zero = self.buckets.get, self._zero
        for b in range(self.frontier + 1, t + 1):
            value += get(b, zero)[field]
        return value

    def range_sum(self, first: int, last: int, field: int) -> int:
        """Sum of `field` over buckets `first..last` (inclusive), all still kept."""
        get, zero = self.buckets.get, self._zero
        return sum(get(b, zero)[field] for b in range(first, last + 1))


class DistinctWindow:
    """Distinct users active in `(t-W, t]`.

    Final part: each user's last active bucket at or before the frontier (`last`), and how many
    users have each bucket as their last (`count`); the window total is the sum of `count` over
    the window, kept running. Buckets after the frontier keep plain sets (`pending`). A user
    whose last bucket left the window stays in `last` until a pruning (see `advance`).
    """

    __slots__ = ("width", "frontier", "last", "count", "pending", "window")
    STATE = (Field("width"), Field("frontier"), Field("last"), Field("count"), Field("pending", DictOf(SET)),
             Field("window"))

    def __init__(self, width: int, frontier: int):
        self.width = width
        self.frontier = frontier
        self.last: dict[str, int] = {}
        self.count: dict[int, int] = {}
        self.pending: dict[int, set] = {}
        self.window = 0


    def share(self, own: dict[str, str]) -> None:
        """Use the owner's copy of each user id it has one of (`own`: user id -> that copy)."""
        last = self.last
        self.last = dict(zip(map(own.get, last, last), last.values()))
        self.pending = {bucket: set(map(own.get, users, users)) for bucket, users in self.pending.items()}

    def add(self, user: str, bucket: int) -> None:
        users = self.pending.get(bucket)
        if users is None:
            self.pending[bucket] = {user}
        else:
            users.add(user)

    def advance(self) -> None:
        self.frontier = frontier = self.frontier + 1
        oldest = frontier - self.width  # falls out of the window now
        last, count = self.last, self.count
        arrived = self.pending.pop(frontier, None)
        if arrived:
            for user in arrived:
                previous = last.get(user)
                if previous is not None and previous >= oldest:  # counted in the window: move
                    count[previous] -= 1
                    self.window -= 1
                last[user] = frontier
            count[frontier] = len(arrived)
            self.window += len(arrived)
        self.window -= count.pop(oldest, 0)
        if len(last) > 2 * self.window + 64:
            # Users out of the window outnumber those in it: prune them, all at once (a constant
            # per user added, on average), rather than keep each bucket's users to prune them as
            # it leaves the window (8 B per user and bucket).
            self.last = {user: b for user, b in last.items() if b > oldest}

    def _pending_users(self, t: int):
        """Users of the buckets after the frontier that are inside `(t-W, t]`."""
        first = max(self.frontier, t - self.width) + 1
        sets = [self.pending[b] for b in range(first, t + 1) if b in self.pending]
        if not sets:
            return ()
        if len(sets) == 1:
            return sets[0]
        return set().union(*sets)

    def count_at(self, t: int) -> int:
        """Distinct users active in `(t-W, t]`, for `t >= frontier`."""
        cutoff = t - self.width
        value = self.window
        for b in range(self.frontier - self.width + 1, cutoff + 1):
            value -= self.count.get(b, 0)
        # Plus the pending users not already counted (their last final bucket is at or before the
        # cutoff, or they have none): all of them less those counted, in C (this runs for every
        # room and CDN at every step).
        users = self._pending_users(t)
        if users:
            value += len(users) - sum(map(cutoff.__lt__, map(self.last.get, users, repeat(cutoff))))
        return value

    def members_at(self, t: int):
        """The users active in `(t-W, t]`."""
        cutoff = t - self.width
        last = self.last
        seen = set(compress(last, map(cutoff.__lt__, last.values())))  # in C: a surge has many
        seen.update(self._pending_users(t))
        return seen

    def count_among(self, users: set, t: int) -> int:
        """How many of `users` are active in `(t-W, t]`: `len(members_at(t) & users)` without
        listing every member (a room's payers among its clickers), in C."""
        cutoff = t - self.width
        found = set(compress(users, map(cutoff.__lt__, map(self.last.get, users, repeat(cutoff)))))
        pending = self._pending_users(t)
        if pending:
            found.update(users.intersection(pending))
        return len(found)


_BINS: dict[int, int] = {}  # one int object per bin for every sketch's window (see `advance`)


def frozen(pairs: array) -> bytes:
    """A final bucket's flat pairs as the bytes of their array: a bytes object's header is 33 B
    where an array's is 64, and there is one per bucket of every sketch and breakdown, a few
    hundred per room. Read back with `memoryview(...).cast(typecode)` (native order)."""
    return pairs.tobytes()


def _frozen_bytes(typecode: str, value) -> bytes:
    """Frozen flat pairs (bytes, or an array) as checkpoint bytes (little-endian)."""
    return array_bytes(array(typecode, value) if type(value) is bytes else value)


class _Bins:
    """A sketch's buckets in a checkpoint: a bucket's dict as it is, its flat pairs as
    [type code, bytes] (int16 pairs are frozen bytes in memory, see `advance`)."""

    @staticmethod
    def encode(buckets):
        return {b: bins if type(bins) is dict else ["h", _frozen_bytes("h", bins)] if type(bins) is bytes
                else [bins.typecode, array_bytes(bins)] for b, bins in buckets.items()}

    @staticmethod
    def decode(data):
        return {b: bins if type(bins) is dict else frozen(array_of(*bins)) if bins[0] == "h" else array_of(*bins)
                for b, bins in data.items()}


def pairs_of(bins, typecode: str = "h"):
    """(key, count) pairs of a bucket (a sketch's bins, first presences per profile): a dict while it
    may still change, then flat pairs: an array, or frozen bytes of `typecode`."""
    if type(bins) is dict:
        return bins.items()
    pairs = iter(memoryview(bins).cast(typecode) if type(bins) is bytes else bins)  # type: ignore[call-overload]
    return zip(pairs, pairs)


class LatencySketch:
    """Nearest-rank percentiles over a window from log-spaced bins (relative error <= 1%).

    A bucket counts its values per bin in a dict until it is final; then it is read only twice
    more (when it leaves the window, and by a snapshot reading the window's far end), so it is
    kept as an array of flat (bin, count) pairs, a tenth of the dict and its int objects.
    """

    __slots__ = ("width", "frontier", "buckets", "window")
    STATE = (Field("width"), Field("frontier"), Field("buckets", _Bins()), Field("window"))

    GAMMA = 1.02  # (1 + a) / (1 - a) for a relative accuracy a of about 1%
    _LOG_GAMMA = math.log(GAMMA)

    def __init__(self, width: int, frontier: int):
        self.width = width
        self.frontier = frontier
        self.buckets: dict[int, Any] = {}  # bucket -> {bin: count}, or flat int16 pairs once final
        self.window: dict[int, int] = {}

    def _restored(self):
        self.window = {_BINS.setdefault(index, index): n for index, n in self.window.items()}

    @classmethod
    def bin_of(cls, value: float) -> int:
        if value <= 0:
            return _ZERO_BIN
        return math.ceil(math.log(value) / cls._LOG_GAMMA)

    @classmethod
    def value_of(cls, index: int) -> float:
        if index == _ZERO_BIN:
            return 0.0
        return 2 * cls.GAMMA ** index / (cls.GAMMA + 1)

    def add(self, value: float, bucket: int) -> None:
        bins = self.buckets.get(bucket)
        if bins is None:
            bins = self.buckets[bucket] = {}
        index = self.bin_of(value)
        bins[index] = bins.get(index, 0) + 1

    def add_bin(self, index: int, bucket: int) -> None:
        """`add` of a value whose bin is known (`bin_of`): one log for the room and its CDN."""
        bins = self.buckets.get(bucket)
        if bins is None:
            self.buckets[bucket] = {index: 1}
        else:
            bins[index] = bins.get(index, 0) + 1

    def advance(self) -> None:
        self.frontier = frontier = self.frontier + 1
        window = self.window
        bins = self.buckets.get(frontier)
        if bins:
            for index, n in bins.items():
                count = window.get(index)
                if count is None:  # a bin above 256 is an int object: share one
                    window[_BINS.setdefault(index, index)] = n
                else:
                    window[index] = count + n
            pairs = array("i", chain.from_iterable(bins.items()))
            if -32768 <= min(pairs) and max(pairs) <= 32767:
                self.buckets[frontier] = frozen(array("h", pairs))  # the usual case: half the size
            else:
                self.buckets[frontier] = pairs
        for index, n in pairs_of(self.buckets.pop(frontier - self.width, {})):
            left = window[index] - n
            if left:
                window[index] = left
            else:
                del window[index]

    def quantiles_at(self, t: int, qs: tuple[float, ...]) -> list[float | None]:
        bins = self.window
        if t > self.frontier:
            # Only the buckets with values (most of a small room's or CDN's are empty, and every
            # room and CDN reads some at every step).
            get, first = self.buckets.get, self.frontier + 1
            entering = [bucket for bucket in map(get, range(first, t + 1)) if bucket]
            leaving = [bucket for bucket in map(get, range(first - self.width, t + 1 - self.width)) if bucket]
            if entering or leaving:
                bins = dict(bins)
                for bucket in entering:
                    for index, n in pairs_of(bucket):
                        bins[index] = bins.get(index, 0) + n
                for bucket in leaving:
                    for index, n in pairs_of(bucket):
                        bins[index] = bins.get(index, 0) - n
        return self._ranked(bins, qs)

    def recent_quantiles(self, t: int, buckets: int, qs: tuple[float, ...]) -> list[float | None]:
        """Percentiles over the last `buckets` buckets `(t-buckets, t]` only (a short window inside
        the window: its buckets are all still kept), for `t >= frontier`."""
        bins: dict[int, int] = {}
        for bucket in map(self.buckets.get, range(t - buckets + 1, t + 1)):
            if bucket:
                for index, n in pairs_of(bucket):
                    bins[index] = bins.get(index, 0) + n
        return self._ranked(bins, qs)

    @classmethod
    def _ranked(cls, bins: dict, qs: tuple[float, ...]) -> list[float | None]:
        """Nearest-rank percentiles of binned counts: the first bin whose running count reaches
        the rank (running counts and the search in C: every room and CDN reads some each step)."""
        ordered = sorted(bins)
        running = list(accumulate(map(bins.__getitem__, ordered)))
        total = running[-1] if running else 0
        if total <= 0:
            return [None] * len(qs)
        return [cls.value_of(ordered[bisect_left(running, max(1, math.ceil(q * total)))]) for q in qs]


class FlatPairs:
    """Buckets in a checkpoint that are a dict until final, then flat pairs of type `typecode`
    (frozen bytes, see `frozen`): a dict as it is, the pairs as their bytes."""

    def __init__(self, typecode: str):
        self.typecode = typecode

    def encode(self, buckets):
        return {b: sums if type(sums) is dict else _frozen_bytes(self.typecode, sums) for b, sums in buckets.items()}

    def decode(self, data):
        return {b: sums if type(sums) is dict else frozen(array_of(self.typecode, sums)) for b, sums in data.items()}


def _pairs(sums):
    """(key, value) pairs of a KeyedSums bucket: a dict while it may change, then flat doubles."""
    if type(sums) is dict:
        return sums.items()
    values = iter(memoryview(sums).cast("d") if type(sums) is bytes else sums)
    return zip(map(int, values), values)


class KeyedSums:
    """Sums per key per bucket, for keys that come and go (a breakdown's columns, products):
    a bucket holds only the keys it touched. Window totals `(F-W, F]` of every key, except the
    keys that `cumulative(key)` names, which have cumulative totals `<= F` only (as a presence's
    coverage in `BucketSums`). Buckets are kept for the window only; with int keys (`compact`), a
    final bucket becomes an array of flat (key, value) doubles, a sixth of its dict."""

    __slots__ = ("width", "frontier", "buckets", "window", "total", "stride", "cumulative_field")
    STATE = (Field("width"), Field("frontier"), Field("buckets", FlatPairs("d")), Field("window"), Field("total"),
             Field("stride", default=0), Field("cumulative_field", default=-1))

    def __init__(self, width: int, frontier: int, stride: int = 0, cumulative_field: int = -1):
        self.width = width
        self.frontier = frontier
        self.buckets: dict[int, Any] = {}
        self.window: dict = {}
        self.total: dict = {}
        # Int keys `column * stride + field`: the field `cumulative_field` is cumulative. 0: keys
        # of any kind, all windowed, and buckets kept as dicts.
        self.stride = stride
        self.cumulative_field = cumulative_field

    def at(self, bucket: int) -> dict:
        sums = self.buckets.get(bucket)
        if sums is None:
            sums = self.buckets[bucket] = {}
        return sums

    def add(self, bucket: int, key, delta) -> None:
        sums = self.buckets.get(bucket)
        if sums is None:
            self.buckets[bucket] = {key: delta}
        else:
            sums[key] = sums.get(key, 0) + delta

    def _split(self, sums) -> tuple[dict, dict]:
        """A bucket's (windowed, cumulative) parts."""
        stride = self.stride
        if not stride:
            return sums, {}
        field = self.cumulative_field
        windowed, cumulative = {}, {}
        for key, value in _pairs(sums):
            if key % stride == field:
                cumulative[key] = value
            else:
                windowed[key] = value
        return windowed, cumulative

    def advance(self) -> None:
        self.frontier = frontier = self.frontier + 1
        window, total = self.window, self.total
        entering = self.buckets.get(frontier)
        if entering:
            windowed, cumulative = self._split(entering)
            for key, value in windowed.items():
                window[key] = window.get(key, 0) + value
            for key, value in cumulative.items():
                left = total.get(key, 0) + value
                if left:
                    total[key] = left
                else:
                    total.pop(key, None)
            if self.stride:  # final: only its windowed part is read again, as it leaves
                self.buckets[frontier] = frozen(array("d", chain.from_iterable(windowed.items())))
        leaving = self.buckets.pop(frontier - self.width, None)
        if leaving:
            for key, value in _pairs(leaving):
                left = window.get(key, 0) - value
                if left:
                    window[key] = left
                else:
                    window.pop(key, None)

    def at_instant(self, t: int) -> tuple[dict, dict]:
        """(window totals, cumulative totals) at instant `t >= frontier`."""
        window, total = self.window, self.total
        if t <= self.frontier:
            return window, total
        window, total = dict(window), dict(total)
        get, width = self.buckets.get, self.width
        for b in range(self.frontier + 1, t + 1):
            entering = get(b)
            if entering:
                windowed, cumulative = self._split(entering)
                for key, value in windowed.items():
                    window[key] = window.get(key, 0) + value
                for key, value in cumulative.items():
                    total[key] = total.get(key, 0) + value
            for key, value in _pairs(get(b - width) or {}):
                window[key] = window.get(key, 0) - value
        return window, total


class _Keys:
    """(group, user) keys in a checkpoint: as two-element lists (msgpack has no tuples)."""

    @staticmethod
    def encode(last):
        return [[group, user, b] for (group, user), b in last.items()]

    @staticmethod
    def decode(data):
        return {(group, user): b for group, user, b in data}


class _PendingKeys:
    @staticmethod
    def encode(pending):
        return {b: sorted([group, user] for group, user in keys) for b, keys in pending.items()}

    @staticmethod
    def decode(data):
        return {b: {(group, user) for group, user in keys} for b, keys in data.items()}


class GroupedDistinct:
    """Distinct users active in `(t-W, t]`, per group (a breakdown's column, a product), in one
    structure per room so that a step advances it once however many groups there are. As
    `DistinctWindow`, keyed by `(group, user)`, with its counts kept per group."""

    __slots__ = ("width", "frontier", "last", "count", "pending", "window", "groups_of")
    STATE = (Field("width"), Field("frontier"), Field("last", _Keys()), Field("count"),
             Field("pending", _PendingKeys()), Field("window"))

    def __init__(self, width: int, frontier: int):
        self.width = width
        self.frontier = frontier
        self.last: dict[tuple, int] = {}  # (group, user) -> its last final bucket
        self.count: dict[int, dict] = {}  # bucket -> {group: keys whose last bucket it is}
        self.pending: dict[int, set] = {}  # bucket after the frontier -> (group, user) keys
        self.window: dict = {}  # group -> distinct users in (F-W, F]
        # user -> the groups of `add_groups` keys of theirs in `last` or `pending` (a superset:
        # rebuilt when `last` is trimmed), so `count_users_among` looks up a few users' keys
        # instead of listing every member. Built at its first use (None until then: a window
        # that is never asked keeps no index).
        self.groups_of: dict | None = None

    def _restored(self) -> None:
        self.groups_of = None

    def _index(self) -> dict:
        groups_of: dict = {}
        for group, user in chain(self.last, *self.pending.values()):
            known = groups_of.get(user)
            if known is None:
                groups_of[user] = (group,)
            elif group not in known:
                groups_of[user] = known + (group,)
        self.groups_of = groups_of
        return groups_of

    def share(self, own: dict[str, str]) -> None:
        self.last = {(group, own.get(user, user)): b for (group, user), b in self.last.items()}
        self.pending = {b: {(group, own.get(user, user)) for group, user in keys} for b, keys in self.pending.items()}
        self.groups_of = None

    def add(self, key: tuple, bucket: int) -> None:
        keys = self.pending.get(bucket)
        if keys is None:
            self.pending[bucket] = {key}
        else:
            keys.add(key)

    def add_groups(self, groups: tuple, user: str, bucket: int) -> None:
        """`add` of `(group, user)` for each of `groups` (the keys made in C, by zip)."""
        keys = self.pending.get(bucket)
        if keys is None:
            self.pending[bucket] = set(zip(groups, repeat(user)))
        else:
            keys.update(zip(groups, repeat(user)))
        groups_of = self.groups_of
        if groups_of is not None:
            known = groups_of.get(user)
            if known is not groups:  # (a profile's columns are one shared tuple)
                if known is None:
                    groups_of[user] = groups
                elif not all(map(known.__contains__, groups)):  # a user seen with another profile too
                    groups_of[user] = tuple(dict.fromkeys(known + groups))

    def advance(self) -> None:
        self.frontier = frontier = self.frontier + 1
        oldest = frontier - self.width
        last, count, window = self.last, self.count, self.window
        arrived = self.pending.pop(frontier, None)
        if arrived:
            here = count[frontier] = {}
            for key in arrived:
                group = key[0]
                previous = last.get(key)
                if previous is not None and previous >= oldest:
                    count[previous][group] -= 1
                    window[group] -= 1
                last[key] = frontier
                here[group] = here.get(group, 0) + 1
                window[group] = window.get(group, 0) + 1
        leaving = count.pop(oldest, None)
        if leaving:
            for group, n in leaving.items():
                left = window[group] - n
                if left:
                    window[group] = left
                else:
                    del window[group]
        if len(last) > 2 * sum(window.values()) + 64:
            self.last = {key: b for key, b in last.items() if b > oldest}
            if self.groups_of is not None:
                self._index()

    def _pending_keys(self, t: int):
        first = max(self.frontier, t - self.width) + 1
        sets = [self.pending[b] for b in range(first, t + 1) if b in self.pending]
        if not sets:
            return ()
        return sets[0] if len(sets) == 1 else set().union(*sets)

    def counts_at(self, t: int) -> dict:
        """{group: distinct users active in (t-W, t]}, for `t >= frontier` (groups with none may
        be left out)."""
        cutoff = t - self.width
        counts = dict(self.window)
        for b in range(self.frontier - self.width + 1, cutoff + 1):
            for group, n in self.count.get(b, {}).items():
                counts[group] -= n
        # Plus the pending keys not already counted (their last final bucket is at or before the
        # cutoff, or they have none), picked and counted by group in C (a surge room has
        # thousands of pending keys, at every step).
        pending = self._pending_keys(t)
        if pending:
            fresh = compress(pending, map(cutoff.__ge__, map(self.last.get, pending, repeat(cutoff))))
            for group, n in Counter(map(_FIRST, fresh)).items():
                counts[group] = counts.get(group, 0) + n
        return counts

    def members_at(self, t: int) -> set:
        """The (group, user) keys active in `(t-W, t]`."""
        cutoff = t - self.width
        last = self.last
        keys = set(compress(last, map(cutoff.__lt__, last.values())))  # in C, as DistinctWindow's
        keys.update(self._pending_keys(t))
        return keys

    def active_among(self, keys, t: int) -> set:
        """Those of the (group, user) `keys` active in `(t-W, t]`: `members_at(t) & set(keys)`
        without listing every member (a room's payers against its thousands of clicking keys)."""
        cutoff = t - self.width
        keys = list(keys)
        found = set(compress(keys, map(cutoff.__lt__, map(self.last.get, keys, repeat(cutoff)))))  # in C
        pending = self._pending_keys(t)
        if pending:
            found.update(pending.intersection(keys))  # (a set: one bucket's or their union)
        return found

    def count_users_among(self, users, t: int) -> Counter:
        """{group: those of `users` with an `add_groups` key in it active in `(t-W, t]`}: the
        `users`' own keys looked up, however many members the groups have."""
        groups_of = self.groups_of if self.groups_of is not None else self._index()
        keys = [(group, user) for user in users if user in groups_of for group in groups_of[user]]
        return Counter(map(_FIRST, self.active_among(keys, t)))

    def drop_pending(self, bucket: int) -> set:
        """Take a non-final bucket's keys out (to be added again, re-attributed)."""
        return self.pending.pop(bucket, set())
