"""`livemon demo`: the embedded default. A broker, a worker and a simulated show, on loopback.

Every child runs in its own process group and is stopped (SIGTERM, then SIGKILL) when the demo
ends, however it ends: Ctrl-C, SIGTERM, or a child dying.
"""

from __future__ import annotations

import os
import tempfile
import time
import urllib.request

import click


from livemon.broker import EMBEDDED_TRIM_EVERY, BrokerUnavailable, EmbeddedBroker, free_port
from livemon.processes import LivemonProcess, WorkerProcess, sigterm_as_interrupt

SUMMARY_ROWS = 12
# Checkpoints are the embedded broker's biggest writer (BENCHMARKS.md, Soak): on it, a worker
# checkpoints every 30 s instead of 5 s. The cost is a longer replay (up to 30 s of events) when
# the worker is restarted, and the broker's trim keeps the input from the newest 3 checkpoints on.
EMBEDDED_CHECKPOINT_INTERVAL = 30.0


def read_rooms(metrics_url: str) -> list[dict]:
    """Per-room values from a worker's /metrics, for the terminal summary."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(metrics_url, timeout=3) as response:
        text = response.read().decode()
    rooms: dict[str, dict] = {}
    wanted = {"livemon_room_online": "online", "livemon_room_interaction_ratio": "interaction",
              "livemon_room_conversion_ratio": "conversion", "livemon_room_gmv_total": "gmv",
              "livemon_room_stall_ratio": "stall", "livemon_room_orders_total": "orders"}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            room = sample.labels.get("room")
            if room is None or "cdn" in sample.labels:
                continue
            if sample.name in wanted:
                rooms.setdefault(room, {})[wanted[sample.name]] = sample.value
            elif sample.name == "livemon_room_retention_ratio" and sample.labels.get("horizon") == "60s":
                rooms.setdefault(room, {})["retention"] = sample.value
    return sorted(({"room": room, **values} for room, values in rooms.items()),
                  key=lambda row: -row.get("online", 0))


# The terminal summary's words per language ($LIVEMON_LANG: zh, the default, or en).
SUMMARY_WORDS = {
    "zh": {"columns": ("直播间", "在线", "60 秒留存", "互动率", "转化率", "本场成交额", "订单", "卡顿率"),
           "waiting": "(等待第一批事件)", "top rooms by online viewers": "在线人数最多的直播间",
           " (worker not answering)": "(worker 无响应)"},
    "en": {"columns": ("room", "online", "retention 60s", "interaction", "conversion", "GMV", "orders", "stall"),
           "waiting": "(waiting for the first events)"},
}


def summary_table(rows: list[dict], title: str, lang: str | None = None):
    from rich.table import Table

    from livemon.recording.review import default_lang, money

    lang = lang or default_lang()
    words = SUMMARY_WORDS[lang]
    for english, translated in words.items():   # the demo's English titles, in the summary's language
        if english.startswith(("top", " (")):
            title = title.replace(english, translated)

    def pct(value):
        return "-" if value is None else f"{value * 100:.1f}%"

    table = Table(title=title, expand=False)
    for i, name in enumerate(words["columns"]):
        table.add_column(name, justify="left" if i == 0 else "right")
    for row in rows[:SUMMARY_ROWS]:
        stall = row.get("stall")
        table.add_row(row["room"], f"{row.get('online', 0):.0f}", pct(row.get("retention")),
                      pct(row.get("interaction")), pct(row.get("conversion")), money(row.get("gmv", 0), lang),
                      f"{row.get('orders', 0):.0f}",
                      "-" if stall is None else (f"[red]{stall * 100:.1f}%[/]" if stall > 0.05 else f"{stall * 100:.1f}%"))
    if not rows:
        table.add_row(words["waiting"], "", "", "", "", "", "", "")
    return table


@click.command()
@click.option("--rooms", default=6, show_default=True, type=click.IntRange(1, 10_000), help="Simulated live rooms.")
@click.option("--rate", default=400.0, show_default=True, type=click.FloatRange(min=0, min_open=True),
              help="Simulated events per second.")
@click.option("--scenario", default="normal,cdn-outage", show_default=True,
              help="Simulator scenario(s), comma-separated (see `livemon simulate --help`).")
@click.option("--web-port", default=6066, show_default=True, type=click.IntRange(0, 65535),
              help="Port of the web page and /metrics (0: a free port).")
@click.option("--partitions", default=8, show_default=True, type=click.IntRange(1, 256))
@click.option("--duration", default=0.0, show_default=True, type=click.FloatRange(min=0),
              help="Stop after this many seconds (0: until Ctrl-C).")
@click.option("--no-summary", is_flag=True, help="No live terminal table (for logs and scripts).")
def demo(rooms, rate, scenario, web_port, partitions, duration, no_summary):
    """Run the embedded demo: broker, worker, simulator and web page, all on 127.0.0.1."""
    from rich.console import Console
    from rich.live import Live

    console = Console()
    web_port = web_port or free_port()
    logs = tempfile.mkdtemp(prefix="livemon-demo-")
    broker = EmbeddedBroker(partitions=partitions, log_path=os.path.join(logs, "broker.log"),
                            trim_every=EMBEDDED_TRIM_EVERY)  # bounds what the memory-only broker holds
    worker = simulator = None
    with sigterm_as_interrupt():  # a SIGTERM stops everything, as Ctrl-C does
        try:
            try:
                broker.start()
            except BrokerUnavailable as error:
                raise click.ClickException(str(error)) from None
            worker = WorkerProcess(broker.bootstrap, ["--partitions", str(partitions),
                                                      "--checkpoint-interval", str(EMBEDDED_CHECKPOINT_INTERVAL)],
                                   os.path.join(logs, "worker.log"), port=web_port)
            base = worker.url
            worker.wait_healthy(timeout=60)
            simulator = LivemonProcess(["simulate", "--broker", broker.bootstrap, "--scenario", scenario, "--rooms",
                                        str(rooms), "--rate", str(rate), "--duration", "0", "--quiet"],
                                       os.path.join(logs, "simulator.log"))
            console.print(f"[bold]livemon demo[/] broker {broker.bootstrap}")
            console.print(f"  control room  {base}/")
            console.print(f"  metrics       {base}/metrics")
            console.print(f"  health        {base}/healthz")
            console.print(f"  logs          {logs}")
            console.print("Ctrl-C stops everything.")
            ends = time.monotonic() + duration if duration else None
            title = "top rooms by online viewers"

            def render():
                try:
                    return summary_table(read_rooms(base + "/metrics"), title)
                except OSError:
                    return summary_table([], title + " (worker not answering)")
            if no_summary:
                while ends is None or time.monotonic() < ends:
                    _check_children(worker, simulator, logs)
                    time.sleep(1)
            else:
                with Live(render(), console=console, refresh_per_second=1, transient=False) as live:
                    while ends is None or time.monotonic() < ends:
                        _check_children(worker, simulator, logs)
                        time.sleep(1)
                        live.update(render())
        except KeyboardInterrupt:
            console.print("stopping...")
        finally:
            for process in (simulator, worker):
                if process is not None:
                    process.stop(timeout=15)
            broker.stop()


def _check_children(worker, simulator, logs) -> None:
    for name, process in (("worker", worker), ("simulator", simulator)):
        if process.poll() is not None:
            raise click.ClickException(f"the {name} exited with code {process.returncode}; see {logs}/{name}.log")
