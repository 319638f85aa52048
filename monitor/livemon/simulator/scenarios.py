"""Scenarios (SPEC §6): what happens during a simulated show. They combine: `normal,cdn-outage`.

Every scenario other than `normal` and `bad-input` is an episode that runs within a fault window of
the show (by default the middle 40% of a finite run, or minutes 2-5 of every 10 when running
without end), so a run shows the state before, during and after it.
"""

from __future__ import annotations

from dataclasses import dataclass

SCENARIOS = {
    "normal": "a normal show that sells: viewers (with source, device, region, age band, gender, "
              "follower) come and go, chat, click, buy; the host pins products of the catalogue in "
              "turn; promotions lift conversion; ad spend every minute buys paid traffic",
    "surge": "promotion surge: arrivals x4, product clicks x5 and orders x2 in every room",
    "cdn-outage": "the hot room's CDN degrades: throughput collapses, errors and latency rise "
                  "on that CDN until viewers are failed over",
    "stall-storm": "network-wide congestion: every viewer's throughput drops to a tenth",
    "danmaku-flood": "the hot room's chat floods: danmaku x30",
    "bad-input": "invalid JSON, missing fields, wrong types and values, unknown types, wrong "
                 "topics, oversize, late and future events, mixed into the traffic",
}

FOREVER_CYCLE = 600.0
FOREVER_FAULT_AT = 120.0
FOREVER_FAULT_FOR = 180.0


def parse_scenarios(text: str) -> frozenset[str]:
    """'normal,cdn-outage' -> {'normal', 'cdn-outage'}; ValueError naming any unknown one."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in SCENARIOS]
    if unknown or not names:
        raise ValueError(f"unknown scenario {', '.join(unknown) or repr(text)}; "
                         f"choose from {', '.join(SCENARIOS)} (comma-separated to combine)")
    return frozenset(names)


@dataclass(frozen=True)
class FaultWindow:
    """When the episodes of the scenarios are on, in seconds from the start of the run."""

    at: float
    length: float
    cycle: float | None = None  # repeat every `cycle` seconds (runs without end)

    @classmethod
    def default(cls, duration: float | None, at: float | None = None,
                length: float | None = None) -> "FaultWindow":
        if not duration:
            return cls(FOREVER_FAULT_AT if at is None else at,
                       FOREVER_FAULT_FOR if length is None else length, FOREVER_CYCLE)
        return cls(duration * 0.3 if at is None else at, duration * 0.4 if length is None else length)

    def active(self, t: float) -> bool:
        if self.cycle:
            t %= self.cycle
        return self.at <= t < self.at + self.length
