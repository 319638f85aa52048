"""A room bigger than a worker, by simulation: two-stage aggregation by user shard (docs/SCALING.md).

    python -m tests.scaling_sim [--rate 8000] [--duration 240] [--shards 2,4,8] [--write BENCHMARKS.md]

One hot room of the simulator (`livemon.simulator.core.generate`, the `normal` show) is computed
twice from the same events in the same order:

- by one engine (`livemon.engine.Engine`), the reference;
- in two stages. Stage 1: K engines, one per user shard; an event goes to the shard of its
  `user_id` (CRC-32 modulo K), a room-level `show` event (start, end, catalogue, pin, promotion,
  spend) to every shard. At each final instant a shard emits its **partials**: the window's integer
  sums (entries, leaves, watch time, danmaku, paid orders, GMV in micro-units, stall and play ms,
  stalls, beacons, errors, starts), the retention cohorts, the counts of distinct users (viewers,
  interacting, clicking, converted; per CDN, per audience value, per product) and the latency and
  start-up sketches' bins. Stage 2 merges the K partials of an instant (sums, bin-wise sums) and
  computes the SPEC figures from them with the engine's own formulas.

Every merged figure is compared with the reference engine's final snapshot at every instant: the
claim that they merge exactly is checked, not assumed. The costs are measured in the same process:
the reference engine's ingest rate, each shard's ingest rate, the partials (stage 1's extra work per
instant) and the merge (stage 2) per instant, for each K.
"""

from __future__ import annotations

import datetime
import json
import math
import platform
import time
import zlib
from collections import defaultdict

import click

from livemon.engine import Engine, EngineConfig
from livemon.engine.room import (BEACONS, DANMAKU, ENDS, ERRORS, FAST_STARTS, GMV_MICRO, MICRO, PAID,
                                 PLAY_MS, ROOM_FIELDS, SHORT, SLOW_STARTS, STALL_MS, STALLS, STARTS, STARTUPS, WATCH,
                                 C_BEACONS, C_ERRORS, C_FAST_STARTS, C_PLAY_MS, C_SLOW_STARTS, C_STALL_MS,
                                 C_STARTUPS, CDN_VECTOR)
from livemon.engine.audience import column_names
from livemon.engine.config import RETENTION_HORIZONS
from livemon.engine.windows import LatencySketch, pairs_of
from livemon.ingest.events import Show


BEGIN, END = "<!-- scaling:begin -->", "<!-- scaling:end -->"
ROOM = "room-hot"

# The figures merged and checked, by place in the snapshot. Every one merges exactly from partials.
ROOM_CHECKED = ("online", "entries", "leaves", "viewers", *(f"retention_{h}s" for h in RETENTION_HORIZONS),
                "avg_watch_seconds", "interaction_rate", "danmaku_per_min", "product_ctr", "conversion_rate",
                "orders_per_min", "gmv", "gmv_total", "uv_value", "gpm", "stall_ratio", "stalls_per_min",
                "latency_p50_ms", "latency_p95_ms", "error_rate", "orders_total", "startup_p50_ms",
                "fast_start_ratio", "slow_start_ratio", "startups")
CDN_CHECKED = ("viewers", "stall_ratio", "latency_p95_ms", "error_rate", "startup_p50_ms", "fast_start_ratio",
               "slow_start_ratio", "startups")
BY_CHECKED = ("viewers", "entries", "interaction_rate", "product_ctr", "conversion_rate", "orders", "gmv",
              "uv_value")
PRODUCT_CHECKED = ("clickers", "carts", "orders", "gmv", "ctr", "conversion_rate")


def _ratio(numerator, denominator):
    return numerator / denominator if denominator else None


def _count(rate, denominator) -> int:
    """A count of users a snapshot gives as `rate * denominator`, back as the exact integer."""
    return round(rate * denominator) if rate is not None and denominator else 0


def _micro(amount: float) -> int:
    return round(amount * MICRO)


def shard_of(user_id: str, shards: int) -> int:
    return zlib.crc32(user_id.encode()) % shards


# ---------------------------------------------------------------------------------------------
# stage 1: a shard's engine and its partials


