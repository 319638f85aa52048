"""The control room: the page and the recording, fed by the workers' step records.

`attach_control_room` mounts it on an aiohttp app: a worker's (`livemon worker`, which then also
feeds it its own steps in process), or that of `livemon web`, the control room on its own. A
deployment has one of them recording. Run alone (the compose file's `web`), it computes no room:
the page and the recording never take a core from a worker's steps, nor the steps from them.
At 300 promotion rooms on two workers, a worker that also recorded and served the page spent a
fifth of its samples on them (decoding the other workers' steps, writing 300 final snapshots a
second), and it was the worker that fell behind.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from dataclasses import fields

import click
from aiohttp import web

from livemon.agents.settings import WorkerSettings
from livemon.kafka_connection import KafkaConnectionError, KafkaSecurity
from livemon.recording.store import RecordingStore
from livemon.recording.writer import RecordingWriter
from livemon.settings import build, config_option, options
from livemon.web.hub import ControlRoomHub
from livemon.web.server import add_routes, control_token

log = logging.getLogger(__name__)

# The worker's settings that the control room alone reads (one definition of each, the worker's).
WEB_OPTIONS = ("bootstrap", "web_host", "web_port", "web_page", "recording", "recording_dir", "token",
               "connect_timeout", "log_level", *(field.name for field in fields(KafkaSecurity)))


def attach_control_room(app: web.Application, settings: WorkerSettings,
                        local_worker: str | None = None) -> ControlRoomHub:
    """The control room's hub on `app` (before it starts): it reads every worker's step records,
    records the shows (unless `recording` is off) and serves the page (unless `web_page` is off).
    `local_worker`: the id of the worker it runs in, whose steps it is fed in process."""
    recorder = RecordingWriter(RecordingStore(settings.recording_dir)) if settings.recording else None
    hub = ControlRoomHub(recorder=recorder)
    if local_worker is not None:
        hub.read_locally(local_worker)
    if settings.web_page:
        token, generated = control_token(settings.token)
        add_routes(app, hub, token=token)
        if generated:
            print(f"control token (for actions on the web page): {token}", flush=True)

    async def start(app):
        await hub.start(settings.connection)

    async def stop(app):
        await hub.stop()
    app.on_startup.append(start)
    app.on_cleanup.append(stop)
    return hub


@click.command("web")
@config_option("web")
@options(WorkerSettings, only=WEB_OPTIONS)
def web_command(**values):
    """Serve the control-room page and record the shows, from the workers' step records (run the
    workers with --no-recording --no-web-page): a deployment's one recording writer."""
    from livemon.agents.worker import check_port

    try:
        settings = build(WorkerSettings, values)
        control_token(settings.token)  # a weak configured token is refused before anything starts
    except ValueError as error:
        raise click.UsageError(str(error)) from None
    if not (settings.web_page or settings.recording):
        raise click.UsageError("--no-web-page with --no-recording leaves the control room nothing to do")
    check_port(settings.web_host, settings.web_port)
    logging.basicConfig(level=getattr(logging, settings.log_level.upper()),
                        format="[%(asctime)s] [%(process)d] [%(levelname)s] %(message)s")
    try:
        settings.connection.check(settings.connect_timeout)
    except (KafkaConnectionError, ValueError) as error:
        raise click.ClickException(str(error)) from None
    asyncio.run(_serve(settings))


async def _serve(settings: WorkerSettings) -> None:
    app = web.Application(client_max_size=64 * 1024)
    hub = attach_control_room(app, settings)

    async def health(request: web.Request) -> web.Response:
        """200 while the step records are read; 503 with the reason while the broker is not."""
        error = hub.broker_error
        body = {"status": "broker" if error else "ok", "broker_error": error, "rooms": len(hub.rooms),
                "recording_pending": hub.recorder.pending if hub.recorder is not None else 0}
        return web.json_response(body, status=503 if error else 200)
    app.router.add_get("/healthz", health)
    registry = _registry(hub)

    async def metrics(request: web.Request) -> web.Response:
        from prometheus_client import generate_latest

        # The text format's 0.0.4, as the workers' /metrics (Prometheus 2.42 reads it).
        return web.Response(body=generate_latest(registry),
                            headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"})
    app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, settings.web_host, settings.web_port).start()
    click.echo(f"livemon web: broker {settings.connection.describe()}, page "
               f"http://{settings.web_host}:{settings.web_port}/"
               f"{', recording in ' + str(hub.recorder.store.dir) if hub.recorder is not None else ''}", err=True)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    try:
        await stopping.wait()
    finally:
        await runner.cleanup()  # the hub stops: what the recording has queued is written


def _registry(hub: ControlRoomHub):
    """The control room's own health for Prometheus (it has no room metrics: the workers do),
    with the process's CPU and memory."""
    from prometheus_client import CollectorRegistry, Gauge, ProcessCollector

    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    Gauge("livemon_web_rooms", "Rooms on the control-room page.", registry=registry).set_function(
        lambda: len(hub.rooms))
    # The workers' name and meaning: the broker-outage alert covers the control room too.
    Gauge("livemon_broker_up", "1 while the broker answers, 0 during an outage.",
          registry=registry).set_function(lambda: 0 if hub.broker_error else 1)
    Gauge("livemon_recording_pending_writes", "Recording writes queued and not yet on disk.",
          registry=registry).set_function(lambda: hub.recorder.pending if hub.recorder is not None else 0)
    return registry
