"""Viewer attributes (SPEC §8) kept compactly: a presence's six attributes packed in one int.

A presence carries the attributes of the `enter` that started it. A million viewers each with
six strings would cost more than the rest of their state, so a presence keeps one int, its
*profile*: each attribute's value as a small index (0: "unknown"), packed in bit fields. Fixed
value sets (source, device, age band, gender, follower) are indexed by the SPEC's order; regions
are open-ended, so each room numbers the regions it meets, up to a cap past which they fold into
"other" (state stays bounded whatever the input).

A *column* is one (dimension, value) pair: the breakdowns keep their sums and distinct users
per column, and a profile maps to one column per dimension.
"""

from __future__ import annotations

from ..ingest.events import AGE_BANDS, DEVICES, GENDERS, SOURCES

UNKNOWN, OTHER = "unknown", "other"
DIMENSIONS = ("source", "device", "region", "age_band", "gender", "follower")
# The fixed dimensions' values by index; index 0 is "unknown" everywhere.
FIXED_VALUES = {
    "source": (UNKNOWN, *SOURCES),
    "device": (UNKNOWN, *DEVICES),
    "age_band": (UNKNOWN, *AGE_BANDS),
    "gender": (UNKNOWN, *GENDERS),
    "follower": (UNKNOWN, "yes", "no"),
}
# Bit fields of a profile: (shift, width). Region takes the high bits (up to 2**16 regions).
_FIELDS = {"follower": (0, 2), "gender": (2, 2), "age_band": (4, 3), "device": (7, 3), "source": (10, 3),
           "region": (13, 16)}
_INDEX = {dim: {value: i for i, value in enumerate(values)} for dim, values in FIXED_VALUES.items()}
_SOURCE, _DEVICE, _AGE, _GENDER = _INDEX["source"], _INDEX["device"], _INDEX["age_band"], _INDEX["gender"]
# Columns: the fixed dimensions' first, then one per region index (0 unknown, 1 other, 2.. named).
_FIXED_ORDER = ("source", "device", "age_band", "gender", "follower")
_FIXED_BASE: dict[str, int] = {}
_base = 0
for _dim in _FIXED_ORDER:
    _FIXED_BASE[_dim] = _base
    _base += len(FIXED_VALUES[_dim])
REGION_BASE = _base  # column of region index 0
REGION_OTHER = 1


def _unpack(profile: int, dim: str) -> int:
    shift, width = _FIELDS[dim]
    return (profile >> shift) & ((1 << width) - 1)


_COLUMNS: dict[int, tuple[int, ...]] = {}  # profile -> its columns (shared tuples)


def columns(profile: int) -> tuple[int, ...]:
    """The six columns of a profile, one per dimension."""
    found = _COLUMNS.get(profile)
    if found is None:
        found = tuple(_FIXED_BASE[dim] + _unpack(profile, dim) for dim in _FIXED_ORDER) + (
            REGION_BASE + _unpack(profile, "region"),)
        if len(_COLUMNS) < 1 << 16:
            _COLUMNS[profile] = found
    return found



class Regions:
    """A room's region names by index (0 unknown, 1 other): up to `cap` named ones."""

    def __init__(self, cap: int, names: list[str] | None = None):
        self.cap = cap
        self.names: list[str] = names if names is not None else [UNKNOWN, OTHER]
        self.index = {name: i for i, name in enumerate(self.names)}
        self.columns: dict[int, tuple[str, str]] = {}  # column_names' copy

    def index_of(self, name: str) -> int:
        found = self.index.get(name)
        if found is None:
            if len(self.names) - 2 >= self.cap:
                return REGION_OTHER
            found = self.index[name] = len(self.names)
            self.names.append(name)
        return found


def pack(view, regions: Regions) -> int:
    """The profile of an `enter` (0 when it carries no attribute)."""
    profile = 0
    if view.source is not None:
        profile |= _SOURCE[view.source] << 10
    if view.device is not None:
        profile |= _DEVICE[view.device] << 7
    if view.age_band is not None:
        profile |= _AGE[view.age_band] << 4
    if view.gender is not None:
        profile |= _GENDER[view.gender] << 2
    if view.follower is not None:
        profile |= 1 if view.follower else 2
    if view.region is not None:
        profile |= regions.index_of(view.region) << 13
    return shared(profile)


_SHARED: dict[int, int] = {}


def shared(profile: int) -> int:
    """One int object per profile (kept per viewer in the show ledger: 28 B each otherwise)."""
    found = _SHARED.get(profile)
    if found is None:
        if len(_SHARED) >= 1 << 18:
            return profile
        found = _SHARED[profile] = profile
    return found


_FIXED_NAMES = {_FIXED_BASE[dim] + i: (dim, value) for dim in _FIXED_ORDER for i, value in enumerate(FIXED_VALUES[dim])}


def column_names(regions: Regions) -> dict[int, tuple[str, str]]:
    """Column -> (dimension, value) for every column a room may have now (kept on `regions` and
    extended as it meets new regions: read at every snapshot)."""
    names = regions.columns
    if len(names) != len(_FIXED_NAMES) + len(regions.names):
        names = regions.columns = {**_FIXED_NAMES, **{REGION_BASE + i: ("region", name)
                                                      for i, name in enumerate(regions.names)}}
    return names


def source_column(channel: str) -> int:
    """The column of a `source` value (a spend channel is one)."""
    return _FIXED_BASE["source"] + _SOURCE[channel]


def presence_figures(viewers: int, entries: int, watch: float, ends: int) -> dict:
    """A breakdown value's presence figures (SPEC §8, §10): viewers, entries, mean watch time."""
    return {"viewers": viewers, "entries": entries, "avg_watch_seconds": watch / ends if ends else None}


def uv_figure(gmv: float, viewers: int) -> dict:
    """The GMV per viewer (UV value), as a room's window and a breakdown value name it."""
    return {"uv_value": gmv / viewers if viewers else None}


def sales_figures(orders: int, gmv: float, viewers: int) -> dict:
    """Paid orders, their GMV and the GMV per viewer (UV value) of a breakdown value or a show."""
    return {"orders": orders, "gmv": gmv, **uv_figure(gmv, viewers)}


AGE_COLUMNS = {_FIXED_BASE["age_band"] + i: value for i, value in enumerate(FIXED_VALUES["age_band"])}