def _bins_at(sketch: LatencySketch, t: int) -> dict[int, int]:
    """The sketch's bins over the window `(t-W, t]` (as `LatencySketch.quantiles_at` reads them)."""
    bins = dict(sketch.window)
    for b in range(sketch.frontier + 1, t + 1):
        for index, n in pairs_of(sketch.buckets.get(b, {})):
            bins[index] = bins.get(index, 0) + n
        for index, n in pairs_of(sketch.buckets.get(b - sketch.width, {})):
            bins[index] = bins.get(index, 0) - n
    return {index: n for index, n in bins.items() if n}


def partials(room, t: int, snapshot: dict) -> dict:
    """What stage 1 sends stage 2 for instant `t`: integer sums, distinct-user counts, sketch bins."""
    window, _ = room.sums.vectors_at(t)
    width = room.sums.width
    m = snapshot["metrics"]
    cohorts = []
    for i, horizon in enumerate(room.horizons):
        first, last = t - horizon - width + 1, t - horizon
        cohorts.append((room.sums.range_sum(first, last, STARTS), room.sums.range_sum(first, last, SHORT[i])))
    # Distinct users: counted by the room's own windows (a snapshot's ratio hides its numerator
    # when the denominator is 0: clicks by users without a presence in the window).
    paying = room.paying.members_at(t)
    converted = room.clicking.count_among(paying, t)
    out = {
        "w": list(window), "cohorts": cohorts,
        "online": m["online"], "viewers": m["viewers"], "orders_total": m["orders_total"],
        "gmv_total": _micro(m["gmv_total"]), "interacting": room.interacting.count_at(t),
        "clickers": room.clicking.count_at(t), "converted": converted,
        "latency": _bins_at(room.latency, t), "startup": _bins_at(room.startup, t),
        "cdn": {}, "by": {}, "products": {},
    }
    for name, cdn in room.cdns.items():
        viewers = cdn.viewers.count_at(t)
        if viewers:
            out["cdn"][name] = {"viewers": viewers, "w": list(cdn.sums.vectors_at(t)[0]),
                                "latency": _bins_at(cdn.latency, t), "startup": _bins_at(cdn.startup, t)}
    names = column_names(room.regions)  # a shard numbers its regions as they come: merged by name
    interacting = {names[c]: n for c, n in room.interacting_by.counts_at(t).items()}
    clicking: dict[tuple, int] = defaultdict(int)
    converting: dict[tuple, int] = defaultdict(int)
    for column, user in room.clicking_by.members_at(t):
        clicking[names[column]] += 1
        if user in paying:
            converting[names[column]] += 1
    for dimension, values in snapshot["by"].items():
        out["by"][dimension] = {}
        for value, f in values.items():
            name = (dimension, value)
            out["by"][dimension][value] = {
                "viewers": f["viewers"], "entries": f["entries"], "orders": f["orders"], "gmv": _micro(f["gmv"]),
                "interacting": interacting.get(name, 0), "clickers": clicking.get(name, 0),
                "converted": converting.get(name, 0)}
    for product, f in snapshot["products"].items():
        out["products"][product] = {"clickers": f["clickers"], "carts": f["carts"], "orders": f["orders"],
                                    "gmv": _micro(f["gmv"]),
                                    "converted": _count(f["conversion_rate"], f["clickers"])}
    return out


class ShardEngine(Engine):
    """An engine that also emits each final instant's partials (stage 1), timed apart: a room's
    `snapshot` is wrapped, so the partials are read from the same state as the snapshot, whichever
    way the engine makes its finals. The simulation asks for no live snapshot."""

    def __init__(self, config: EngineConfig | None = None):
        super().__init__(config)
        self.partials: dict[int, dict] = {}
        self.partial_seconds = 0.0

    def ingest(self, events, *args, **kwargs):
        rejected = super().ingest(events, *args, **kwargs)
        for room in self.rooms.values():
            if "snapshot" not in vars(room):
                self._instrument(room)
        return rejected

    def _instrument(self, room) -> None:
        make = room.snapshot

        def snapshot(t: int, lean: bool = False) -> dict:
            made = make(t, lean)
            started = time.process_time()
            self.partials[made["ts"]] = partials(room, t, made)
            self.partial_seconds += time.process_time() - started
            return made

        room.snapshot = snapshot


# ---------------------------------------------------------------------------------------------
# stage 2: the merge


def _add(into: list, vector) -> None:
    for i, value in enumerate(vector):
        into[i] += value


def _add_bins(into: dict, bins: dict) -> None:
    for index, n in bins.items():
        into[index] = into.get(index, 0) + n


