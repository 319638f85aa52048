"""Engine settings: the SPEC defaults, validated once."""

from __future__ import annotations

import math
from dataclasses import dataclass

RETENTION_HORIZONS = (30, 60, 180)  # seconds, SPEC §5


@dataclass(frozen=True)
class EngineConfig:
    step: float = 1.0  # evaluation instants are multiples of the step
    window: float = 60.0  # W
    lateness: float = 5.0  # allowed lateness behind a room's newest event
    presence_timeout: float = 90.0
    show_idle: float = 600.0  # a show ends after this long without events
    future_limit: float = 300.0  # with a wall clock: events further ahead are rejected (`future`)
    # Without one (replay): events this far ahead of the newest ts are rejected (`future`); a
    # recording with a longer silence between two shows needs a larger value (or None).
    clockless_future_limit: float | None = 3600.0
    # Room admission (docs/ARCHITECTURE.md, "Rooms are admitted"): any client can put any room id
    # on a beacon, so a room is tracked only once it has a show `start`, or `admit_events`
    # accepted events before its watermark passes its first event's ts + `admit_within`. Until
    # then its events are held in a small candidate entry and applied on admission; a candidate
    # that misses is forgotten and its events rejected `room_unadmitted`. 1: every room at once.
    admit_events: int = 3
    admit_within: float = 30.0
    # Caps per engine (the worker has one per partition); events over them are rejected
    # `room_limit`. None: no cap. A busy room costs about 150 KB of engine state, a candidate
    # about 0.7 KB (measured in docs/ARCHITECTURE.md).
    max_rooms: int | None = 2000
    max_candidates: int | None = 20000

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

    def buckets(self, seconds: float) -> int:
        return round(seconds / self.step)
