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

    def __post_init__(self):
        for name in ("step", "window", "presence_timeout", "show_idle", "future_limit"):
            if not 0 < getattr(self, name) < math.inf:
                raise ValueError(f"{name} must be a positive number, got {getattr(self, name)!r}")
        if not 0 <= self.lateness < math.inf:
            raise ValueError(f"lateness must be a number >= 0, got {self.lateness!r}")
        for name, value in (("window", self.window), *((f"{h}s horizon", h) for h in RETENTION_HORIZONS)):
            ratio = value / self.step
            if abs(ratio - round(ratio)) > 1e-9:
                raise ValueError(f"{name} ({value} s) must be a multiple of the step ({self.step} s)")

    def buckets(self, seconds: float) -> int:
        return round(seconds / self.step)
