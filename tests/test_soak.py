"""`livemon soak`, short: a surge over many rooms against the embedded broker and a real worker.

A minute is all warm-up (windows, presences and retention horizons are still filling), so this
run judges lag and latency and checks the report; flat memory is judged by the 30-minute run whose
figures are in BENCHMARKS.md (`livemon soak --write BENCHMARKS.md`).
"""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from livemon.soak import BEGIN, END, Sample, machine_load, verdict, write_section


@pytest.mark.slow  # a minute of load: with the other soak and load runs (the default suite's time budget)
def test_short_soak_reports_bounded_lag_and_latency(tmp_path):
    report = tmp_path / "BENCHMARKS.md"
    report.write_text(f"# Benchmarks\n\nthroughput figures\n\n{BEGIN}\nold soak\n{END}\n\n## Later section\n")
    run = subprocess.run([sys.executable, "-m", "livemon", "soak", "--duration", "50", "--interval", "5",
                          "--rooms", "150", "--rate", "800", "--workers", "2", "--warmup", "15", "--max-growth", "1.0",
                          "--max-lag", "5000", "--max-latency", "5", "--quiet", "--write", str(report)],
                         capture_output=True, text=True, timeout=150)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["verdict"]["ok"] is True
    assert result["workers"] == 2  # the probe found its room on whichever worker owns it
    samples = result["samples"]
    assert len(samples) >= 8
    steady = [s for s in samples if s["t"] >= 15]
    assert all(s["events_per_s"] > 300 for s in steady)  # the show was on all along
    assert all(s["latency_s"] is not None and s["latency_s"] < 5 for s in steady)
    # Probes go at random moments of the second, and none shows before its second has ended.
    rests = [s["second_rest_s"] for s in samples]
    assert all(0 <= rest <= 1 for rest in rests) and max(rests) - min(rests) > 0.3
    assert all(s["latency_s"] > s["second_rest_s"] for s in steady)
    assert max(s["lag"] for s in steady) <= 5000
    assert "| RSS (MiB) |" in run.stdout and "verdict: PASS" in run.stdout
    assert all(s["broker_rss_mib"] > 0 for s in samples)  # the broker's growth is reported beside
    text = report.read_text()
    # Only the Soak section was replaced; what others wrote stays.
    assert text.count(BEGIN) == 1 and "old soak" not in text and "## Soak" in text
    assert text.startswith("# Benchmarks\n\nthroughput figures") and text.rstrip().endswith("## Later section")


def samples(rss: list[float], lag: int = 0, latency: float | None = 0.5, viewers=None, broker=None) -> list[Sample]:
    viewers = viewers or [1000] * len(rss)
    broker = broker or [60.0] * len(rss)
    return [Sample(t=10.0 * i, rss_mib=r, lag=lag, events_per_s=1000, cpu=0.3, latency_s=latency, viewers=v,
                   broker_rss_mib=b) for i, (r, v, b) in enumerate(zip(rss, viewers, broker))]


def test_verdict_flat_memory_and_bounded_lag():
    flat = samples([100, 180, 200, 201, 199, 202, 200, 201, 203])  # grows in the warm-up only
    assert verdict(flat, warmup=20, max_growth=0.1, max_lag=100, max_latency=2)["ok"]
    leaking = samples([100, 120, 140, 160, 180, 200, 220, 240, 260])
    result = verdict(leaking, warmup=20, max_growth=0.1, max_lag=100, max_latency=2)
    assert not result["ok"] and "memory grew" in result["reasons"][0]
    assert not verdict(samples([100] * 9, lag=500), 20, 0.1, 100, 2)["ok"]
    assert not verdict(samples([100] * 9, latency=None), 20, 0.1, 100, 2)["ok"]
    assert not verdict(samples([100] * 9, latency=2.5), 20, 0.1, 100, 2)["ok"]


