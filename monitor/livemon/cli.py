"""The `livemon` command line. Each command lives in the module that owns its concern and is
imported only when run, so `livemon --help` stays fast."""

from __future__ import annotations

import importlib
import signal

import click

# name -> (module, function, one-line help)
COMMANDS = {
    "demo": ("livemon.demo", "demo", "Run the embedded demo: broker, worker, simulator, web page."),
    "worker": ("livemon.agents.worker", "worker", "Run a stream worker against a Kafka broker."),
    "web": ("livemon.web.role", "web_command",
            "Serve the control-room page and record the shows, from the workers' step records."),
    "simulate": ("livemon.simulator.cli", "simulate", "Produce realistic live-room traffic to a broker."),
    "replay": ("livemon.replay", "replay", "Compute the metric timeline of a recorded event file."),
    "shows": ("livemon.recording.cli", "shows", "List recorded shows."),
    "review": ("livemon.recording.cli", "review", "Write the post-show review report of a show."),
    "incidents": ("livemon.recording.mttr", "incidents",
                  "Time to detect, acknowledge and resolve incidents per show and per week."),
    "report": ("livemon.recording.period", "report",
               "Write the period report of the recorded shows (HTML and XLSX)."),
    "dashboards": ("livemon.dashboards.cli", "dashboards", "Generate or push the Grafana dashboards."),
    "rules": ("livemon.alerting.cli", "rules", "Check alert rule files."),
    "bench": ("livemon.bench", "bench", "Measure throughput, latency and memory."),
    "bench-alerts": ("livemon.alerting.latency", "bench_alerts",
                     "Time from a CDN outage's first bad beacon to the alert and the failover."),
    "alert-relay": ("livemon.alerting.relay", "alert_relay", "Re-send Alertmanager webhooks to DingTalk/Feishu robots, signed."),
    "soak": ("livemon.soak", "soak", "Run a long promotion-level show and report resources over time."),
    "lag-exporter": ("livemon.lag", "lag_exporter",
                     "Serve the consumer groups' lag read from the broker's committed offsets."),
    "operators": ("livemon.web.operators", "operators", "Named operators' tokens for control actions: add, remove, hash, list."),
}


class LazyGroup(click.Group):
    def list_commands(self, ctx):
        return sorted(COMMANDS)

    def get_command(self, ctx, name):
        if name not in COMMANDS:
            return None
        module, attr, _ = COMMANDS[name]
        try:
            return getattr(importlib.import_module(module), attr)
        except ModuleNotFoundError as error:
            if not module.startswith(error.name or "\0"):
                raise
            return None

    def format_commands(self, ctx, formatter):
        rows = [(name, COMMANDS[name][2]) for name in sorted(COMMANDS)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup)
@click.version_option(package_name="liveroom-monitor")
def cli():
    """liveroom-monitor: real-time metrics, alerts and CDN failover for e-commerce live rooms."""


def main():
    # Ctrl-C stops every command, also one started with SIGINT ignored (which a child inherits):
    # a background job of a script, a test runner's worker. Python then installs no handler.
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    cli(prog_name="livemon")