def _quantile(bins: dict, q: float):
    return LatencySketch._ranked(bins, (q,))[0]


def merge(parts: list[dict], window_s: float) -> dict:
    """The SPEC figures of one instant from the shards' partials (a shard without activity at the
    instant sends none)."""
    w = [0] * ROOM_FIELDS
    cohorts = [[0, 0] for _ in RETENTION_HORIZONS]
    n = defaultdict(int)
    latency: dict[int, int] = {}
    startup: dict[int, int] = {}
    cdns: dict[str, dict] = {}
    by: dict[str, dict] = defaultdict(lambda: defaultdict(lambda: defaultdict(int)))
    products: dict[str, dict] = defaultdict(lambda: defaultdict(int))
    for p in parts:
        _add(w, p["w"])
        for cohort, (started, short) in zip(cohorts, p["cohorts"]):
            cohort[0] += started
            cohort[1] += short
        for key in ("online", "viewers", "orders_total", "gmv_total", "interacting", "clickers", "converted"):
            n[key] += p[key]
        _add_bins(latency, p["latency"])
        _add_bins(startup, p["startup"])
        for name, c in p["cdn"].items():
            into = cdns.setdefault(name, {"viewers": 0, "w": [0] * len(CDN_VECTOR), "latency": {}, "startup": {}})
            into["viewers"] += c["viewers"]
            _add(into["w"], c["w"])
            _add_bins(into["latency"], c["latency"])
            _add_bins(into["startup"], c["startup"])
        for dimension, values in p["by"].items():
            for value, f in values.items():
                for key, x in f.items():
                    by[dimension][value][key] += x
        for product, f in p["products"].items():
            for key, x in f.items():
                products[product][key] += x
    scale = 60.0 / window_s
    viewers, entries, leaves = n["viewers"], w[STARTS], w[ENDS]
    stall, play, starts = w[STALL_MS], w[PLAY_MS], w[STARTUPS]
    gmv = w[GMV_MICRO] / MICRO
    metrics = {"online": n["online"], "entries": entries, "leaves": leaves, "viewers": viewers}
    for (started, short), horizon in zip(cohorts, RETENTION_HORIZONS):
        metrics[f"retention_{horizon}s"] = _ratio(started - short, started)
    metrics.update(
        avg_watch_seconds=_ratio(w[WATCH], leaves), interaction_rate=_ratio(n["interacting"], viewers),
        danmaku_per_min=w[DANMAKU] * scale, product_ctr=_ratio(n["clickers"], viewers),
        conversion_rate=_ratio(n["converted"], n["clickers"]), orders_per_min=w[PAID] * scale, gmv=gmv,
        gmv_total=n["gmv_total"] / MICRO, uv_value=_ratio(gmv, viewers), gpm=_ratio(gmv * 1000, entries),
        stall_ratio=_ratio(stall, stall + play), stalls_per_min=_ratio(w[STALLS], (stall + play) / 60000),
        latency_p50_ms=_quantile(latency, 0.5), latency_p95_ms=_quantile(latency, 0.95),
        error_rate=_ratio(w[ERRORS], w[BEACONS]), orders_total=n["orders_total"],
        startup_p50_ms=_quantile(startup, 0.5) if starts else None,
        fast_start_ratio=_ratio(w[FAST_STARTS], starts), slow_start_ratio=_ratio(w[SLOW_STARTS], starts),
        startups=starts)
    cdn_out = {}
    for name, c in cdns.items():
        cw = c["w"]
        cstall, cplay, cstarts = cw[C_STALL_MS], cw[C_PLAY_MS], cw[C_STARTUPS]
        cdn_out[name] = {
            "viewers": c["viewers"], "stall_ratio": _ratio(cstall, cstall + cplay),
            "latency_p95_ms": _quantile(c["latency"], 0.95), "error_rate": _ratio(cw[C_ERRORS], cw[C_BEACONS]),
            "startup_p50_ms": _quantile(c["startup"], 0.5) if cstarts else None,
            "fast_start_ratio": _ratio(cw[C_FAST_STARTS], cstarts),
            "slow_start_ratio": _ratio(cw[C_SLOW_STARTS], cstarts), "startups": cstarts}
    by_out = {dimension: {value: {
        "viewers": f["viewers"], "entries": f["entries"], "interaction_rate": _ratio(f["interacting"], f["viewers"]),
        "product_ctr": _ratio(f["clickers"], f["viewers"]), "conversion_rate": _ratio(f["converted"], f["clickers"]),
        "orders": f["orders"], "gmv": f["gmv"] / MICRO, "uv_value": _ratio(f["gmv"] / MICRO, f["viewers"])}
        for value, f in values.items()} for dimension, values in by.items()}
    product_out = {product: {
        "clickers": f["clickers"], "carts": f["carts"], "orders": f["orders"], "gmv": f["gmv"] / MICRO,
        "ctr": _ratio(f["clickers"], viewers), "conversion_rate": _ratio(f["converted"], f["clickers"])}
        for product, f in products.items()}
    return {"metrics": metrics, "cdn": cdn_out, "by": by_out, "products": product_out}


