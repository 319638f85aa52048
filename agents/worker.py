"""`livemon worker`: one stream worker against any Kafka. Run several to scale out."""

from __future__ import annotations

import errno
import gc
import logging
import os
import shutil
import socket
import tempfile

import click

from livemon.broker import BrokerUnavailable, ensure_topics, parse_bootstrap
from livemon.topics import DEFAULT_PARTITIONS, EVENT_TOPICS


def _check_port(host: str, port: int) -> None:
    """Fail before joining the group if the web port is taken (a clear error, not a crash later)."""
    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
    except OSError as error:
        reason = "already in use" if error.errno == errno.EADDRINUSE else error.strerror
        raise click.ClickException(f"cannot listen on {host}:{port}: {reason}") from None


def tune_gc() -> None:
    """Freeze the start-up heap and collect the young generation less often: the engine keeps many
    long-lived small objects, which the default thresholds would scan over and over (a 2-3x cost)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 50, 1000)


@click.command()
@click.option("--broker", envvar="LIVEMON_BROKER", required=True, metavar="HOST:PORT",
              help="Kafka bootstrap server. Env: LIVEMON_BROKER.")
@click.option("--web-host", default="127.0.0.1", show_default=True,
              help="Address of /metrics, /healthz and the web page.")
@click.option("--web-port", default=6066, show_default=True, type=click.IntRange(0, 65535),
              help="Port of /metrics, /healthz and the web page.")
@click.option("--partitions", default=DEFAULT_PARTITIONS, show_default=True, type=click.IntRange(1, 1024),
              help="Partitions per event topic when the worker has to create the topics.")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None,
              help="Working directory of the worker (default: a temporary one).")
@click.option("--step", default=1.0, show_default=True, type=click.FloatRange(min=0, min_open=True),
              help="Seconds between evaluation instants (and live updates).")
@click.option("--window", default=60.0, show_default=True, type=click.FloatRange(min=0, min_open=True),
              help="Metric window W in seconds.")
@click.option("--lateness", default=5.0, show_default=True, type=click.FloatRange(min=0),
              help="Allowed lateness in seconds.")
@click.option("--presence-timeout", default=90.0, show_default=True, type=click.FloatRange(min=0, min_open=True),
              help="Seconds without enter/heartbeat after which a viewer is gone.")
@click.option("--checkpoint-interval", default=5.0, show_default=True,
              type=click.FloatRange(min=0.1), help="Seconds between state checkpoints.")
@click.option("--group", default="livemon", show_default=True, help="Consumer group (Faust app id).")
@click.option("--worker-id", default=None, help="Name of this worker in records (default host-pid).")
@click.option("--alerts-config", type=click.Path(exists=True, dir_okay=False), default=None,
              envvar="LIVEMON_ALERTS_CONFIG",
              help="Alerting config (rules, receivers, failover). Default: the repository's alerts/alerting.yml.")
@click.option("--no-alerts", is_flag=True, help="Run without alert evaluation.")
@click.option("--no-web-page", is_flag=True, help="Serve only /metrics and /healthz, not the control-room page.")
@click.option("--no-recording", is_flag=True,
              help="Do not record shows for the post-show review (recording does not depend on the page).")
@click.option("--recording-dir", type=click.Path(file_okay=False), default=None,
              help="Where recorded timelines go (default: the recording store's own default).")
@click.option("--token", envvar="LIVEMON_TOKEN", default=None,
              help="Token for control actions on the web page (default: generated and printed).")
@click.option("--connect-timeout", default=10.0, show_default=True, type=click.FloatRange(min=0.1),
              help="Seconds to wait for the broker at start.")
@click.option("--future-limit", default=300.0, show_default=True, type=click.FloatRange(min=0, min_open=True),
              help="Events more than this many seconds ahead of the worker's clock are rejected (future).")
@click.option("--stall-after", default=30.0, show_default=True, type=click.FloatRange(min=1),
              help="Seconds without progress while messages wait before /livez reports the consumer stuck.")
@click.option("--log-level", default="warning", show_default=True,
              type=click.Choice(["debug", "info", "warning", "error"], case_sensitive=False))
def worker(broker, web_host, web_port, partitions, data_dir, step, window, lateness, presence_timeout,
           checkpoint_interval, group, worker_id, alerts_config, no_alerts, no_web_page, no_recording, recording_dir,
           token, connect_timeout, future_limit, stall_after, log_level):
    """Run a stream worker: consume the event topics, serve /metrics and the web page."""
    from livemon.agents.runtime import WorkerSettings, default_alerts_config
    from livemon.web.server import control_token

    try:
        parse_bootstrap(broker)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--broker") from None
    _check_port(web_host, web_port)
    try:
        control_token(token)  # a weak configured token is refused before joining the group
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--token") from None
    try:
        settings = WorkerSettings(bootstrap=broker, web_host=web_host, web_port=web_port,
                                  partitions=partitions, step=step, window=window, lateness=lateness,
                                  presence_timeout=presence_timeout,
                                  checkpoint_interval=checkpoint_interval, group=group,
                                  alerts_config=None if no_alerts else (alerts_config or default_alerts_config()),
                                  recording_dir=recording_dir, token=token, web_page=not no_web_page, recording=not no_recording,
                                  future_limit=future_limit, stall_after=stall_after)
        settings.engine_config()  # validates the window/step combination
    except ValueError as error:
        raise click.UsageError(str(error)) from None
    if worker_id:
        settings.worker_id = worker_id
    try:
        counts = ensure_topics(broker, partitions, timeout=connect_timeout)
    except BrokerUnavailable as error:
        raise click.ClickException(str(error)) from None
    except ValueError as error:
        raise click.ClickException(str(error)) from None
    settings.partitions = counts.get(EVENT_TOPICS[0], partitions)

    temporary = data_dir is None
    settings.data_dir = tempfile.mkdtemp(prefix="livemon-worker-") if temporary else data_dir
    os.makedirs(settings.data_dir, exist_ok=True)  # Faust exits silently with a missing workdir
    try:
        run(settings, log_level)
    finally:
        if temporary:
            shutil.rmtree(settings.data_dir, ignore_errors=True)


def run(settings, log_level: str = "warning") -> None:
    """Run the worker until SIGTERM or Ctrl-C (Faust's worker handles both gracefully)."""
    import faust

    from livemon.agents.app import make_app

    app, _runtime = make_app(settings)
    tune_gc()
    click.echo(f"livemon worker {settings.worker_id}: broker {settings.bootstrap}, "
               f"metrics http://{settings.web_host}:{settings.web_port}/metrics", err=True)
    level = getattr(logging, log_level.upper())
    faust_worker = faust.Worker(app, loglevel=level, quiet=True, redirect_stdouts=False,
                                workdir=settings.data_dir)
    try:
        faust_worker.execute_from_commandline()
    except SystemExit as exit_:
        if exit_.code not in (0, None):
            raise
