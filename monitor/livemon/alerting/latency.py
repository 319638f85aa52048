"""How fast a CDN outage is noticed and acted on: `livemon bench-alerts`.

A closed loop in one process, all product code: the simulator's CDN outage -> the engine -> the
alert service (default rules) -> a signed webhook notification and a failover command -> the
simulated viewers move. The webhook receiver and the CDN vendor's control API are local HTTP
servers (the only stand-ins: a user's own receivers). Times are the show's event time, counted
from the first bad beacon of the failing CDN, next to the rule's `for`: the SPEC's alerting runs
in event time, so the figure does not depend on how fast this machine happens to be; the wall-
clock delivery delay of the notification is reported beside it.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path

import click
from aiohttp import web

from .. import catalogue
from ..engine import Engine, EngineConfig
from ..ingest.events import Health, decode
from ..simulator.core import Simulation
from .config import Receiver, load_config
from .delivery import verify
from .evaluator import Evaluator
from .rules import Rule
from .service import CONTROL_TOPIC, AlertService
from ..agents.partition import Partition, step_all
from ..broker import free_port

SECRET = "bench-alerts-secret"
TRIGGER = "CdnDegradedErrors"  # the default rule that moves viewers off a failing CDN


@dataclass
class OutageRun:
    sim: Simulation
    service: AlertService
    published: list = field(default_factory=list)  # (topic, key, value) the service sent
    history: list = field(default_factory=list)  # the hot room's live snapshot at every step
    webhook: list = field(default_factory=list)  # (wall time received, notification)
    vendor: list = field(default_factory=list)  # failover commands the CDN API received
    first_bad_ts: float | None = None
    fired_wall: dict = field(default_factory=dict)  # rule -> wall time the firing was published
    bad_beacons: list = field(default_factory=list)  # the hot room's beacons from the fault on
    outage_cdn: str | None = None



async def run_outage(data_dir: Path, config_path: str = "alerts/alerting.yml", seed: int = 3, rooms: int = 2,
                     rate: float = 200, fault_at: float = 45.0, fault_for: float = 150.0,
                     duration: float = 220.0, long_only: bool = False) -> OutageRun:
    """Run the loop over a simulated show with one CDN outage; return everything it produced.
    `long_only`: the rules without their short windows (the comparison)."""
    run: OutageRun | None = None

    async def receive(request, into):
        body = await request.read()
        if not verify(SECRET, body, request.headers):
            return web.json_response({"error": "bad signature"}, status=401)
        into.append((time.time(), json.loads(body)))
        return web.json_response({"ok": True})

    webhook, vendor = [], []
    app = web.Application()
    app.router.add_post("/hook", lambda request: receive(request, webhook))
    app.router.add_post("/switch", lambda request: receive(request, vendor))
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        config = load_config(config_path)
        config = type(config)(**{
            **config.__dict__, "retry_initial": 0.05, "retry_max": 0.5,
            "alertmanager_urls": (),
            "webhooks": (Receiver("bench-hook", f"http://127.0.0.1:{port}/hook", SECRET, ("alert",)),),
            "failover_endpoint": Receiver("vendor", f"http://127.0.0.1:{port}/switch", SECRET, ("command",)),
            **({"rules": long_window_only(config.rules)} if long_only else {}),
        })
        published = []
        fired_wall = {}

        def producer(topic, key, value):
            record = json.loads(value)
            published.append((topic, key.decode(), record))
            if record.get("kind") == "alert" and record.get("state") == "firing":
                fired_wall.setdefault(record["rule"], time.time())

        service = AlertService(config, data_dir=data_dir, producer=producer)
        await service.start()
        sim = Simulation("cdn-outage", rooms=rooms, seed=seed, duration=duration, rate=rate, bad_fraction=0,
                         fault_at=fault_at, fault_for=fault_for)
        run = OutageRun(sim, service, published, webhook=webhook, vendor=vendor, fired_wall=fired_wall)
        fault = sim.start + fault_at
        engine = Engine(EngineConfig())
        partition = Partition(0, engine)  # the worker's step code, on the simulation's clock
        last = None
        for message in sim.messages():
            events, _ = decode(message.value, message.topic)
            beacons = [e for e in events if type(e) is Health and e.ts >= fault and e.room_id == "room-001"]
            if beacons and run.outage_cdn is None and sim.outage is not None:
                run.outage_cdn = sim.outage[1]
            run.bad_beacons.extend(beacons)
            if run.first_bad_ts is None:
                run.first_bad_ts = next((e.ts for e in beacons if e.error or e.stall_ms), None)
            engine.ingest(events, sim.now)
            if sim.now == last:
                continue
            last = sim.now
            live = step_all([partition], sim.now, highwater=lambda topic, number: None).live
            run.history.append(live.get("room-001"))
            for record in service.evaluate(live, sim.now):
                if record.get("topic") == CONTROL_TOPIC:
                    sim.apply_failover(record["room_id"], record["to_cdn"], from_cdn=record["from_cdn"])
            await asyncio.sleep(0)  # delivery runs beside the stream
        for _ in range(200):  # let the last notifications arrive
            if vendor and any(n.get("state") == "resolved" for _, n in webhook):
                break
            await asyncio.sleep(0.05)
        await service.stop()
    finally:
        await runner.cleanup()
    return run


def _second_figure(onset: str, beacons: list):
    """A rule's figure over the beacons of one second (as the engine defines it over a window)."""
    if onset == "stall":
        stall, play = sum(e.stall_ms for e in beacons), sum(e.play_ms for e in beacons)
        return stall / (stall + play) if stall + play else None
    if onset == "errors":
        return sum(1 for e in beacons if e.error) / len(beacons)
    if onset == "latency":
        values = sorted(e.latency_ms for e in beacons if e.latency_ms is not None)
        return values[max(1, math.ceil(0.95 * len(values))) - 1] if values else None
    if onset == "startup":
        starts = [e.startup_ms for e in beacons if e.startup_ms is not None]
        return sum(1 for v in starts if v <= 1000) / len(starts) if starts else None
    return None