# ---------------------------------------------------------------------------------------------
# the check


def _same(a, b) -> bool:
    if a is None or b is None:
        return a is b
    return a == b or math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-12)


def compare(reference: dict, merged: dict) -> list[str]:
    """Where the merged figures of one instant differ from the reference snapshot's (empty: none)."""
    diffs = []
    m, r = merged["metrics"], reference["metrics"]
    diffs += [f"{name}: {m[name]!r} != {r[name]!r}" for name in ROOM_CHECKED if not _same(m[name], r[name])]
    if set(merged["cdn"]) != set(reference["cdn"]):
        diffs.append(f"cdn: {sorted(merged['cdn'])} != {sorted(reference['cdn'])}")
    for name in set(merged["cdn"]) & set(reference["cdn"]):
        diffs += [f"cdn {name} {key}: {merged['cdn'][name][key]!r} != {reference['cdn'][name][key]!r}"
                  for key in CDN_CHECKED if not _same(merged["cdn"][name][key], reference["cdn"][name][key])]
    for dimension, values in reference["by"].items():
        for value, f in values.items():
            g = merged["by"].get(dimension, {}).get(value)
            if g is None:
                if any(f[key] for key in ("viewers", "entries", "orders")):
                    diffs.append(f"by {dimension}={value}: missing")
                continue
            diffs += [f"by {dimension}={value} {key}: {g[key]!r} != {f[key]!r}"
                      for key in BY_CHECKED if not _same(g[key], f[key])]
    if set(merged["products"]) != set(reference["products"]):
        diffs.append(f"products: {sorted(merged['products'])} != {sorted(reference['products'])}")
    for product in set(merged["products"]) & set(reference["products"]):
        g, f = merged["products"][product], reference["products"][product]
        diffs += [f"product {product} {key}: {g[key]!r} != {f[key]!r}" for key in PRODUCT_CHECKED
                  if not _same(g[key], f[key])]
    return diffs


# ---------------------------------------------------------------------------------------------
# the run


def hot_room(rate: float, duration: float, seed: int) -> list[tuple]:
    """The simulator's messages of one room, as event batches in send order."""
    from livemon.simulator.core import generate

    return [m.events for m in generate("normal", rooms=1, rate=rate, duration=duration, envelope=100, seed=seed,
                                       end_show=False)]


ADVANCE_EVERY = 50  # batches between two `advance` calls: bounds the held state, does not change results


def run_single(batches, config: EngineConfig) -> dict:
    engine = Engine(config)
    finals, rejected = {}, 0
    started = time.process_time()
    for i, events in enumerate(batches, 1):
        rejected += len(engine.ingest(events))
        if i % ADVANCE_EVERY == 0:
            finals.update((s["ts"], s) for s in engine.advance())
    finals.update((s["ts"], s) for s in engine.finish())
    seconds = time.process_time() - started
    return {"finals": finals, "seconds": seconds, "events": sum(map(len, batches)), "rejected": rejected}


def route(batches, shards: int, split: str = "user") -> list[list[list]]:
    """Stage 0 (the producer or a router): each batch split by user shard; `show` events to all.
    `split="event"` deals the events out in turn instead, whoever sent them: the naive split, which
    counts a viewer once per shard that saw one of their events."""
    routed: list[list[list]] = [[] for _ in range(shards)]
    cache: dict[str, int] = {}
    turn = 0
    for events in batches:
        parts: list[list] = [[] for _ in range(shards)]
        for event in events:
            if type(event) is Show:
                for part in parts:
                    part.append(event)
                continue
            if split == "event":
                turn = k = (turn + 1) % shards
            else:
                k = cache.get(event.user_id)
                if k is None:
                    k = cache[event.user_id] = shard_of(event.user_id, shards)
            parts[k].append(event)
        for k, part in enumerate(parts):
            routed[k].append(part)
    return routed


