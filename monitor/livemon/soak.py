"""`livemon soak`: a long promotion-level show against the embedded broker and a real worker.

It starts the embedded broker, `livemon worker` processes sized to the machine as
docs/PRODUCTION.md sizes a deployment (`machine_load`: half the cores for workers, the other half
for the broker, the producers and the page; `ROOMS_PER_WORKER` busy rooms a worker; all evaluate
alerts), beside them `livemon web` (the control-room page and the one recorder, as `web` in the
compose file) and `livemon simulate --scenario surge` over the rooms, then samples every
`--interval` seconds: resident memory and CPU (summed over the workers and the web process),
consumer lag, events per second, and the end-to-end latency of a probe (a paid order in room `soak-probe` sent with the current time,
timed until the /metrics of the worker that owns the room counts it). The verdict:

* memory flat, the workers' and the embedded broker's each: after the warm-up, the median RSS of
  the last third of the samples is within `--max-growth` (relative, plus 16 MiB) of the median of
  the first third; or, when the audience grew meanwhile (tracked viewers, the sum of
  `livemon_room_viewers`), RSS per tracked viewer did not grow by more than `--max-growth`;
* lag bounded: after the warm-up, consumer lag never exceeds `--max-lag` messages and every probe
  is seen within `--max-latency` seconds.

It prints a table, a JSON line, and with `--write FILE` replaces the "Soak" section of FILE
(between `<!-- soak:begin -->` and `<!-- soak:end -->`, appended if missing), leaving the rest of
the file to whoever else writes it.
"""

from __future__ import annotations

import json
import math
import os
import platform
import re
import statistics
import sys
import tempfile
import time
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path

import click

from livemon.broker import EMBEDDED_TRIM_EVERY
from livemon.demo import EMBEDDED_CHECKPOINT_INTERVAL
from livemon.processes import LivemonProcess, WorkerProcess, sigterm_as_interrupt
from livemon.topics import TOPIC_OF_TYPE

BEGIN, END = "<!-- soak:begin -->", "<!-- soak:end -->"
PROBE_ROOM = "soak-probe"
ROOMS_PER_WORKER = 100  # busy rooms a worker carries with a third of its core to spare (docs/PRODUCTION.md, sizing)
RATE_PER_ROOM = 5.0     # events/s of the normal show per room (the surge sent 3-6 times that in 30 minutes)


