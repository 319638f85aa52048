"""Engine settings: the SPEC defaults, validated once."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from ..settings import setting

RETENTION_HORIZONS = (30, 60, 180)  # seconds, SPEC §5
_OFFSET = re.compile(r"^([+-])(\d{2}):?(\d{2})$")


def utc_offset_seconds(text: str) -> int | None:
    """Seconds east of UTC of "+08:00" (or "+0800", "-05:30"); None when it is not one."""
    match = _OFFSET.match(text.strip()) if isinstance(text, str) else None
    if match is None or int(match[2]) > 14 or int(match[3]) > 59:
        return None
    seconds = int(match[2]) * 3600 + int(match[3]) * 60
    return -seconds if match[1] == "-" else seconds


@dataclass(frozen=True)
class EngineConfig:
    step: float = setting(1.0, "Seconds between evaluation instants (and live updates).", above=0)
    window: float = setting(60.0, "Metric window W in seconds (a multiple of the step).", above=0)
    lateness: float = setting(5.0, "Allowed lateness in seconds; older events are rejected late.", minimum=0)
    presence_timeout: float = setting(90.0, "Seconds without enter/heartbeat after which a viewer is gone.",
                                      above=0)
    show_idle: float = setting(600.0, "A show ends after this many seconds without events.", above=0)
    future_limit: float = setting(300.0, "Events more than this many seconds ahead of the wall clock are "
                                  "rejected (future).", above=0)
    # Without a wall clock (replay): events this far ahead of the newest ts are rejected
    # (`future`); a recording with a longer silence between two shows needs a larger value.
    clockless_future_limit: float | None = setting(3600.0, "Reject events this many seconds ahead of the newest "
                                                   "ts so far (a skewed clock); raise it for a recording "
                                                   "with longer silences between shows.", above=0)
    # Room admission (docs/ARCHITECTURE.md, "Rooms are admitted"): any client can put any room id
    # on a beacon, so a room is tracked only once it has a show `start`, or `admit_events`
    # accepted events before its watermark passes its first event's ts + `admit_within`. Until
    # then its events are held in a small candidate entry and applied on admission; a candidate
    # that misses is forgotten and its events rejected `room_unadmitted`. 1: every room at once.
    admit_events: int = setting(3, "Events within --admit-within that admit a room without a show start.",
                                minimum=1)
    admit_within: float = setting(30.0, "Seconds of event time within which a room must reach --admit-events.",
                                  above=0)
    # Caps per engine (the worker has one per partition); events over them are rejected
    # `room_limit`. None: no cap. A busy room costs about 150 KB of engine state, a candidate
    # about 0.7 KB (measured in docs/ARCHITECTURE.md).
    max_rooms: int | None = setting(2000, "Live rooms per partition at most (room_limit beyond).", minimum=1)
    max_candidates: int | None = setting(20000, "Rooms not yet admitted per partition at most.", minimum=0)
    # Show summaries (SPEC §10): the hour of day of `hours`, in seconds east of UTC.
    utc_offset: str = setting("+08:00", "UTC offset of the local time in show summaries (their hours), "
                              "as +HH:MM or -HH:MM.")
    # State bounded against hostile input (docs/ARCHITECTURE.md, "Sales analytics"): distinct
    # regions and products per room past these fold into "other"; promotions and pinned
    # stretches per show past theirs are rejected `show_limit`.
    max_regions: int = setting(64, "Distinct viewer regions per room kept apart (the rest fold into \"other\").",
                               minimum=1)
    max_products: int = setting(500, "Distinct products per room kept apart (the rest fold into \"other\").",
                                minimum=1)
    max_remembered: int = setting(500_000, "Viewers (their attributes) and order ids a room remembers across "
                                  "shows at most, the oldest forgotten first.", minimum=1)
    max_show_marks: int = setting(1000, "Promotions and pinned stretches per show at most (show_limit beyond).",
                                  minimum=1)

    def __post_init__(self):
        for name in ("step", "window", "presence_timeout", "show_idle", "future_limit", "admit_within"):
            if not 0 < getattr(self, name) < math.inf:
                raise ValueError(f"{name} must be a positive number, got {getattr(self, name)!r}")
        if not 0 <= self.lateness < math.inf:
            raise ValueError(f"lateness must be a number >= 0, got {self.lateness!r}")
        for name, value in (("window", self.window), *((f"{h}s horizon", h) for h in RETENTION_HORIZONS)):
            ratio = value / self.step
            if abs(ratio - round(ratio)) > 1e-9:
                raise ValueError(f"{name} ({value} s) must be a multiple of the step ({self.step} s)")
        if not isinstance(self.admit_events, int) or self.admit_events < 1:
            raise ValueError(f"admit_events must be an integer >= 1, got {self.admit_events!r}")
        for name, least in (("max_rooms", 1), ("max_candidates", 0)):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < least):
                raise ValueError(f"{name} must be an integer >= {least} or None, got {value!r}")

        if utc_offset_seconds(self.utc_offset) is None:
            raise ValueError(f"utc_offset must look like +08:00 or -05:30, got {self.utc_offset!r}")

    @property
    def utc_seconds(self) -> int:
        """The UTC offset in seconds east of UTC."""
        return utc_offset_seconds(self.utc_offset)  # type: ignore[return-value]

    def buckets(self, seconds: float) -> int:
        return round(seconds / self.step)
