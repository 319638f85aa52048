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
import time
from dataclasses import dataclass, field
from pathlib import Path

import click
from aiohttp import web

from ..engine import Engine, EngineConfig
from ..ingest.events import Health, decode
from ..simulator.core import Simulation
from .config import Receiver, load_config
from .delivery import verify
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



async def run_outage(data_dir: Path, config_path: str = "alerts/alerting.yml", seed: int = 3, rooms: int = 2,
                     rate: float = 200, fault_at: float = 45.0, fault_for: float = 150.0,
                     duration: float = 220.0) -> OutageRun:
    """Run the loop over a simulated show with one CDN outage; return everything it produced."""
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
            if run.first_bad_ts is None:
                run.first_bad_ts = next((e.ts for e in events if type(e) is Health and e.ts >= fault and
                                         e.room_id == "room-001" and (e.error or e.stall_ms)), None)
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
        result["alerts"][name] = {
            "detect_s": round(record["ts"] - run.first_bad_ts, 3),
            "for_s": rule_for,
            "within_for_plus_5": rule_for is not None and record["ts"] - run.first_bad_ts <= rule_for + 5,
            "delivery_wall_s": None if delivered is None else round(delivered - run.fired_wall[name], 3),
        }
    if commands:
        command = commands[0]
        trigger_for = rules[TRIGGER].for_
        result["failover"] = {
            "commands": len(commands), "vendor_calls": len(run.vendor),
            "command_s": round(command["ts"] - run.first_bad_ts, 3), "for_s": trigger_for,
            "within_for_plus_5": command["ts"] - run.first_bad_ts <= trigger_for + 5,
        }
    return result


@click.command("bench-alerts")
@click.option("--seed", default=3, show_default=True, help="Seed of the simulated show.")
@click.option("--alerts-config", default="alerts/alerting.yml", show_default=True,
              type=click.Path(exists=True, dir_okay=False), help="Alerting config with the rules to time.")
@click.option("--write", "write_path", type=click.Path(dir_okay=False), default=None,
              help="Also write the figures into this file's alert-latency section (e.g. BENCHMARKS.md).")
def bench_alerts(seed, alerts_config, write_path):
    """Time from a CDN outage's first bad beacon to each alert and to the failover command."""
    import tempfile

    with tempfile.TemporaryDirectory() as data_dir:
        run = asyncio.run(run_outage(Path(data_dir), alerts_config, seed=seed))
    summary = summarize(run, alerts_config)
    lines = ["| alert | detected after first bad beacon | rule `for` | within `for` + 5 s | notification delivery (wall) |",
             "|---|---:|---:|---|---:|"]
    for name, row in summary["alerts"].items():
        delivery = "-" if row["delivery_wall_s"] is None else f"{row['delivery_wall_s']:.3f} s"
        lines.append(f"| {name} | {row['detect_s']:.1f} s | {row['for_s']:.0f} s | "
                     f"{'yes' if row['within_for_plus_5'] else 'NO'} | {delivery} |")
    failover = summary["failover"]
    if failover:
        lines.append("")
        lines.append(f"Failover command after {failover['command_s']:.1f} s (trigger `{TRIGGER}` has `for` "
                     f"{failover['for_s']:.0f} s: {'within' if failover['within_for_plus_5'] else 'NOT within'} "
                     f"`for` + 5 s); {failover['commands']} command(s), {failover['vendor_calls']} call(s) "
                     f"to the CDN API.")
    else:
        lines.append("\nNo failover command was issued.")
    text = "\n".join(lines)
    click.echo(text)
    click.echo(json.dumps(summary))
    if write_path:
        from ..soak import write_section

        write_section(write_path, "## Alert and failover latency (`livemon bench-alerts`)\n\n"
                      f"Simulated CDN outage (seed {seed}), event time from the first bad beacon.\n\n{text}",
                      begin="<!-- bench-alerts:begin -->", end="<!-- bench-alerts:end -->")