def run_sharded(batches, shards: int, config: EngineConfig, split: str = "user") -> dict:
    started = time.process_time()
    routed = route(batches, shards, split)
    route_seconds = time.process_time() - started
    engines, rejected, shard_events, shard_seconds = [], 0, [], []
    for k in range(shards):
        engine = ShardEngine(config)
        started = time.process_time()
        for i, events in enumerate(routed[k], 1):
            if events:
                rejected += len(engine.ingest(events))
            if i % ADVANCE_EVERY == 0:
                engine.advance()
        engine.finish(until=engine_clock_of(batches))
        shard_seconds.append(time.process_time() - started - engine.partial_seconds)
        shard_events.append(sum(map(len, routed[k])))
        engines.append(engine)
    instants = sorted(set().union(*(e.partials for e in engines)))
    merged = {}
    started = time.process_time()
    for t in instants:
        merged[t] = merge([e.partials[t] for e in engines if t in e.partials], config.window)
    merge_seconds = time.process_time() - started
    return {"shards": shards, "merged": merged, "rejected": rejected, "route_seconds": route_seconds,
            "shard_events": shard_events, "shard_seconds": shard_seconds,
            "partial_seconds": [e.partial_seconds for e in engines], "partials": [len(e.partials) for e in engines],
            "merge_seconds": merge_seconds, "instants": len(instants)}


def engine_clock_of(batches) -> float:
    """The newest `ts` of the room: every shard is finished up to it, as the single engine is."""
    return max(event.ts for events in batches for event in events)


def simulate(rate: float = 8000, duration: float = 240, shards=(2, 4, 8), seed: int = 0,
             split: str = "user", progress=lambda text: None) -> dict:
    from livemon.replay import REPLAY_ADMISSION

    # As `livemon replay`: the room admitted at its first event, so a shard's room exists (and is
    # instrumented) before any of its instants is made final.
    config = EngineConfig(**REPLAY_ADMISSION)
    progress(f"generating the hot room: {rate:,.0f} events/s for {duration:g} s")
    batches = hot_room(rate, duration, seed)
    progress(f"one engine over {sum(map(len, batches)):,} events")
    single = run_single(batches, config)
    events = single["events"]
    result = {"rate": rate, "duration": duration, "seed": seed, "split": split, "events": events,
              "instants": len(single["finals"]), "window_s": config.window,
              "single": {"events_per_s": events / single["seconds"], "seconds": single["seconds"],
                         "rejected": single["rejected"]},
              "shards": []}
    for k in shards:
        progress(f"K = {k}: routing, {k} shard engines, merging, comparing")
        run = run_sharded(batches, k, config, split)
        mismatches, checked, equal = [], 0, 0
        for t, reference in single["finals"].items():
            merged = run["merged"].get(t)
            if merged is None:
                mismatches.append(f"t={t}: no partials")
                continue
            checked += 1
            diffs = compare(reference, merged)
            equal += not diffs
            mismatches += [f"t={t} {d}" for d in diffs]
        extra = sorted(set(run["merged"]) - set(single["finals"]))
        mismatches += [f"t={t}: merged without a reference snapshot" for t in extra]
        instants = run["instants"] or 1
        rates = [n / s for n, s in zip(run["shard_events"], run["shard_seconds"]) if s > 0]
        result["shards"].append({
            "k": k, "checked_instants": checked, "equal_instants": equal, "mismatches": len(mismatches),
            "first_mismatches": mismatches[:10],
            "rejected": run["rejected"],
            "shard_events": run["shard_events"],
            "shard_events_per_s": sum(rates) / len(rates),
            "routed_events": sum(run["shard_events"]),
            "route_us_per_event": run["route_seconds"] / events * 1e6,
            "partial_us_per_instant": sum(run["partial_seconds"]) / max(1, sum(run["partials"])) * 1e6,
            "merge_us_per_instant": run["merge_seconds"] / instants * 1e6,
            "merge_us_per_event": run["merge_seconds"] / events * 1e6,
            "ingest_us_per_event": 1e6 / (sum(rates) / len(rates)),
            "merge_share_of_ingest": (run["merge_seconds"] / events) / (len(rates) / sum(rates)),
        })
    return result


