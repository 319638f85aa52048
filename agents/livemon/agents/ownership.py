"""Which partitions this worker owns, and their durable state: checkpoints, commits, and the
rebalance signals (revoke, assign) that move partitions between workers.

Exactly-once effect on the engine state, with an at-least-once consumer:
- per owned partition p we keep `offsets[topic]`, the next offset to apply; a message below it is
  already reflected in the state and is skipped (redelivery after a rebalance or a restart);
- every `checkpoint_interval` the state of p's rooms and those offsets are written together to
  the checkpoint topic (see `checkpoints.py`), and only then committed as the group's offsets, so
  the committed position never passes the newest checkpoint;
- a checkpoint covers only events whose forwards to other partitions the broker acknowledged
  (see `forwarding.py`), and is written only once the show summaries taken from the engine are
  on the broker (a successor takes those after it from the checkpointed state again);
- a worker that gains p loads the newest checkpoint before it applies any message of p.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time

from livemon.agents import forked
from livemon.agents.checkpoints import Checkpoint, ahead, pack, unpack_job
from livemon.agents.partition import Partition
from livemon.engine import Engine
from livemon.ingest.routing import ForwardMarks
from livemon.topics import INPUT_TOPICS

log = logging.getLogger(__name__)


class Ownership:
    def __init__(self, runtime):
        self.runtime = runtime
        self.loading: dict[int, asyncio.Future] = {}
        # Cleared from a revocation until the next assignment is handled: no batch is applied in
        # between, because the assignment may replace a partition's state.
        self.settled = asyncio.Event()
        self._lock = asyncio.Lock()
        self.soon = asyncio.Event()  # an alert changed: checkpoint without waiting for the interval

    @property
    def owned(self) -> dict[int, Partition]:
        return self.runtime.owned

    # ---- checkpoints ----

    async def checkpoint_loop(self) -> None:
        interval = self.runtime.settings.checkpoint_interval
        gap = min(1.0, interval)  # at most a round a second, however many alerts change
        while True:
            await asyncio.sleep(gap)
            try:
                await asyncio.wait_for(self.soon.wait(), interval - gap)
            except asyncio.TimeoutError:
                pass
            self.soon.clear()
            try:
                await self.checkpoint_round(commit=True)
            except asyncio.CancelledError:
                raise
            except Exception as error:  # noqa: BLE001 - retried next round
                log.warning("checkpoint round failed: %r", error)

    async def checkpoint_round(self, commit: bool, stopping: bool = False) -> None:
        """Checkpoint every owned partition whose state moved since its last checkpoint."""
        async with self._lock:
            if not self.settled.is_set() and not stopping:
                return  # mid-rebalance: the revocation handler wrote them
            await self._checkpoint(list(self.owned), commit)

    async def _checkpoint(self, partitions, commit: bool) -> None:
        runtime = self.runtime
        due = []
        for number in partitions:
            state = self.owned.get(number)
            if state is None or not state.offsets or (state.offsets == state.checkpointed
                                                      and not state.alerts_changed):
                continue
            # Not past show summaries taken from the engine that the broker does not have yet: a
            # successor starting here would never publish them (it publishes those it takes itself).
            for _ in range(3):
                if not state.summaries or not await runtime.send_summaries(state, time.time(), 5.0):
                    break
            if not state.summaries:
                due.append(number)  # else tried again next round
        # Every due partition's state and offsets are taken together, with no await in between:
        # they match. The state is encoded from this moment's image (in a forked child: see forked.py).
        taken, jobs = [], []
        for number in due:
            state = self.owned.get(number)
            if state is None:
                continue
            rooms = sorted(state.engine.rooms)
            checkpoint = Checkpoint(partition=number, offsets=dict(state.offsets), rooms=rooms,
                                    alerts=runtime.alerts.export_rooms(rooms) if runtime.alerts is not None else {},
                                    worker=runtime.settings.worker_id, wall=time.time(),
                                    sources=dict(state.marks.marks))
            state.alerts_changed = False
            taken.append((state, checkpoint, runtime.forwarder.queued(number)))
            jobs.append(functools.partial(_packed, state.engine, checkpoint))
        if not jobs:
            return
        try:
            payloads = await forked.encode(jobs, in_child=runtime.settings.checkpoint_in_child)
        except BaseException:
            for state, _, _ in taken:
                state.alerts_changed = True  # not written: the next round takes them again
            raise
        written = {}
        for (state, checkpoint, forwarded), packed in zip(taken, payloads):
            number = checkpoint.partition
            if forwarded:
                # Not past events whose forwards the broker does not have yet: a successor
                # starting here would never send them.
                await runtime.forwarder.delivered(number, forwarded)
            checkpoint.state_bytes, payload = unpack_job(packed)
            await runtime.store.write(checkpoint, payload)
            if self.owned.get(number) is state:
                state.checkpointed = checkpoint.offsets
            written[number] = checkpoint.offsets
            runtime.metrics.checkpoints.inc()
            runtime.metrics.checkpoint_bytes.labels(str(number)).set(checkpoint.state_bytes)
        runtime.metrics.last_checkpoint.set(time.time())
        if commit and written:
            await self._commit(written)

    async def _commit(self, written: dict[int, dict[str, int]]) -> None:
        consumer = self.runtime.consumer()
        if consumer is None:
            return
        from faust.types import TP

        offsets = {TP(topic, number): offset
                   for number, by_topic in written.items() for topic, offset in by_topic.items()}
        try:
            await consumer._commit(offsets)
        except Exception as error:  # noqa: BLE001 - a failed commit only means more skipping later
            log.info("offset commit failed: %r", error)

    # ---- rebalances ----

    async def on_revoked(self, revoked) -> None:
        """Before giving partitions away: checkpoint them so their next owner replays little."""
        self.settled.clear()
        self.runtime.metrics.rebalances.inc()
        now = time.time()
        for state in self.owned.values():
            state.pause(now)
        numbers = {tp.partition for tp in revoked if tp.topic in INPUT_TOPICS}
        async with self._lock:
            try:
                await asyncio.wait_for(self._checkpoint(sorted(numbers & set(self.owned)), commit=False),
                                       timeout=5)
            except Exception as error:  # noqa: BLE001 - the periodic checkpoint stands
                log.warning("checkpoint on revocation failed: %r", error)

    async def on_assigned(self, assigned) -> None:
        numbers = {tp.partition for tp in assigned if tp.topic in INPUT_TOPICS}
        try:
            for number in sorted(set(self.owned) - numbers):
                self.release(number)
            kept = sorted(numbers & set(self.owned))
            for number in kept:
                # Fetching paused during the rebalance: what we knew of each topic is stale.
                self.owned[number].heard.clear()
                self.owned[number].loaded_at = time.monotonic()
            for number in kept:
                # Someone else may have owned it meanwhile (we were out of the group for a
                # while): if their checkpoint is ahead of us, our state is stale.
                stored = await self.runtime.store.latest(number, with_state=False)
                if stored is not None and ahead(stored.offsets, self.owned[number].offsets):
                    log.warning("partition %d moved on without us: reloading", number)
                    self.release(number)
                elif stored is None and self.owned[number].checkpointed:
                    # Our checkpoints are gone: the broker lost its data (memory-only, restarted).
                    await self.runtime.forget_offsets(self.owned[number])
            await asyncio.gather(*(self.load(number) for number in sorted(numbers - set(self.owned))))
        finally:
            self.settled.set()
        self.runtime.ready = True
        log.info("worker %s owns partitions %s", self.runtime.settings.worker_id, sorted(self.owned))

    def release(self, number: int) -> None:
        state = self.owned.pop(number)  # its engine, and so its rooms, go with it
        self.runtime.budget.detach(state.engine)
        if self.runtime.alerts is not None:
            # Their alerts too, unresolved: the next owner carries them on from the checkpoint.
            self.runtime.alerts.release_rooms(list(state.engine.rooms))

    async def load(self, number: int) -> None:
        if number in self.loading:
            return await self.loading[number]
        future = asyncio.get_running_loop().create_future()
        self.loading[number] = future
        runtime = self.runtime
        try:
            delay = 0.2
            while True:
                try:
                    checkpoint = await runtime.store.latest(number)
                    break
                except Exception as error:  # noqa: BLE001 - broker trouble: retry, never skip
                    log.warning("loading checkpoint of partition %d failed (%r); retrying", number, error)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 5.0)
            state = Partition(number, Engine(runtime.engine_config, runtime.budget))
            if checkpoint is not None:
                rooms = state.engine.import_rooms(checkpoint.state) if checkpoint.state else []
                if runtime.alerts is not None and checkpoint.alerts:
                    runtime.alerts.import_rooms(checkpoint.alerts)
                state.offsets = dict(checkpoint.offsets)
                state.received = dict(checkpoint.offsets)
                state.checkpointed = dict(checkpoint.offsets)
                state.marks = ForwardMarks(checkpoint.sources)
                state.restored = bool(rooms)
                runtime.metrics.restored.inc()
                log.info("partition %d: resumed %d rooms at %s", number, len(rooms), checkpoint.offsets)
            self.owned[number] = state
            future.set_result(None)
        except BaseException as error:
            future.set_exception(error)
            raise
        finally:
            del self.loading[number]


def _packed(engine: Engine, checkpoint: Checkpoint) -> bytes:
    """A checkpoint job (see forked.py): the engine's state of the checkpoint's rooms, packed."""
    checkpoint.state = engine.export_rooms(checkpoint.rooms)
    return pack(checkpoint)
