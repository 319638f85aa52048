"""Sends events that arrived on the wrong partition to their room's partition, in order.

Exactly once with respect to checkpoints:
- the forwards of a source partition are sent round by round, and a round is sent only once the
  previous one is acknowledged (a failed send is retried before anything later), so each target
  partition receives a source's forwards in source-offset order, without gaps;
- a checkpoint of the source partition is written only after every forward of the offsets it
  covers is acknowledged (`delivered`), so a successor re-forwards at most what follows it;
- the receiver drops what it already applied (`livemon.ingest.routing.ForwardMarks`).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from dataclasses import dataclass, field

from livemon.ingest.routing import Part, encode_forward

log = logging.getLogger(__name__)

RETRY_MAX_SECONDS = 5.0


@dataclass
class _Outbox:
    """The forwards of one source partition."""

    rounds: deque = field(default_factory=deque)  # (sequence, {target: (value, timestamp_ms)})
    queued: int = 0  # sequence number of the newest round queued
    sent: int = 0  # sequence number of the newest round acknowledged
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)
    task: asyncio.Task | None = None


class Forwarder:
    def __init__(self, send, topic: str):
        """`send(topic, value, partition=, timestamp_ms=)` is an awaitable returning a delivery
        future (aiokafka's `AIOKafkaProducer.send`)."""
        self._send = send
        self.topic = topic
        self._outboxes: dict[int, _Outbox] = {}
        self._closed = False

    def queue(self, source: int, parts: dict[int, list[Part]], timestamp_ms: int) -> None:
        """Queue one round: per target partition, the parts of the source messages just applied."""
        outbox = self._outboxes.get(source)
        if outbox is None:
            outbox = self._outboxes[source] = _Outbox()
        outbox.queued += 1
        values = {target: encode_forward(source, target_parts) for target, target_parts in parts.items()}
        outbox.rounds.append((outbox.queued, values, timestamp_ms))
        if outbox.task is None or outbox.task.done():
            outbox.task = asyncio.get_running_loop().create_task(self._drain(source, outbox),
                                                                  name=f"livemon-forward-{source}")

    def queued(self, source: int) -> int:
        """The sequence number to wait for so that everything queued so far is delivered."""
        outbox = self._outboxes.get(source)
        return outbox.queued if outbox is not None else 0

    async def delivered(self, source: int, sequence: int) -> None:
        """Wait until the rounds of `source` up to `sequence` are acknowledged by the broker."""
        outbox = self._outboxes.get(source)
        if outbox is None or outbox.sent >= sequence:
            return
        async with outbox.changed:
            await outbox.changed.wait_for(lambda: outbox.sent >= sequence)

    async def _drain(self, source: int, outbox: _Outbox) -> None:
        while outbox.rounds and not self._closed:
            sequence, values, timestamp_ms = outbox.rounds[0]
            delay = 0.1
            while values:
                results = await asyncio.gather(*(self._deliver(target, value, timestamp_ms)
                                                 for target, value in values.items()))
                values = {target: value for (target, value), ok in zip(values.items(), results) if not ok}
                if values:
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, RETRY_MAX_SECONDS)
            outbox.rounds.popleft()
            async with outbox.changed:
                outbox.sent = sequence
                outbox.changed.notify_all()

    async def _deliver(self, target: int, value: bytes, timestamp_ms: int) -> bool:
        try:
            future = await self._send(self.topic, value, partition=target, timestamp_ms=timestamp_ms)
            await future
            return True
        except asyncio.CancelledError:
            raise
        except Exception as error:  # noqa: BLE001 - retried: nothing later is sent before it
            log.warning("forwarding to %s/%d failed (%r); retrying", self.topic, target, error)
            return False

    async def close(self) -> None:
        self._closed = True
        for outbox in self._outboxes.values():
            if outbox.task is not None:
                outbox.task.cancel()