def report(r: dict, machine: str, date: str) -> str:
    s = r["single"]
    lines = [
        "## A room bigger than a worker: two-stage aggregation by user shard (`python -m tests.scaling_sim`)", "",
        f"- {date}, {machine}; one hot room of the simulator (`normal`, seed {r['seed']}): "
        f"{r['events']:,} events over {r['duration']:g} s ({r['rate']:,.0f} events/s asked), "
        f"{r['instants']} final instants; W = {r['window_s']:g} s; all in one process, one core",
        f"- reference, one engine: {s['events_per_s']:,.0f} events/s (ingest and final snapshots), "
        f"{s['rejected']} rejected", "",
        "| K shards | instants equal to one engine | events per shard | ingest per shard, events/s "
        "| routing µs/event | partials µs/instant/shard | merge µs/instant | merge µs/event | merge / ingest |",
        "|---:|---:|---|---:|---:|---:|---:|---:|---:|"]
    for x in r["shards"]:
        equal = f"{x['equal_instants']}/{r['instants']}"
        if x["mismatches"]:
            equal += f" (**{x['mismatches']:,} figures differ**)"
        lines.append(
            f"| {x['k']} | {equal} | "
            f"{', '.join(f'{n:,}' for n in x['shard_events'])} | {x['shard_events_per_s']:,.0f} | "
            f"{x['route_us_per_event']:.2f} | {x['partial_us_per_instant']:,.0f} | {x['merge_us_per_instant']:,.0f} | "
            f"{x['merge_us_per_event']:.3f} | {x['merge_share_of_ingest']:.2%} |")
    lines += ["", "Equal means every figure of SPEC §5 (retention, percentiles and start-up included), §8 (viewers, "
                  "entries, interaction, CTR, conversion, orders, GMV, UV value per value) and §9 (per product) and "
                  "per CDN, at every final instant, compared with the single engine's final snapshot."]
    return "\n".join(lines) + "\n"


def _machine() -> str:
    cpu = platform.machine()
    try:
        with open("/proc/cpuinfo") as info:
            cpu = next((line.split(":", 1)[1].strip() for line in info if line.startswith("model name")), cpu)
    except OSError:
        pass
    import os

    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, load average {os.getloadavg()[0]:.1f}"


@click.command()
@click.option("--rate", default=8000.0, show_default=True, type=click.FloatRange(min=10),
              help="Events per second of the hot room (the simulator's rate).")
@click.option("--duration", default=240.0, show_default=True, type=click.FloatRange(min=5),
              help="Seconds of show (240 s covers the 180 s retention horizon with W = 60 s).")
@click.option("--shards", default="2,4,8", show_default=True, help="Shard counts K to run, comma-separated.")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--split", type=click.Choice(["user", "event"]), default="user", show_default=True,
              help="user: by user shard (show events to every shard); event: events dealt out in turn "
                   "(the naive split, to see what it gets wrong).")
@click.option("--write", "write_path", type=click.Path(dir_okay=False, writable=True), default=None,
              help="Also write the report into this Markdown file between the scaling markers.")
def main(rate, duration, shards, seed, split, write_path):
    """Split a hot room by user shard into K engines, merge their partials, check them against one
    engine and measure the merge."""
    try:
        ks = tuple(int(k) for k in shards.split(","))
    except ValueError:
        raise click.BadParameter(f"a comma-separated list of integers, got {shards!r}", param_hint="--shards")
    if not ks or any(k < 1 for k in ks):
        raise click.BadParameter("each K must be at least 1", param_hint="--shards")
    result = simulate(rate, duration, ks, seed, split, progress=lambda text: click.echo(text, err=True))
    text = report(result, _machine(), datetime.datetime.now().astimezone().isoformat(timespec="seconds"))
    click.echo(text)
    click.echo(json.dumps(result, separators=(",", ":")))
    if write_path:
        from livemon.soak import write_section

        write_section(write_path, text, begin=BEGIN, end=END)
    if any(x["mismatches"] for x in result["shards"]):
        raise SystemExit("merged figures differ from the single engine's (see first_mismatches)")


if __name__ == "__main__":
    main()