def machine_load(cores: int | None, rooms: int | None = None, workers: int | None = None,
                 rate: float | None = None) -> tuple[int, int, float]:
    """(workers, rooms, rate) of a soak: what is given, the rest sized as docs/PRODUCTION.md sizes a
    deployment. Workers get half the cores, the other half is left to the broker, the producers
    (the simulator) and `livemon web`, which on this machine kind take as much as the workers'
    own work; each worker gets `ROOMS_PER_WORKER` busy rooms. Given rooms, one worker per
    `ROOMS_PER_WORKER` of them."""
    if workers is None:
        workers = math.ceil(rooms / ROOMS_PER_WORKER) if rooms else max(1, (cores or 2) // 2)
    rooms = rooms or workers * ROOMS_PER_WORKER
    return workers, rooms, rate or rooms * RATE_PER_ROOM
# The simulator stands in for producers on machines of their own (docs/PRODUCTION.md); here it
# shares the cores with the broker and the workers, so it runs at a lower priority and takes the
# CPU they leave, as a load generator should. Its events/s and CPU are in every sample.
SIMULATOR_NICE = 10
POLL_GAP = 0.05  # seconds between the probe's reads of its room's /metrics (`?room=`: a few hundred bytes)
_PROBE_LINE = re.compile(rb'^livemon_room_orders_total\{room="soak-probe"\} ([0-9.e+]+)$', re.M)
_LAG_LINE = re.compile(rb"^livemon_consumer_lag_messages\{[^}]*\} ([0-9.e+]+)$", re.M)
_VIEWERS_LINE = re.compile(rb'^livemon_room_viewers\{[^}]*\} ([0-9.e+]+)$', re.M)
_EVENTS_LINE = re.compile(rb'^livemon_events_total\{type="[a-z]+"\} ([0-9.e+]+)$', re.M)


@dataclass
class Sample:
    t: float  # seconds since the start
    rss_mib: float
    lag: int
    events_per_s: float
    cpu: float  # cores the workers used since the previous sample
    latency_s: float | None  # the probe's end-to-end latency; None: not seen in time
    viewers: int = 0  # viewers the worker tracks (sum of livemon_room_viewers)
    broker_rss_mib: float = 0.0  # the embedded broker's memory
    broker_cpu: float = 0.0  # share of one core since the previous sample
    simulator_cpu: float = 0.0  # the simulator's (the load generator shares the machine)
    cpu_max: float = 0.0  # the busiest worker's
    harness_cpu: float = 0.0  # this process's: the broker's gate and trimmer, the probe, the sampling
    second_rest_s: float | None = None  # of the probe's latency, its second still to run when sent
    sent_at: float | None = None  # wall time the probe was sent (to line up with the broker's and workers' logs)


def _rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _cpu_seconds(pid: int) -> float:
    """CPU time of `pid` and of its children waited for (a worker's checkpoint encoders)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return sum(map(int, fields[11:15])) / os.sysconf("SC_CLK_TCK")


def _scrape(url: str, room: str | None = None) -> bytes:
    """The worker's /metrics, or one room's families of it."""
    with urllib.request.urlopen(f"{url}/metrics" + (f"?room={room}" if room else ""), timeout=5) as response:
        return response.read()


def _probe_count(body: bytes) -> float:
    match = _PROBE_LINE.search(body)
    return float(match.group(1)) if match else 0.0


class Probe:
    """Paid orders in the probe room, each timed from sending until /metrics counts it. A viewer
    keeps the probe room busy (a heartbeat every 100 ms), as the rooms people watch are."""

    def __init__(self, bootstrap: str, urls: list[str], seed: int = 0):
        import random
        import threading

        from kafka import KafkaProducer

        self.producer = KafkaProducer(bootstrap_servers=bootstrap, acks=1, linger_ms=0)
        self.urls, self.sent = urls, 0
        self.random = random.Random(seed)
        self._stop = threading.Event()
        self._viewer = threading.Thread(target=self._heartbeats, daemon=True)
        self._viewer.start()

    def _heartbeats(self) -> None:
        from livemon.ingest.events import View, encode

        while not self._stop.wait(0.1):
            beat = View(PROBE_ROOM, "probe-viewer", round(time.time(), 3), "heartbeat")
            self.producer.send(TOPIC_OF_TYPE["view"], encode(beat), key=PROBE_ROOM.encode())

    def measure(self, timeout: float) -> tuple[float | None, float, float]:
        """(seconds until /metrics counted the order, None if not within `timeout`; the rest of
        its second when it was sent; the wall time it was sent). An order shows once its second
        has ended (SPEC §3: the newest whole instant), so the probe is sent at a random moment of
        the second: samples taken every `--interval` from one start would otherwise all fall at
        the same moment of it, and a run's latencies would move by up to a second with the
        moment it started."""
        from livemon.ingest.events import Order, encode

        self.sent += 1
        time.sleep(self.random.random())
        started = time.time()
        rest = math.ceil(started) - started
        order = Order(PROBE_ROOM, "prober", round(started, 3), f"probe-{self.sent}", "sku-probe", 1.0, "paid")
        self.producer.send(TOPIC_OF_TYPE["order"], encode(order), key=PROBE_ROOM.encode())
        self.producer.flush(timeout)
        while time.time() - started < timeout:
            for url in self.urls:  # the room's owner (any of them after a rebalance)
                try:
                    if _probe_count(_scrape(url, PROBE_ROOM)) >= self.sent:
                        return time.time() - started, rest, started
                except OSError:
                    pass
            # The probe room's families only: the whole /metrics of hundreds of rooms is over a
            # megabyte, which polled this often would starve the worker. Late by at most the gap.
            time.sleep(POLL_GAP)
        return None, rest, started

    def close(self) -> None:
        self._stop.set()
        self._viewer.join()
        self.producer.close(timeout=5)


def _flatness(steady: list[Sample], rss, max_growth: float) -> dict:
    """Memory `rss(sample)` over the steady samples: the median of their first third against
    that of their last; flat when within `max_growth` (plus 16 MiB), or when the audience grew
    (tracked viewers) and memory per tracked viewer did not grow by more than `max_growth`."""
    third = max(1, len(steady) // 3)
    early = statistics.median(rss(s) for s in steady[:third])
    late = statistics.median(rss(s) for s in steady[-third:])
    viewers_early = statistics.median(s.viewers for s in steady[:third])
    viewers_late = statistics.median(s.viewers for s in steady[-third:])
    per_viewer_early = early / viewers_early if viewers_early else None
    per_viewer_late = late / viewers_late if viewers_late else None
    per_viewer_flat = (per_viewer_early is not None and per_viewer_late is not None and
                       per_viewer_late <= per_viewer_early * (1 + max_growth))
    flat = late - early <= max_growth * early + 16 or (viewers_late > viewers_early and per_viewer_flat)
    return {"flat": flat, "early": early, "late": late, "growth": (late - early) / early if early else 0.0,
            "viewers_early": viewers_early, "viewers_late": viewers_late,
            "per_viewer_early": per_viewer_early, "per_viewer_late": per_viewer_late}


def verdict(samples: list[Sample], warmup: float, max_growth: float, max_lag: int,
            max_latency: float) -> dict:
    steady = [s for s in samples if s.t >= warmup]
    if len(steady) < 3:
        return {"ok": False, "reasons": ["too few samples after the warm-up"], "rss_growth": None}
    workers = _flatness(steady, lambda s: s.rss_mib, max_growth)
    broker = _flatness(steady, lambda s: s.broker_rss_mib, max_growth)
    reasons = []
    for name, memory in (("memory", workers), ("the broker's memory", broker)):
        if not memory["flat"]:
            reasons.append(f"{name} grew {memory['growth']:+.1%} after the warm-up ({memory['early']:.0f} -> "
                           f"{memory['late']:.0f} MiB) with tracked viewers {memory['viewers_early']:.0f} -> "
                           f"{memory['viewers_late']:.0f}")
    if max(s.lag for s in steady) > max_lag:
        reasons.append(f"lag reached {max(s.lag for s in steady)} messages (bound {max_lag})")
    if any(s.latency_s is None or s.latency_s > max_latency for s in steady):
        reasons.append(f"a probe took longer than {max_latency} s")
    early, late = workers["per_viewer_early"], workers["per_viewer_late"]
    return {"ok": not reasons, "reasons": reasons, "rss_growth": round(workers["growth"], 4),
            "rss_early_mib": round(workers["early"], 1), "rss_late_mib": round(workers["late"], 1),
            "viewers_early": round(workers["viewers_early"]), "viewers_late": round(workers["viewers_late"]),
            "kib_per_viewer_early": None if early is None else round(early * 1024, 2),
            "kib_per_viewer_late": None if late is None else round(late * 1024, 2),
            "broker_growth": round(broker["growth"], 4), "broker_early_mib": round(broker["early"], 1),
            "broker_late_mib": round(broker["late"], 1)}


def _summary(samples: list[Sample], warmup: float) -> dict:
    steady = [s for s in samples if s.t >= warmup] or samples
    latencies = sorted(s.latency_s for s in steady if s.latency_s is not None)

    def rank(q):
        return latencies[max(1, math.ceil(len(latencies) * q)) - 1] if latencies else None
    machine = [s.cpu + s.broker_cpu + s.simulator_cpu + s.harness_cpu for s in steady]
    return {"events_per_s": round(statistics.mean(s.events_per_s for s in steady)),
            "machine_cpu_median": round(statistics.median(machine), 2), "machine_cpu_max": round(max(machine), 2),
            "cpu": round(statistics.mean(s.cpu for s in steady), 2),
            "rss_max_mib": round(max(s.rss_mib for s in samples), 1),
            "lag_max": max(s.lag for s in steady), "lag_last": steady[-1].lag,
            "latency_p50_s": rank(0.5), "latency_p95_s": rank(0.95),
            "latency_max_s": latencies[-1] if latencies else None,
            # Less the rest of the order's second: the step's offset, the step and the transport.
            "beyond_second_max_s": max((round(s.latency_s - s.second_rest_s, 3) for s in steady
                                        if s.latency_s is not None and s.second_rest_s is not None), default=None)}


def _table(samples: list[Sample]) -> str:
    rows = ["|   t (s) | RSS (MiB) | viewers |   lag | events/s | CPU (busiest) | e2e latency (s) (its second's rest) "
            "| broker RSS (MiB) | broker CPU | simulator CPU | soak CPU |",
            "|--------:|----------:|--------:|------:|---------:|--------------:|------------------------------------:"
            "|-----------------:"
            "|-----------:|--------------:|---------:|"]
    for s in samples:
        latency = "lost" if s.latency_s is None else f"{s.latency_s:.3f}"
        if s.second_rest_s is not None:
            latency += f" ({s.second_rest_s:.2f})"
        rows.append(f"| {s.t:7.0f} | {s.rss_mib:9.1f} | {s.viewers:7d} | {s.lag:5d} | {s.events_per_s:8.0f} | "
                    f"{s.cpu:4.2f} ({s.cpu_max:4.2f}) | {latency:>36} | {s.broker_rss_mib:16.0f} | "
                    f"{s.broker_cpu:10.2f} | {s.simulator_cpu:13.2f} | {s.harness_cpu:8.2f} |")
    return "\n".join(rows)


def _thin(samples: list[Sample], rows: int = 20) -> list[Sample]:
    if len(samples) <= rows:
        return samples
    step = (len(samples) - 1) / (rows - 1)
    return [samples[round(i * step)] for i in range(rows)]


def report_markdown(result: dict, samples: list[Sample]) -> str:
    s, v, trims = result["summary"], result["verdict"], result.get("broker", {})
    lines = [
        "## Soak", "",
        f"`livemon soak --duration {result['duration']:.0f} --rooms {result['rooms']} --rate {result['rate']:.0f}` "
        f"on {result['machine']}, {result['date']}: the `surge` scenario, embedded broker, "
        f"{result.get('workers', 1)} worker(s) (alerting on) and `livemon web` (the page and the recording), "
        f"sampled every {result['interval']:.0f} s, warm-up {result['warmup']:.0f} s; memory and CPU are "
        f"the sums of the workers and `livemon web`, lag and events the workers'.",
        "",
        f"- **Verdict: {'PASS' if v['ok'] else 'FAIL'}**" + ("" if v["ok"] else f" ({'; '.join(v['reasons'])})"),
        f"- Memory after the warm-up: {v.get('rss_early_mib')} MiB -> {v.get('rss_late_mib')} MiB "
        f"({(v.get('rss_growth') or 0):+.1%}); peak {s['rss_max_mib']} MiB; tracked viewers "
        f"{v.get('viewers_early')} -> {v.get('viewers_late')}, RSS per tracked viewer "
        f"{v.get('kib_per_viewer_early')} -> {v.get('kib_per_viewer_late')} KiB",
        f"- Consumer lag after the warm-up: max {s['lag_max']} messages, at the end {s['lag_last']}",
        f"- End-to-end latency (probe order sent -> counted on /metrics): p50 {s['latency_p50_s']:.3f} s, "
        f"p95 {s['latency_p95_s']:.3f} s, max {s['latency_max_s']:.3f} s"
        + (f"; less the rest of the order's second (sent at a random moment of it; SPEC §3 shows it once "
           f"the second has ended), at most {s['beyond_second_max_s']:.3f} s"
           if s.get("beyond_second_max_s") is not None else "") if s["latency_p50_s"] is not None
        else "- End-to-end latency: no probe seen",
        f"- Throughput: {s['events_per_s']:,} events/s; workers' and web's CPU {s['cpu']:.2f} cores (checkpoint "
        f"encoders included); the machine (those, broker, simulator and this command's gate, trimmer "
        f"and probe): median {s.get('machine_cpu_median', 0):.2f}, at most {s.get('machine_cpu_max', 0):.2f} cores "
        f"after the warm-up",
        f"- Embedded broker (memory storage, trimmed every {EMBEDDED_TRIM_EVERY:.0f} s: {trims.get('trims', 0)} "
        f"trims, clients held {trims.get('median_held_s', 0):.3f} s (median), at most "
        f"{trims.get('max_held_s', 0):.3f} s): RSS {samples[0].broker_rss_mib:.0f} -> "
        f"{samples[-1].broker_rss_mib:.0f} MiB (peak {max(s.broker_rss_mib for s in samples):.0f}; after the "
        f"warm-up {v.get('broker_early_mib')} -> {v.get('broker_late_mib')} MiB, medians of the first and last "
        f"thirds), CPU {samples[0].broker_cpu:.2f} -> {samples[-1].broker_cpu:.2f} cores", "",
        _table(_thin(samples)), "",
    ]
    return "\n".join(lines)


def write_section(path: str | Path, text: str, begin: str = BEGIN, end: str = END) -> None:
    """Replace the text between `begin` and `end` in `path` (append the block if it is missing)."""
    path = Path(path)
    old = path.read_text() if path.exists() else ""
    block = f"{begin}\n{text.rstrip()}\n{end}"
    if begin in old and end in old.split(begin, 1)[1]:
        head, rest = old.split(begin, 1)
        new = head + block + rest.split(end, 1)[1]
    else:
        new = (old.rstrip() + "\n\n" if old.strip() else "") + block + "\n"
    path.write_text(new)


def _machine() -> str:
    cpu = platform.machine()
    try:
        with open("/proc/cpuinfo") as info:
            cpu = next((line.split(":", 1)[1].strip() for line in info if line.startswith("model name")), cpu)
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}"


@click.command()
@click.option("--duration", default=1800.0, show_default=True, type=click.FloatRange(min=20),
              help="Seconds of show to run.")
@click.option("--rooms", default=None, type=click.IntRange(1, 100_000),
              help=f"Live rooms (room-001 is the hot one) [{ROOMS_PER_WORKER} per worker].")
@click.option("--rate", default=None, type=click.FloatRange(min=1),
              help=f"Events per second of the normal show; the surge multiplies arrivals and orders "
                   f"[{RATE_PER_ROOM:.0f} per room].")
@click.option("--interval", default=10.0, show_default=True, type=click.FloatRange(min=1),
              help="Seconds between samples.")
@click.option("--warmup", default=None, type=click.FloatRange(min=0),
              help="Seconds before memory and lag are judged [40% of the duration, at most 720 s: windows, presences, the retention horizons and the recording's caches fill during the first minutes].")
@click.option("--max-growth", default=0.10, show_default=True, type=click.FloatRange(min=0),
              help="Allowed relative RSS growth after the warm-up (plus 16 MiB).")
@click.option("--max-lag", default=20_000, show_default=True, type=click.IntRange(min=0),
              help="Allowed consumer lag in messages after the warm-up.")
@click.option("--max-latency", default=2.0, show_default=True, type=click.FloatRange(min=0.1),
              help="Allowed end-to-end latency of a probe (one a sample), seconds: field control reads "
                   "the numbers within 2 s.")
@click.option("--workers", default=None, type=click.IntRange(1, 16),
              help=f"Worker processes [one per {ROOMS_PER_WORKER} rooms given; else half the machine's "
                   f"cores, the other half left to the broker, the simulator and the page, as "
                   f"docs/PRODUCTION.md sizes a deployment].")
@click.option("--checkpoint-interval", default=EMBEDDED_CHECKPOINT_INTERVAL, show_default=True,
              type=click.FloatRange(min=0.1),
              help="The worker's --checkpoint-interval (the demo's: the memory-only broker keeps every checkpoint).")
@click.option("--seed", default=0, show_default=True, help="Seed of the simulated show.")
@click.option("--write", "write_path", type=click.Path(dir_okay=False), default=None,
              help="Replace the Soak section of this Markdown file (e.g. BENCHMARKS.md).")
@click.option("--json-out", type=click.Path(dir_okay=False), default=None,
              help="Also append the JSON line to this file.")
@click.option("--quiet", is_flag=True, help="No line per sample while running.")
def soak(duration, rooms, rate, interval, warmup, max_growth, max_lag, max_latency, workers, checkpoint_interval,
         seed, write_path, json_out, quiet):
    """Run a long promotion-level show and report memory, lag and latency over time."""
    with sigterm_as_interrupt():  # a SIGTERM stops the broker, workers and simulator too
        _soak(duration, rooms, rate, interval, warmup, max_growth, max_lag, max_latency, workers,
              checkpoint_interval, seed, write_path, json_out, quiet)


def _soak(duration, rooms, rate, interval, warmup, max_growth, max_lag, max_latency, workers, checkpoint_interval,
          seed, write_path, json_out, quiet):
    from livemon.broker import BrokerUnavailable, EmbeddedBroker, free_port

    workers, rooms, rate = machine_load(os.cpu_count(), rooms, workers, rate)
    warmup = min(720.0, max(10.0, duration * 0.4)) if warmup is None else warmup
    workdir = tempfile.mkdtemp(prefix="livemon-soak-")
    log_path = os.path.join(workdir, "soak.log")
    processes: list[LivemonProcess] = []
    samples: list[Sample] = []
    try:
        # As `livemon demo` runs it: trimmed, checkpoints every 30 s.
        broker = EmbeddedBroker(log_path=os.path.join(workdir, "broker.log"), trim_every=EMBEDDED_TRIM_EVERY).start()
    except BrokerUnavailable as error:
        raise click.ClickException(str(error)) from None
    try:
        # The page and the one recorder on their own (the compose file's `web`); the workers compute.
        web = WorkerProcess(broker.bootstrap, ["--recording-dir", os.path.join(workdir, "recording")], log_path,
                            command="web")
        processes.append(web)
        pool: list[WorkerProcess] = []
        for i in range(workers):
            data_dir = os.path.join(workdir, f"worker-{i + 1}")
            os.makedirs(data_dir)
            pool.append(WorkerProcess(broker.bootstrap, ["--group", "soak", "--data-dir", data_dir,
                                                         "--worker-id", f"soak-{i + 1}", "--no-recording",
                                                         "--no-web-page",
                                                         "--checkpoint-interval", str(checkpoint_interval)],
                                      log_path))
            processes.append(pool[-1])
        for process in (web, *pool):
            process.wait_healthy()
        served = [*pool, web]  # memory and CPU: the deployment's own processes
        simulator = LivemonProcess(["simulate", "--broker", broker.bootstrap, "--scenario", "surge",
                                    "--rooms", str(rooms), "--rate", str(rate), "--duration", str(duration + 60),
                                    "--fault-at", "0", "--fault-for", str(duration + 60), "--seed", str(seed),
                                    "--quiet"], log_path, nice=SIMULATOR_NICE)
        processes.append(simulator)
        probe = Probe(broker.bootstrap, [worker.url for worker in pool], seed=seed)
        started = time.monotonic()
        last_cpu = {process.pid: _cpu_seconds(process.pid) for process in served}
        last_events, last_t = 0.0, 0.0
        last_broker_cpu, last_sim_cpu = _cpu_seconds(broker.process.pid), _cpu_seconds(simulator.pid)
        last_own_cpu = time.process_time()
        if not quiet:
            click.echo(f"soak: {rooms} rooms, surge, {duration:.0f} s; {workers} worker(s) "
                       f"{' '.join(worker.url for worker in pool)}; page {web.url}; log {log_path}", err=True)
        while (t := time.monotonic() - started) < duration:
            time.sleep(max(0.0, interval - (t % interval)))
            for process, name in [*((worker, f"{worker.command} {worker.url}") for worker in served),
                                  (simulator, "simulator")]:
                if process.poll() is not None:
                    raise click.ClickException(f"the {name} exited with {process.returncode}; see {log_path}")
            t = time.monotonic() - started
            latency, rest, sent_at = probe.measure(timeout=max_latency + 1)  # later than max_latency fails anyway
            bodies = [_scrape(worker.url) for worker in pool]
            events = sum(float(x) for body in bodies for x in _EVENTS_LINE.findall(body))
            cpu = {process.pid: _cpu_seconds(process.pid) for process in served}
            broker_cpu, sim_cpu = _cpu_seconds(broker.process.pid), _cpu_seconds(simulator.pid)
            own_cpu = time.process_time()
            gap = max(1e-9, t - last_t)
            used = {pid: (cpu[pid] - last_cpu[pid]) / gap for pid in cpu}
            sample = Sample(t=round(t, 1), rss_mib=round(sum(_rss_mib(process.pid) for process in served), 1),
                            lag=int(sum(float(x) for body in bodies for x in _LAG_LINE.findall(body))),
                            events_per_s=(events - last_events) / gap if last_t else 0.0,
                            cpu=round(sum(used.values()), 2) if last_t else 0.0,
                            latency_s=None if latency is None else round(latency, 3),
                            second_rest_s=round(rest, 3), sent_at=round(sent_at, 3),
                            viewers=int(sum(float(x) for body in bodies for x in _VIEWERS_LINE.findall(body))),
                            broker_rss_mib=round(_rss_mib(broker.process.pid), 1),
                            broker_cpu=round((broker_cpu - last_broker_cpu) / gap, 2) if last_t else 0.0,
                            simulator_cpu=round((sim_cpu - last_sim_cpu) / gap, 2) if last_t else 0.0,
                            cpu_max=round(max(used.values()), 2) if last_t else 0.0,
                            harness_cpu=round((own_cpu - last_own_cpu) / gap, 2) if last_t else 0.0)
            last_cpu, last_events, last_t, last_broker_cpu, last_sim_cpu = cpu, events, t, broker_cpu, sim_cpu
            last_own_cpu = own_cpu
            samples.append(sample)
            if not quiet:
                click.echo(f"  t={sample.t:6.0f}s rss={sample.rss_mib:7.1f} MiB lag={sample.lag:6d} "
                           f"events/s={sample.events_per_s:8.0f} cpu={sample.cpu:4.2f} (max {sample.cpu_max:4.2f}) "
                           f"e2e={sample.latency_s} (rest {sample.second_rest_s}) "
                           f"broker={sample.broker_rss_mib:.0f} MiB cpu={sample.broker_cpu:4.2f} "
                           f"simulator cpu={sample.simulator_cpu:4.2f} harness cpu={sample.harness_cpu:4.2f} trims={broker.trims} held={broker.max_held_s:.2f}s",
                           err=True)
        probe.close()
    finally:
        for process in reversed(processes):
            process.stop()
        broker.stop()
    holds = sorted(broker.holds)
    trims = {"trims": broker.trims, "max_held_s": round(broker.max_held_s, 3),
             "median_held_s": holds[len(holds) // 2] if holds else 0.0}
    samples = samples[1:] or samples  # the first has no rates yet
    result = {"kind": "soak", "date": time.strftime("%Y-%m-%d"), "machine": _machine(), "duration": duration,
              "rooms": rooms, "rate": rate, "workers": workers, "interval": interval, "warmup": warmup,
              "summary": _summary(samples, warmup),
              "verdict": verdict(samples, warmup, max_growth, max_lag, max_latency), "broker": trims,
              "samples": [asdict(s) for s in samples]}
    click.echo(_table(samples))
    v = result["verdict"]
    click.echo(f"verdict: {'PASS' if v['ok'] else 'FAIL'}" + ("" if v["ok"] else " - " + "; ".join(v["reasons"])))
    line = json.dumps(result, separators=(",", ":"))
    click.echo(line)
    if json_out:
        with open(json_out, "a") as out:
            out.write(line + "\n")
    if write_path:
        write_section(write_path, report_markdown(result, samples))
        click.echo(f"wrote the Soak section of {write_path}", err=True)
    if not v["ok"]:
        sys.exit(1)