# Rule metric -> the beacon symptom it shows (the catalogue's `onset`).
SYMPTOMS = {metric.name: metric.onset for metric in catalogue.ROOM if metric.onset}


def symptom_ts(run: OutageRun, rule: Rule) -> float | None:
    """The onset of the symptom a rule watches: the end of the first second after the fault whose
    beacons (of the failing CDN, for a per-CDN rule) are over the rule's line. No window can see
    the fault earlier; what a rule takes beyond it and its `for` is its detection delay."""
    if rule.metric not in SYMPTOMS or rule.threshold is None:
        return None
    seconds: dict[int, list] = {}
    for beacon in run.bad_beacons:
        if rule.scope == "cdn" and beacon.cdn != run.outage_cdn:
            continue
        seconds.setdefault(math.ceil(beacon.ts), []).append(beacon)
    for second in sorted(seconds):
        value = _second_figure(SYMPTOMS[rule.metric], seconds[second])
        if value is not None and rule.breaches(value, firing=False):
            return float(second)
    return None


def summarize(run: OutageRun, config_path: str = "alerts/alerting.yml") -> dict:
    rules = {rule.name: rule for rule in load_config(config_path).rules}
    records = [value for _, _, value in run.published]
    commands = [value for topic, _, value in run.published if topic == CONTROL_TOPIC]
    firing = {}
    for record in records:
        if record.get("kind") == "alert" and record.get("state") == "firing":
            firing.setdefault(record["rule"], record)
    hook_firing = {}
    for wall, note in run.webhook:
        if note.get("state") == "firing":
            hook_firing.setdefault(note.get("rule"), wall)
    result = {"first_bad_beacon_ts": run.first_bad_ts, "alerts": {}, "failover": None}
    for name, record in sorted(firing.items()):
        rule_for = rules[name].for_ if name in rules else None
        delivered = hook_firing.get(name)
        symptom = symptom_ts(run, rules[name]) if name in rules else None
        result["alerts"][name] = {
            "detect_s": round(record["ts"] - run.first_bad_ts, 3),
            "for_s": rule_for,
            "within_for_plus_5": rule_for is not None and record["ts"] - run.first_bad_ts <= rule_for + 5,
            "symptom_s": None if symptom is None else round(symptom - run.first_bad_ts, 3),
            "within_for_plus_5_of_onset": symptom is not None and rule_for is not None
            and record["ts"] - symptom <= rule_for + 5,
            "delivery_wall_s": None if delivered is None else round(delivered - run.fired_wall[name], 3),
        }
    # The default stream rules that never fired in the outage are misses.
    result["missed"] = sorted(name for name, rule in rules.items()
                              if rule.metric in SYMPTOMS and name not in firing)
    if commands:
        command = commands[0]
        trigger_for = rules[TRIGGER].for_
        result["failover"] = {
            "commands": len(commands), "vendor_calls": len(run.vendor),
            "command_s": round(command["ts"] - run.first_bad_ts, 3), "for_s": trigger_for,
            "within_for_plus_5": command["ts"] - run.first_bad_ts <= trigger_for + 5,
        }
    return result


