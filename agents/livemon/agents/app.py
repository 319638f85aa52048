"""The Faust app: one agent over the six event topics, batch-wise, feeding the worker's runtime.

Faust gives us the consumer group (room-keyed partitions spread over the workers, co-partitioned
so partition p of every event topic lands on the same worker), fetching and rebalance signals.
We deliberately use none of its per-event machinery: values stay raw bytes (no codec), messages
are drained in batches with `take_events`, and offsets are not acked through Faust: the runtime
commits only offsets covered by a checkpoint (see `runtime.py`).
"""

from __future__ import annotations

import asyncio
import logging

import faust
from faust.transport.drivers import aiokafka as faust_aiokafka

from livemon.agents.fetching import guard_fetches
from livemon.agents.runtime import StreamRuntime, WorkerSettings
from livemon.broker import INPUT_TOPICS

log = logging.getLogger(__name__)

# Faust hard-codes a 1.5 s fetch wait, and a broker with little traffic on a partition holds each
# fetch for all of it: up to 1.5 s before an event even reaches the worker. We wait 200 ms.
FETCH_MAX_WAIT_MS = 200


class _ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport):
        consumer = super()._create_worker_consumer(transport)
        consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS  # read when the consumer starts its fetcher
        return consumer


class _Consumer(faust_aiokafka.Consumer):
    def _new_consumer_thread(self):
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)


class _Transport(faust_aiokafka.Transport):
    Consumer = _Consumer


class _App(faust.App):
    """Faust's app with the consumer above (the broker URL is always `kafka://`)."""

    def _new_transport(self):
        return _Transport(self.conf.broker_consumer, self)


def faust_settings(settings: WorkerSettings) -> dict:
    return dict(
        **settings.connection.faust_settings(),
        datadir=settings.data_dir,
        store="memory://",
        autodiscover=False,
        # The worker serves /metrics and the web page itself (aiohttp, bound to --web-host).
        web_enabled=False,
        topic_partitions=settings.partitions,
        topic_disable_leader=False,
        # A new group starts at the beginning: events produced before the first worker joined count.
        consumer_auto_offset_reset="earliest",
        # Faust's defaults make a group join take ~30 s. A 6 s session (the smallest Apache Kafka
        # accepts by default) with 1 s heartbeats gets a join in a second or two and lets a
        # killed worker's partitions move within ~6 s.
        broker_session_timeout=6.0,
        broker_heartbeat_interval=1.0,
        broker_rebalance_timeout=15.0,
        broker_request_timeout=40.0,
        broker_max_poll_records=2000,
        broker_max_poll_interval=300.0,
        # Acks are off for our topics, so there is nothing to wait for on a rebalance; waiting
        # would block on a batch the runtime holds back until the assignment is handled.
        stream_wait_empty=False,
        stream_buffer_maxsize=8192,
        producer_acks=-1,
    )


def make_app(settings: WorkerSettings) -> tuple[faust.App, StreamRuntime]:
    guard_fetches()  # an unreadable batch must not crash the consumer (see fetching.py)
    app = _App(settings.group, **faust_settings(settings))
    runtime = StreamRuntime(settings, consumer_ref=lambda: app.consumer)
    started = asyncio.Event()

    events = app.topic(*INPUT_TOPICS, key_type=bytes, value_type=bytes, key_serializer="raw",
                       value_serializer="raw", acks=False)

    @app.agent(events, name="livemon-ingest", concurrency=1)
    async def ingest(stream):
        async for batch in stream.take_events(settings.batch_max, within=settings.batch_within):
            await started.wait()
            try:
                await runtime.process([event.message for event in batch])
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - bad input is handled inside; this is a bug guard
                log.exception("batch failed")

    @app.task
    async def start_runtime():
        await runtime.start()
        started.set()

    @app.on_partitions_revoked.connect
    async def on_revoked(sender, revoked, **kwargs):
        if started.is_set():
            await runtime.on_revoked(revoked)

    @app.on_partitions_assigned.connect
    async def on_assigned(sender, assigned, **kwargs):
        await started.wait()
        await runtime.on_assigned(assigned)

    @app.on_before_shutdown.connect
    async def on_shutdown(sender, **kwargs):
        # The fetcher is stopped but we are still in the group: a final checkpoint now cannot
        # race the partitions' next owner.
        await runtime.stop()

    return app, runtime
