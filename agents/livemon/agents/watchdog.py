"""The worker's watchdog: is the broker there, and is the consumer still making progress?

Every `interval` seconds it asks the broker for metadata. A failed or slow answer marks the
broker down: `livemon_broker_up` is 0, `livemon_broker_outage_seconds` counts up, the web page
says so, and the stuck-consumer check holds off (nothing can be fetched, so no progress is
expected). When the broker answers again the outage is counted in
`livemon_broker_outages_total` and missing topics are created again (a memory-only broker comes
back empty).

A Faust consumer can stop consuming while its partitions have messages waiting (a fetcher that
died quietly, an agent blocked on something that never returns): the process looks alive and its
web port answers, but nothing moves. The watchdog sees lag > 0 with no offset advancing for
`stall_after` seconds while the broker is up, logs it, sets `livemon_consumer_stalled` to 1 and
makes `/livez` and `/healthz` answer 503, so an orchestrator restarts the worker; its partitions
go to the other workers, who resume them from the last checkpoint.

Test hook: with `LIVEMON_FAULT_STALL_FILE=PATH` in the environment, the processing of batches
blocks for as long as PATH exists (a real stall of the consumer: the agent stops taking messages).
Unset, the hook costs nothing.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time

from prometheus_client import Counter, Gauge


log = logging.getLogger(__name__)

STALL_FILE_ENV = "LIVEMON_FAULT_STALL_FILE"
_STALL_FILE = os.environ.get(STALL_FILE_ENV)


async def stall_hook() -> None:
    """Block while the test-only stall file exists (see the module doc)."""
    while _STALL_FILE and os.path.exists(_STALL_FILE):
        await asyncio.sleep(0.1)


class Watchdog:
    def __init__(self, runtime, interval: float = 1.0, stall_after: float = 30.0,
                 probe_timeout: float = 3.0):
        self.runtime = runtime
        self.interval, self.stall_after, self.probe_timeout = interval, stall_after, probe_timeout
        self.broker_up = True
        self.down_since: float | None = None
        self.stalled = False
        self._progress: int | None = None
        self._progress_at = time.monotonic()
        registry = runtime.metrics.registry
        self.up_gauge = runtime.metrics.broker_up
        self.outage_seconds = Gauge("livemon_broker_outage_seconds",
                                    "Seconds since the broker stopped answering (0 while it answers).",
                                    registry=registry)
        self.outages = Counter("livemon_broker_outages", "Broker outages this worker lived through.",
                               registry=registry)
        self.stalled_gauge = Gauge("livemon_consumer_stalled",
                                   "1 while the consumer makes no progress although messages wait.",
                                   registry=registry)
        self.stalls = Counter("livemon_consumer_stalls", "Times the consumer was found stuck.",
                              registry=registry)
        self.log_resets = Counter("livemon_partition_log_resets",
                                  "Partitions whose log the broker lost (offsets started again at 0).",
                                  registry=registry)
        self.progress_age = Gauge("livemon_consumer_progress_age_seconds",
                                  "Seconds since an owned partition's offset last advanced.",
                                  registry=registry)

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.check()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - the watchdog itself must keep going
                log.exception("watchdog check failed")

    async def check(self) -> None:
        was_up = self.broker_up
        self._set_broker(await self._probe())
        if self.broker_up and not was_up:
            await self._recreate_topics()
        self._check_progress(time.monotonic())

    async def _recreate_topics(self) -> None:
        """A broker that lost its data (memory-only, restarted) comes back without our topics:
        create them again with the right partition counts before producers create them with the
        broker's defaults."""
        from livemon.kafka_connection import ensure_topics

        settings = self.runtime.settings
        try:
            await asyncio.to_thread(ensure_topics, settings.connection, settings.partitions, timeout=10)
        except Exception as error:  # noqa: BLE001 - the next outage end tries again; say why
            log.warning("could not re-create the topics after the outage: %r", error)

    async def _probe(self) -> bool:
        producer = self.runtime.producer
        if producer is None:
            return True
        try:
            await asyncio.wait_for(producer.client.fetch_all_metadata(), self.probe_timeout)
            return True
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - any failure: the broker is not answering
            return False

    def _set_broker(self, up: bool) -> None:
        now = time.time()
        if up and not self.broker_up:
            log.warning("broker %s is back after %.0f s", self.runtime.settings.bootstrap, now - self.down_since)
            self.outages.inc()
            self.down_since = None
            self._progress_at = time.monotonic()  # no progress was possible meanwhile
        elif not up and self.broker_up:
            log.error("broker %s is not answering; metrics go on from what was received",
                      self.runtime.settings.bootstrap)
            self.down_since = now
        self.broker_up = up
        self.up_gauge.set(1 if up else 0)
        self.outage_seconds.set(0 if up else now - self.down_since)
        hub = self._hub()
        if hub is not None:
            hub.outage = None if up else f"broker {self.runtime.settings.bootstrap} not answering " \
                                         f"for {now - self.down_since:.0f} s"

    def _hub(self):
        app = self.runtime.web_app
        if app is None:
            return None
        try:
            from livemon.web.server import HUB_KEY
        except ImportError:
            return None
        return app.get(HUB_KEY)

    def lag_and_progress(self) -> tuple[int, int]:
        """(messages waiting, sum of applied offsets) over the owned partitions."""
        runtime = self.runtime
        progress = sum(sum(state.offsets.values()) for state in list(runtime.owned.values()))
        return sum(runtime.lags().values()), progress

    def _check_progress(self, now: float) -> None:
        lag, progress = self.lag_and_progress()
        if progress != self._progress or lag == 0 or not self.broker_up or not self.runtime.settled.is_set():
            self._progress, self._progress_at = progress, now
            if self.stalled:
                log.warning("consumer is making progress again")
            self.stalled = False
        elif now - self._progress_at >= self.stall_after and not self.stalled:
            self.stalled = True
            self.stalls.inc()
            log.error("consumer stuck: %d messages waiting and no progress for %.0f s; "
                      "/livez answers 503 so the worker gets restarted", lag, now - self._progress_at)
        self.stalled_gauge.set(1 if self.stalled else 0)
        self.progress_age.set(now - self._progress_at)