def long_window_only(rules: list[Rule]) -> list[Rule]:
    """The same rules on the SPEC's window alone (without their short window): the comparison."""
    return [replace(rule, short=None) for rule in rules]


def false_alarms(scenario: str, rule_sets: dict[str, list[Rule]], seed: int = 3, rooms: int = 5,
                 rate: float = 300, duration: float = 600.0) -> dict[str, Counter]:
    """Alerts that fire on a simulated show without a fault (`normal`, `surge`): per rule set, the
    firings per rule. Every set sees the same live snapshots at every step, as a worker has them."""
    sim = Simulation(scenario, rooms=rooms, seed=seed, duration=duration, rate=rate, bad_fraction=0)
    evaluators = {name: Evaluator(rules) for name, rules in rule_sets.items()}
    counts = {name: Counter() for name in rule_sets}
    engine = Engine(EngineConfig())
    partition = Partition(0, engine)
    last = None
    for message in sim.messages():
        events, _ = decode(message.value, message.topic)
        engine.ingest(events, sim.now)
        if sim.now == last:
            continue
        last = sim.now
        live = step_all([partition], sim.now, highwater=lambda topic, number: None).live
        for name, evaluator in evaluators.items():
            for snapshot in live.values():
                for transition in evaluator.evaluate(snapshot):
                    if transition.state == "firing":
                        counts[name][transition.alert.rule.name] += 1
    return counts


FALSE_ALARM_SCENARIOS = ("normal", "surge")


def false_alarm_table(config_path: str, seeds: tuple[int, ...], duration: float) -> tuple[str, dict]:
    """Firings without a fault, with the short windows and without them, over the same shows (one
    show per scenario and seed)."""
    rules = load_config(config_path).rules
    sets = {"long": long_window_only(rules), "both": rules}
    found = {scenario: {k: Counter() for k in sets} for scenario in FALSE_ALARM_SCENARIOS}
    for scenario in FALSE_ALARM_SCENARIOS:
        for seed in seeds:
            for k, counts in false_alarms(scenario, sets, seed=seed, duration=duration).items():
                found[scenario][k].update(counts)
    lines = ["| rule | " + " | ".join(f"{s}: 60 s window only | {s}: with the 10 s window" for s in FALSE_ALARM_SCENARIOS)
             + " |", "|---|" + "---:|---:|" * len(FALSE_ALARM_SCENARIOS)]
    for rule in rules:
        cells = [str(found[s][k][rule.name]) for s in FALSE_ALARM_SCENARIOS for k in ("long", "both")]
        lines.append(f"| {rule.name} | " + " | ".join(cells) + " |")
    totals = [str(sum(found[s][k].values())) for s in FALSE_ALARM_SCENARIOS for k in ("long", "both")]
    lines.append("| **all rules** | " + " | ".join(totals) + " |")
    return "\n".join(lines), {s: {k: dict(found[s][k]) for k in ("long", "both")} for s in FALSE_ALARM_SCENARIOS}


@click.command("bench-alerts")
@click.option("--seed", default=3, show_default=True, help="Seed of the simulated show.")
@click.option("--alerts-config", default="alerts/alerting.yml", show_default=True,
              type=click.Path(exists=True, dir_okay=False), help="Alerting config with the rules to time.")
@click.option("--write", "write_path", type=click.Path(dir_okay=False), default=None,
              help="Also write the figures into this file's alert-latency section (e.g. BENCHMARKS.md).")