def test_the_broker_memory_must_stay_flat_too():
    # The embedded broker holding more and more (records it never drops) fails the soak.
    filling = samples([200] * 9, broker=[40, 80, 120, 160, 200, 240, 280, 320, 360])
    result = verdict(filling, warmup=20, max_growth=0.1, max_lag=100, max_latency=2)
    assert not result["ok"] and result["reasons"] == [
        "the broker's memory grew +142.9% after the warm-up (140 -> 340 MiB) with tracked viewers 1000 -> 1000"]
    sawtooth = samples([200] * 9, broker=[40, 80, 120, 90, 125, 95, 120, 92, 124])  # trimmed: bounded
    assert verdict(sawtooth, warmup=20, max_growth=0.1, max_lag=100, max_latency=2)["ok"]


def test_memory_may_grow_with_the_audience_but_not_per_viewer():
    growing_audience = [1000, 1500, 2000, 2500, 3000, 3500, 4000, 4500, 5000]
    # Memory that follows the audience: the same RSS per tracked viewer.
    following = samples([50 + v * 0.04 for v in growing_audience], viewers=growing_audience)
    assert verdict(following, warmup=20, max_growth=0.1, max_lag=100, max_latency=2)["ok"]
    # Memory that grows faster than the audience does: a leak.
    leaking = samples([50 + v * 0.04 * (1 + i / 2) for i, v in enumerate(growing_audience)], viewers=growing_audience)
    result = verdict(leaking, warmup=20, max_growth=0.1, max_lag=100, max_latency=2)
    assert not result["ok"] and "tracked viewers" in result["reasons"][0]


def test_the_default_load_is_sized_to_the_machine_as_a_deployment_is():
    """Half the cores run workers, 100 busy rooms each; the rest is the broker's, the simulator's
    and the page's (docs/PRODUCTION.md, sizing). On two cores: one worker, 100 rooms."""
    assert machine_load(2) == (1, 100, 500.0)
    assert machine_load(1) == (1, 100, 500.0) and machine_load(None) == (1, 100, 500.0)
    assert machine_load(8) == (4, 400, 2000.0)
    # What is given stands; rooms given bring their workers, one per 100.
    assert machine_load(2, rooms=300) == (3, 300, 1500.0)
    assert machine_load(8, rooms=300, rate=800) == (3, 300, 800)
    assert machine_load(2, rooms=150) == (2, 150, 750.0)
    assert machine_load(2, workers=3) == (3, 300, 1500.0)
    assert machine_load(2, rooms=40, workers=2) == (2, 40, 200.0)


def test_write_section_appends_then_replaces(tmp_path):
    path = tmp_path / "B.md"
    write_section(path, "## Soak\none")
    write_section(path, "## Soak\ntwo")
    assert path.read_text() == f"{BEGIN}\n## Soak\ntwo\n{END}\n"


def _descendants(pid: int) -> set[int]:
    found, todo = set(), [pid]
    while todo:
        parent = todo.pop()
        for task in os.listdir(f"/proc/{parent}/task"):
            with open(f"/proc/{parent}/task/{task}/children") as children:
                for child in map(int, children.read().split()):
                    if child not in found:
                        found.add(child)
                        todo.append(child)
    return found


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"  # (a zombie has ended)
    except FileNotFoundError:
        return False


def test_a_soak_stopped_with_sigterm_stops_its_broker_web_workers_and_simulator(tmp_path):
    soak = subprocess.Popen([sys.executable, "-m", "livemon", "soak", "--duration", "600", "--rooms", "3",
                             "--rate", "50", "--workers", "1"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    try:
        assert soak.stderr.readline().startswith("soak: "), "the soak did not start"  # workers healthy
        children = _descendants(soak.pid)
        assert len(children) >= 4  # the broker, `livemon web`, a worker, the simulator
        soak.send_signal(signal.SIGTERM)
        assert soak.wait(timeout=60) != 0
        deadline = time.monotonic() + 15
        while any(map(_alive, children)) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not [pid for pid in children if _alive(pid)]
    finally:
        if soak.poll() is None:
            soak.kill()
