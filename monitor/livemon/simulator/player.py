"""A viewer's video player on a live stream, and the network that feeds it.

The player is buffer-based, as live players are: it downloads video from the CDN at the network's
throughput, can download no further than the live edge, plays one second of video per second, and
stalls when the buffer runs dry. While it stalls the live edge moves on, so its live latency grows by
the stall time; it then catches up by playing slightly faster. A throughput-based ABR picks a rung of
the bitrate ladder. Stalls, latency, bitrate and startup time are thus consequences of the
throughput, not numbers drawn at random. Time advances in steps of `STEP` seconds with the throughput
constant within a step.

A play starts (on entering, and again when the player restarts after a long stall or jumps back to
live) by connecting (DNS, TLS, the CDN edge: slower when the CDN is degraded) and fetching the first
GOP at the lowest rung; that time to first frame is reported once, as `startup_ms` of the interval
in which the play started.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

from .traces import Trace

STEP = 1.0
LADDER_KBPS = (500, 1000, 2000, 4000)  # 480p .. 1080p, typical for live commerce
EDGE_DELAY = 1.0       # s: the newest segment is available this long after the live edge
RESUME_BUFFER = 1.0    # s of video needed to start or resume playing
CATCH_UP_SPEED = 1.1   # playback speed while behind the target latency
JUMP_TO_LIVE = 20.0    # s of latency beyond which the player drops its buffer and jumps to live
SAFETY = 0.75          # ABR picks the highest bitrate below this share of estimated throughput
STARTUP_VIDEO = 1.0    # s of video (the first GOP, at the lowest rung) fetched before the first frame
RELOAD_AFTER = 8.0     # s of one uninterrupted stall after which the player restarts the play


class BuiltinNetwork:
    """One viewer's access network: a base bandwidth with slow log-normal wander and occasional
    deep fades (a lift, a crowded cell, Wi-Fi contention) lasting seconds."""

    BASE_MEDIAN_MBPS = {"mobile": 8.0, "pc": 20.0, "tv": 15.0, "other": 8.0}

    def __init__(self, rng: random.Random, device: str):
        self.rng = rng
        self.base = self.BASE_MEDIAN_MBPS[device] * math.exp(rng.gauss(0.0, 0.7))
        self.wander = 0.0
        self.fade_left = 0.0
        self.fade_depth = 1.0

    def throughput(self, t: float) -> float:
        rng = self.rng
        # AR(1) wander; uniform steps of the same spread as N(0, 0.12) are cheaper to draw.
        self.wander = 0.9 * self.wander + (rng.random() - 0.5) * 0.416
        if self.fade_left > 0:
            self.fade_left -= STEP
        elif rng.random() < 0.008:  # a fade every ~2 minutes of watching
            self.fade_left = rng.expovariate(1 / 6.0)
            self.fade_depth = rng.uniform(0.03, 0.3)
        depth = self.fade_depth if self.fade_left > 0 else 1.0
        return self.base * math.exp(self.wander) * depth


class TraceNetwork:
    """Throughput that follows a measured trace, from a random offset into it."""

    def __init__(self, rng: random.Random, traces: list[Trace]):
        self.trace = traces[rng.randrange(len(traces))]
        self.offset = rng.uniform(0.0, self.trace.length)

    def throughput(self, t: float) -> float:
        return self.trace.at(self.offset + t)


@dataclass
class Interval:
    """What the player did since its previous beacon."""

    play: float = 0.0   # seconds
    stall: float = 0.0  # seconds
    stall_count: int = 0
    bitrate_seconds: float = 0.0  # sum of bitrate_kbps * seconds played, for the average
    startup_ms: int | None = None

    @property
    def play_ms(self) -> int:
        return round(self.play * 1000)

    @property
    def stall_ms(self) -> int:
        return round(self.stall * 1000)

    @property
    def bitrate_kbps(self) -> float | None:
        return round(self.bitrate_seconds / self.play, 1) if self.play >= 0.001 else None


@dataclass
class Player:
    network: BuiltinNetwork | TraceNetwork
    target_latency: float  # s behind the live edge the player aims for
    connect: float = 0.3   # s to connect and get the first byte (DNS, TLS, CDN edge)
    clock: float = 0.0     # seconds since the viewer entered
    buffer: float = 0.0
    lag: float = 0.0       # live latency: seconds the playhead is behind the live edge
    level: int = 0
    estimate: float = 0.0  # Mbit/s, smoothed
    started: bool = False
    stalled: bool = False
    interval: Interval = field(default_factory=Interval)
    starting_since: float = 0.0  # clock at which the current (re)start began
    startup: float = 0.0   # s spent so far in the current start
    restarting: bool = False     # the current start is a restart: its time counts as stall
    stall_run: float = 0.0       # s of the current uninterrupted stall
    quality: float = 1.0         # the throughput factor of the current step (CDN condition)

    def advance(self, until: float, factor=None) -> None:
        """Play until `until` seconds after entering. `factor(clock)`, if given, scales the
        throughput at that moment (the CDN's condition, network-wide congestion)."""
        throughput, step = self.network.throughput, self._step
        if factor is None:
            while self.clock + STEP <= until + 1e-9:
                step(throughput(self.clock))
                self.clock += STEP
            return
        while self.clock + STEP <= until + 1e-9:
            self.quality = quality = factor(self.clock)
            step(throughput(self.clock) * quality)
            self.clock += STEP
        self.quality = 1.0

    def rejoin(self) -> None:
        """Reconnect to another CDN: the new stream starts at the target latency; the buffer
        already downloaded (up to that) keeps playing, so the switch itself does not stall."""
        self.lag = self.target_latency
        self.buffer = min(self.buffer, self.lag - EDGE_DELAY)

    def take_interval(self) -> Interval:
        done, self.interval = self.interval, Interval()
        return done

    def _step(self, mbps: float) -> None:
        iv = self.interval
        self.estimate = mbps if self.estimate == 0 else 0.7 * self.estimate + 0.3 * mbps
        if not self.started:
            self._startup(mbps, iv)
            return
        bitrate = LADDER_KBPS[self.level]
        fill = mbps * 1000 / bitrate  # seconds of video downloaded per second
        # The live edge moves on by STEP while we download; we cannot fetch past it.
        room = max(0.0, self.lag + STEP - EDGE_DELAY - self.buffer)
        got = min(fill * STEP, room)
        if self.stalled:
            self.buffer += got
            stall = STEP
            if self.buffer >= RESUME_BUFFER:
                stall = min(STEP, (RESUME_BUFFER - (self.buffer - got)) / max(fill, 1e-9))
                self.stalled = False
                self.stall_run = 0.0
            else:
                self.stall_run += STEP
            played = STEP - stall
            self.buffer = max(0.0, self.buffer - played)
        else:
            speed = CATCH_UP_SPEED if self.lag > self.target_latency + 0.5 and self.buffer > 1.5 else 1.0
            need = speed * STEP
            if self.buffer + got >= need:
                played, stall = STEP, 0.0
                self.buffer += got - need
                self.lag -= (speed - 1.0) * STEP
            else:
                # The buffer drains at (speed - fill) per second: time until it runs dry.
                played = min(STEP, self.buffer / max(speed - fill, 1e-9))
                stall = STEP - played
                self.buffer = fill * stall
                self.stalled = True
                self.stall_run = stall
                iv.stall_count += 1
        self.lag += stall
        iv.play += played
        iv.stall += stall
        iv.bitrate_seconds += bitrate * played
        if self.lag > JUMP_TO_LIVE:
            # Too far behind: drop the buffer and rejoin live; that rebuffers.
            iv.stall_count += 1
            self._restart()
        elif self.stall_run >= RELOAD_AFTER:
            self._restart()  # stuck: the player reloads the stream
        else:
            self._adapt()

    def _restart(self) -> None:
        self.started, self.stalled, self.restarting = False, False, True
        self.buffer, self.startup, self.stall_run, self.level = 0.0, 0.0, 0.0, 0
        self.starting_since = self.clock + STEP

    def _startup(self, mbps: float, iv: Interval) -> None:
        # Connect, then join at the lowest rung: the first frame shows once STARTUP_VIDEO seconds
        # of it are fetched. A degraded CDN (quality < 1) also slows the connection itself.
        if self.startup == 0.0:
            quality = self.quality
            self.startup = self.connect if quality >= 1.0 else self.connect / max(quality, 0.01) ** 0.5
        fill = mbps * 1000 / LADDER_KBPS[0]
        need = STARTUP_VIDEO - self.buffer
        spent = min(STEP, need / fill) if fill > 0 else STEP
        self.startup += spent
        self.buffer += fill * spent
        done = self.buffer >= STARTUP_VIDEO - 1e-9
        if self.restarting:
            iv.stall += spent if done else STEP
        if done:
            iv.startup_ms = round(self.startup * 1000)
            self.started, self.restarting = True, False
            self.buffer = RESUME_BUFFER
            self.lag = self.target_latency
            self._adapt()

    def _adapt(self) -> None:
        budget = self.estimate * 1000 * SAFETY
        best = 0
        for i in range(len(LADDER_KBPS) - 1, 0, -1):
            if LADDER_KBPS[i] <= budget:
                best = i
                break
        if self.buffer < 1.0 or self.stalled:
            best = min(best, max(self.level - 1, 0))
        # Up one rung at a time, down as far as needed.
        self.level = min(best, self.level + 1)