@click.option("--false-alarms/--no-false-alarms", default=True, show_default=True,
              help="Also count the alerts fired on normal and surge shows, with and without the short windows.")
@click.option("--show-seconds", default=600.0, show_default=True, help="Length of each false-alarm show.")
@click.option("--false-alarm-seeds", default="3,7", show_default=True,
              help="Seeds of the false-alarm shows (one normal and one surge show each), comma-separated.")
def bench_alerts(seed, alerts_config, write_path, false_alarms, show_seconds, false_alarm_seeds):
    """Time from a CDN outage's first bad beacon to each alert and to the failover command."""
    import tempfile

    with tempfile.TemporaryDirectory() as data_dir:
        run = asyncio.run(run_outage(Path(data_dir), alerts_config, seed=seed))
    with tempfile.TemporaryDirectory() as data_dir:
        before = summarize(asyncio.run(run_outage(Path(data_dir), alerts_config, seed=seed, long_only=True)),
                           alerts_config)
    summary = summarize(run, alerts_config)
    summary["long_window_only"] = before
    lines = ["| alert | detected after first bad beacon | 60 s window only | rule `for` | within `for` + 5 s | "
             "onset of its symptom | within `for` + 5 s of the onset | notification delivery (wall) |",
             "|---|---:|---:|---:|---|---:|---|---:|"]
    for name, row in summary["alerts"].items():
        delivery = "-" if row["delivery_wall_s"] is None else f"{row['delivery_wall_s']:.3f} s"
        symptom = "-" if row["symptom_s"] is None else f"{row['symptom_s']:.1f} s"
        onset = "-" if row["symptom_s"] is None else "yes" if row["within_for_plus_5_of_onset"] else "NO"
        old = before["alerts"].get(name)
        old = "not fired" if old is None else f"{old['detect_s']:.1f} s"
        lines.append(f"| {name} | {row['detect_s']:.1f} s | {old} | {row['for_s']:.0f} s | "
                     f"{'yes' if row['within_for_plus_5'] else 'NO'} | {symptom} | {onset} | {delivery} |")
    for name in summary["missed"]:
        lines.append(f"| {name} | not fired | | | NO | | NO | |")
    failover = summary["failover"]
    if failover:
        lines.append("")
        lines.append(f"Failover command after {failover['command_s']:.1f} s (trigger `{TRIGGER}` has `for` "
                     f"{failover['for_s']:.0f} s: {'within' if failover['within_for_plus_5'] else 'NOT within'} "
                     f"`for` + 5 s); {failover['commands']} command(s), {failover['vendor_calls']} call(s) "
                     f"to the CDN API.")
    else:
        lines.append("\nNo failover command was issued.")
    if before["failover"]:
        lines.append(f"With the 60 s windows only (the same show): failover command after "
                     f"{before['failover']['command_s']:.1f} s.")
    text = "\n".join(lines)
    if false_alarms:
        try:
            seeds = tuple(int(s) for s in false_alarm_seeds.split(","))
        except ValueError:
            raise click.BadParameter(f"expected integers separated by commas, got {false_alarm_seeds!r}",
                                     param_hint="--false-alarm-seeds") from None
        table, counts = false_alarm_table(alerts_config, seeds, show_seconds)
        summary["false_alarms"] = counts
        text += (f"\n\nAlerts fired without any fault: simulated `{'` and `'.join(FALSE_ALARM_SCENARIOS)}` shows "
                 f"(seeds {', '.join(map(str, seeds))}: {len(seeds)} shows each, 5 rooms, {show_seconds:.0f} s), "
                 "every rule evaluated at every step on the same live snapshots, with its 60 s window only and "
                 f"with the 10 s window beside it.\n\n{table}")
    click.echo(text)
    click.echo(json.dumps(summary))
    if write_path:
        from ..soak import write_section

        write_section(write_path, "## Alert and failover latency (`livemon bench-alerts`)\n\n"
                      f"Simulated CDN outage (seed {seed}), event time from the first bad beacon; "
                      "the onset of a rule's symptom is the first second after the fault whose beacons are over "
                      f"the rule's line (see docs/ALERTING.md, \"Two windows\").\n\n{text}",
                      begin="<!-- bench-alerts:begin -->", end="<!-- bench-alerts:end -->")
