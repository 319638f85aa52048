"""Peers of `livemon bench`: other stream-processing libraries on the same broker and data.

`quix`: a Quix Streams application as its users write one, a tumbling-window count of events per
room (`sdf.tumbling_window(...).count().current()`), consuming the same six event topics and the
same records the per-message Faust agent and the engine read in the same run. Quix Streams decodes
one JSON value per message: at the 1-event envelope the topics carry exactly that, one event per
message; at 10 and 100 events it reads the JSON array and expands it into one row per event
(`apply(..., expand=True)`), its documented way to split a message. Each event's window is taken
from its own `ts` (`set_timestamp`), the windows are closed after the engine's allowed lateness
(the grace), and `.current()` emits each room's count on every event: the library's equivalent of
the live value the engine keeps. State is Quix's RocksDB store without changelog topics (the Faust
peer's store is in memory): the cost measured is consuming, decoding and windowing.

The run is bounded: it stops after `QUIX_MAX[mode]` events (a prefix of the data in send order),
timed, like the other consumers, from its first event to its last.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time

QUIX_WINDOW_S = 1.0
QUIX_MAX = {"full": 100_000, "quick": 15_000}
IDLE_S = 15.0


def role_quix(args: dict) -> dict:
    """The `quix` child of `livemon bench` (see `livemon.bench.Child`): consumes the event topics
    from the start until `max_events` events are counted or were too late for their window.
    With `counts`, also returns every (room, window start) count it emitted last."""
    from quixstreams import Application

    from livemon.bench import _ready_then_wait
    from livemon.engine import EngineConfig
    from livemon.topics import EVENT_TOPICS

    expected = int(args["max_events"])
    window_ms = int(args.get("window_s", QUIX_WINDOW_S) * 1000)
    grace_ms = int(EngineConfig().lateness * 1000)
    state_dir = tempfile.mkdtemp(prefix="livemon-bench-quix-")
    app = Application(
        broker_address=args["bootstrap"], consumer_group=f"bench-quix-{os.getpid()}",
        auto_offset_reset="earliest", state_dir=state_dir, use_changelog_topics=False, loglevel="WARNING",
        # as the Faust peer: a short session, so a fresh group is joined in seconds, not 45 s
        consumer_extra_config={"session.timeout.ms": 6000, "heartbeat.interval.ms": 1000})
    topics = [app.topic(name, key_deserializer="str", value_deserializer="json") for name in EVENT_TOPICS]
    for topic in topics:
        # Tansu describes only the settings a topic was created with; Quix Streams derives its window
        # store's settings from the input topics' retention and needs one (-1: kept for ever).
        topic.broker_config.extra_config.setdefault("retention.ms", "-1")
    sdf = app.dataframe(topics[0])
    for topic in topics[1:]:
        sdf = sdf.concat(app.dataframe(topic))  # read in timestamp order across the topics
    sdf = sdf.apply(lambda value: value if isinstance(value, list) else [value], expand=True)
    sdf = sdf.set_timestamp(lambda value, key, timestamp, headers: int(value["ts"] * 1000))

    state = {"events": 0, "late": 0, "first": None, "last": None}
    counts: dict[str, int] | None = {} if args.get("counts") else None

    def done() -> None:
        if state["last"] is None:
            state["last"] = time.time()
            app.stop()

    def on_late(value, key, timestamp_ms, late_by_ms, start, end, store_name, topic, partition, offset):
        state["late"] += 1
        if state["events"] + state["late"] >= expected:
            done()
        return False  # counted, not logged

    def counted(value, key, timestamp, headers):
        if state["last"] is not None:  # the rest of the last message's array, after the stop
            return
        if state["first"] is None:
            state["first"] = time.time()
        state["events"] += 1
        if counts is not None:
            counts[f"{key}|{value['start']}"] = value["value"]
        if state["events"] + state["late"] >= expected:
            done()

    windows = sdf.tumbling_window(window_ms, grace_ms=grace_ms, on_late=on_late).count().current()
    windows.update(counted, metadata=True)

    _ready_then_wait()
    try:
        app.run(timeout=IDLE_S, collect=False)  # bounded: also ends once nothing came for IDLE_S
    finally:
        shutil.rmtree(state_dir, ignore_errors=True)
    if state["first"] is None or state["last"] is None:
        return {"error": "Quix Streams stopped before the end of the data", **state}
    result = {**state, "window_ms": window_ms, "grace_ms": grace_ms}
    if counts is not None:
        result["counts"] = counts
    return result


def measure_quix(row: dict, base: dict, mode: str, log, envelope: int) -> None:
    """Run the `quix` child on the data just produced; its rate and ratios go into `row`."""
    from livemon.bench import Child, _rate

    limit = min(row["events"], QUIX_MAX[mode])
    result = Child({**base, "role": "quix", "max_events": limit}, log).run(600)
    row["quix"] = _rate(result)
    row["quix_events"] = result.get("events")
    row["quix_late"] = result.get("late")
    row["quix_form"] = "one JSON event per message" if envelope == 1 else f"JSON arrays of {envelope}, expanded"
    if result.get("error"):
        row["quix_error"] = result["error"]
    if row["quix"]:
        for name in ("engine", "faust"):
            if row.get(name):
                row[f"{name}_vs_quix"] = row[name] / row["quix"]


def report_lines(results: dict) -> list[str]:
    """The report's section on the peers, if any ran."""
    rows = {e: r for e, r in results.get("throughput", {}).items() if "quix" in r or "quix_error" in r}
    if not rows:
        return []

    def fmt(value, digits=0):
        return "–" if value is None else f"{value:,.{digits}f}"

    lines = ["## Peers in the same run (same broker, topics and records)", "",
             f"Quix Streams: a tumbling window of {QUIX_WINDOW_S:g} s per room over each event's `ts`, "
             f"`.count().current()`, RocksDB state without changelog topics; the first events of the data "
             f"(at most {QUIX_MAX[results['mode']]:,}).", "",
             "| envelope | what Quix Streams reads | events | Quix Streams | per-message Faust + engine "
             "| engine worker loop | engine / Quix | Faust / Quix |",
             "|---:|---|---:|---:|---:|---:|---:|---:|"]
    for envelope, row in rows.items():
        quix = fmt(row.get("quix")) if row.get("quix") else f"failed: {row.get('quix_error')}"
        lines.append(f"| {envelope} | {row.get('quix_form', '')} | {fmt(row.get('quix_events'))} | {quix} | "
                     f"{fmt(row.get('faust'))} | {fmt(row.get('engine'))} | "
                     f"{fmt(row.get('engine_vs_quix'), 1)} | {fmt(row.get('faust_vs_quix'), 2)} |")
    return lines + [""]
