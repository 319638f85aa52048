"""`livemon replay`: the metric timeline of a recorded event file, computed by the worker's engine.

Input: one event per line, in arrival order. Output: one JSON line per room per evaluation instant
(the final snapshot), for every room with a present viewer or an event in `(t-W-180, t]`. Time is
the events' own: the clock is the newest `ts` read so far, so the result does not depend on how
fast the file is read. Invalid lines are rejected as a worker would reject them, counted, and
reported; they never stop the replay.

Every room of the file has its lines (SPEC §6): a replay admits each room at its first event and
caps nothing. Room admission is the live workers' defence against made-up room ids; it only
delays when a worker materialises a room, never its numbers, so every room a worker shows has the
same timeline here (docs/ARCHITECTURE.md, "Rooms are admitted").
"""

from __future__ import annotations

import collections
import sys
from dataclasses import replace
from typing import IO, Iterable, Iterator

import click
import orjson

from .engine import Engine, EngineConfig
from .settings import build, config_option, options
from .ingest.events import decode

CHUNK = 2000  # lines between two advances: bounds memory, does not change the result
# Every room admitted at its first event, no caps on rooms: see above.
REPLAY_ADMISSION = {"admit_events": 1, "max_rooms": None, "max_candidates": None}


class ReplayStats:
    def __init__(self):
        self.lines = 0
        self.events = 0
        self.rejected: collections.Counter[str] = collections.Counter()


def replay_lines(lines: Iterable[bytes], config: EngineConfig | None = None, until: float | None = None,
                 stats: ReplayStats | None = None, shows: list | None = None) -> Iterator[dict]:
    """Final snapshots, oldest first, of the events in `lines` (JSON, one event per line).
    `shows`: a list that receives each show's summary (SPEC §10) once the show is over."""
    engine = Engine(config or EngineConfig(**REPLAY_ADMISSION))
    stats = stats if stats is not None else ReplayStats()
    for number, line in enumerate(lines, 1):
        line = line.strip()
        if not line:
            continue
        stats.lines += 1
        events, rejections = decode(line)
        for rejection in rejections:
            stats.rejected[rejection.reason] += 1
        if events:
            for _, reason in engine.ingest(events):
                stats.rejected[reason] += 1
            stats.events += len(events)
        if number % CHUNK == 0:
            yield from engine.advance()
            _count_held(engine, stats)
            if shows is not None:
                shows.extend(engine.take_summaries())
    yield from engine.finish(until)
    _count_held(engine, stats)
    if shows is not None:
        shows.extend(engine.take_summaries())


def _count_held(engine: Engine, stats: ReplayStats) -> None:
    """Held events rejected since (with a config that admits rooms later than their first event)."""
    for _, reason in engine.take_rejected():
        stats.rejected[reason] += 1


def write_timeline(snapshots: Iterable[dict], out: IO[bytes]) -> int:
    count = 0
    for snapshot in snapshots:
        out.write(orjson.dumps(snapshot, option=orjson.OPT_APPEND_NEWLINE))
        count += 1
    return count


@click.command()
@click.argument("events_file", type=click.Path(exists=True, dir_okay=False, readable=True, allow_dash=True))
@click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False, writable=True, allow_dash=True),
              help="Timeline file to write (JSON lines); - for standard output.")
@config_option("replay")
@options(EngineConfig, only=("step", "window", "lateness", "presence_timeout", "show_idle", "clockless_future_limit",
                            "utc_offset"),
         rename={"clockless_future_limit": "future_limit"})
@click.option("--until", type=float, default=None,
              help="Evaluate on to this instant (Unix seconds) after the last event.")
@click.option("--shows", "shows_path", type=click.Path(dir_okay=False, writable=True, allow_dash=True), default=None,
              help="Also write one show summary (SPEC §10) per show to this file (JSON lines).")
def replay(events_file, out_path, until, shows_path, **values):
    """Compute the metric timeline of EVENTS_FILE (one event per line, in arrival order)."""
    try:
        config = replace(build(EngineConfig, values), **REPLAY_ADMISSION)
    except ValueError as error:
        raise click.BadParameter(str(error)) from None
    stats = ReplayStats()
    try:
        source = sys.stdin.buffer if events_file == "-" else open(events_file, "rb")
        out = sys.stdout.buffer if out_path == "-" else open(out_path, "wb")
    except OSError as error:
        raise click.ClickException(f"cannot open {error.filename}: {error.strerror}") from None
    summaries: list[dict] | None = None if shows_path is None else []
    with source, out:
        try:
            written = write_timeline(replay_lines(source, config, until, stats, summaries), out)
            if summaries is not None:
                with (sys.stdout.buffer if shows_path == "-" else open(shows_path, "wb")) as shows_out:
                    write_timeline(summaries, shows_out)
        except OSError as error:
            raise click.ClickException(f"replay failed: {error}") from None
    rejected = sum(stats.rejected.values())
    detail = ", ".join(f"{reason}: {n}" for reason, n in sorted(stats.rejected.items()))
    click.echo(f"{stats.lines} lines, {stats.events} events, {rejected} rejected"
               f"{f' ({detail})' if detail else ''}; {written} timeline lines written"
               f"{'' if summaries is None else f', {len(summaries)} show summaries'}", err=True)
