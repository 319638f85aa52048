"""`livemon worker`: one stream worker against any Kafka. Run several to scale out."""

from __future__ import annotations

import errno
import gc
import logging
import os
import shutil
import socket
import tempfile
from dataclasses import replace

import click

from livemon.agents.settings import WorkerSettings
from livemon.broker import BrokerUnavailable
from livemon.kafka_connection import KafkaConnectionError, ensure_topics, parse_brokers
from livemon.settings import build, config_option, options
from livemon.topics import EVENT_TOPICS


def check_port(host: str, port: int) -> None:
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


def faust_worker(app, loglevel: int | str, **options):
    """Faust's worker without its terminal spinner. The spinner's log handler sets the root logger
    to DEBUG, so that every debug line of aiokafka, mode and Faust would be made into a record
    for nothing (4 % of a busy worker's time, most of it in each produce)."""
    import faust

    made = faust.Worker(app, loglevel=loglevel, quiet=True, redirect_stdouts=False, **options)
    made.spinner = None
    return made


@click.command()
@config_option("worker")
@options(WorkerSettings, exclude=("clockless_future_limit",))
def worker(**values):
    """Run a stream worker: consume the event topics, serve /metrics and the web page."""
    from livemon.web.server import control_token

    try:
        settings = build(WorkerSettings, values)
    except ValueError as error:
        raise click.UsageError(str(error)) from None
    try:
        parse_brokers(settings.bootstrap)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--broker") from None
    try:
        settings.connection  # noqa: B018 - validated (and the password file read) before anything starts
    except ValueError as error:
        raise click.UsageError(str(error)) from None
    check_port(settings.web_host, settings.web_port)
    try:
        control_token(settings.token)  # a weak configured token is refused before joining the group
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--token") from None
    try:
        counts = ensure_topics(settings.connection, settings.partitions, timeout=settings.connect_timeout,
                               warn=lambda line: click.echo(f"warning: {line}", err=True))
    except (BrokerUnavailable, KafkaConnectionError, ValueError) as error:
        raise click.ClickException(str(error)) from None
    temporary = settings.data_dir is None
    settings = replace(settings, partitions=counts.get(EVENT_TOPICS[0], settings.partitions),
                       data_dir=tempfile.mkdtemp(prefix="livemon-worker-") if temporary else settings.data_dir)
    os.makedirs(settings.data_dir, exist_ok=True)  # Faust exits silently with a missing workdir
    try:
        run(settings)
    finally:
        if temporary:
            shutil.rmtree(settings.data_dir, ignore_errors=True)


def run(settings: WorkerSettings) -> None:
    """Run the worker until SIGTERM or Ctrl-C (Faust's worker handles both gracefully)."""
    from livemon.agents.app import make_app

    app, _runtime = make_app(settings)
    tune_gc()
    click.echo(f"livemon worker {settings.worker_id}: broker {settings.connection.describe()}, "
               f"metrics http://{settings.web_host}:{settings.web_port}/metrics", err=True)
    level = getattr(logging, settings.log_level.upper())
    try:
        faust_worker(app, level, workdir=settings.data_dir).execute_from_commandline()
    except SystemExit as exit_:
        if exit_.code not in (0, None):
            raise
