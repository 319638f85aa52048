"""The worker's HTTP server: /metrics, /healthz, /livez, and the control room (page and recording)."""

from __future__ import annotations

import time

from aiohttp import web

from livemon.web.role import attach_control_room


class WorkerHttp:
    def __init__(self, runtime):
        self.runtime = runtime
        self.app = web.Application(client_max_size=64 * 1024)
        self.runner: web.AppRunner | None = None

    async def start(self) -> None:
        settings = self.runtime.settings
        app = self.app
        app.router.add_get("/metrics", self._metrics_page)
        app.router.add_get("/healthz", self._health_page)
        app.router.add_get("/livez", self._live_page)
        if settings.web_page or settings.recording:
            hub = attach_control_room(app, settings, local_worker=settings.worker_id)
            self.runtime.local_readers.append(hub.feed_step)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, settings.web_host, settings.web_port).start()

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()

    def _stale(self) -> bool:
        runtime = self.runtime
        return time.time() - runtime.metrics.last_step._value.get() > max(10.0, 10 * runtime.settings.step)

    async def _metrics_page(self, request: web.Request) -> web.Response:
        runtime = self.runtime
        rooms = request.query.getall("room", ())
        if rooms:  # one room's (or a few rooms') families only
            body = runtime.collector.render_rooms(rooms)
        else:
            body = runtime.collector.render() + runtime.metrics.render() + _default_registry()
        return web.Response(body=body, headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"})

    async def _health_page(self, request: web.Request) -> web.Response:
        runtime = self.runtime
        stuck = runtime.watchdog.stalled
        healthy = runtime.ready and not self._stale() and not stuck
        body = {"status": "ok" if healthy else ("starting" if not runtime.ready else "stalled"),
                "worker": runtime.settings.worker_id, "partitions": sorted(runtime.owned),
                "rooms": runtime.room_count, "last_step": runtime.metrics.last_step._value.get(),
                "consumer_stuck": stuck, "broker_up": runtime.watchdog.broker_up}
        return web.json_response(body, status=200 if healthy else 503)

    async def _live_page(self, request: web.Request) -> web.Response:
        """Liveness for an orchestrator: 503 = restart me (steps stopped, or the consumer is stuck).
        A broker outage is not a reason: a restart would not bring the broker back."""
        stale, stuck = self._stale(), self.runtime.watchdog.stalled
        body = {"status": "stuck" if stuck else ("stalled" if stale else "ok"),
                "broker_up": self.runtime.watchdog.broker_up}
        return web.json_response(body, status=503 if stuck or stale else 200)


def _default_registry() -> bytes:
    """Metrics other parts register in prometheus_client's default registry (e.g. alerting)."""
    from prometheus_client import REGISTRY, generate_latest

    return generate_latest(REGISTRY)
