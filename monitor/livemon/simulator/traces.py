"""Measured network throughput traces, one per file, for the player model.

A trace file has two tab-separated columns per line: seconds from the trace start, and the
throughput in Mbit/s over the interval since the previous line. This is the format of the
collection confiwent/Real-world-bandwidth-traces (MIT License), from which the Puffer 2022 and
HSDPA 3G trace sets come; keep that attribution wherever those traces are used or shipped. The
traces are read from the folder the user names and never copied into this repository.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from pathlib import Path


class TraceError(ValueError):
    """A traces folder or file that cannot be used; the message says which and why."""


@dataclass(frozen=True)
class Trace:
    name: str
    times: tuple[float, ...]  # seconds from the trace start, increasing
    mbps: tuple[float, ...]   # throughput over the interval ending at times[i]

    @property
    def length(self) -> float:
        return self.times[-1]

    def at(self, t: float) -> float:
        """Throughput at `t` seconds into the trace; the trace loops when a viewer outlasts it."""
        t %= self.length
        i = bisect.bisect_left(self.times, t)
        return self.mbps[min(i, len(self.mbps) - 1)]


def parse_trace(text: str, name: str) -> Trace:
    times: list[float] = []
    mbps: list[float] = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        fields = line.split()
        try:
            if len(fields) != 2:
                raise ValueError(f"expected 2 columns, found {len(fields)}")
            t, rate = float(fields[0]), float(fields[1])
            if rate < 0 or t < 0 or (times and t <= times[-1]):
                raise ValueError("time must increase and throughput must be >= 0")
        except ValueError as error:
            raise TraceError(f"{name}, line {number}: {error}") from None
        times.append(t)
        mbps.append(rate)
    if len(times) < 2 or times[-1] <= 0:
        raise TraceError(f"{name}: a trace needs at least two lines spanning some time")
    return Trace(name, tuple(times), tuple(mbps))


def load_traces(folder: str | Path) -> list[Trace]:
    """Every trace file of `folder` (sorted by name, so a seed picks the same traces)."""
    path = Path(folder)
    if not path.is_dir():
        raise TraceError(f"traces folder {str(path)!r} does not exist or is not a folder")
    files = sorted(p for p in path.iterdir()
                   if p.is_file() and not p.name.startswith(".")
                   and p.suffix.lower() not in (".md", ".txt") and p.name != "LICENSE")
    if not files:
        raise TraceError(f"traces folder {str(path)!r} holds no trace files")
    traces = []
    for file in files:
        try:
            text = file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise TraceError(f"cannot read trace {str(file)!r}: {error}") from None
        traces.append(parse_trace(text, str(file)))
    return traces
