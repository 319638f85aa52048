"""Checkpoints encoded in a forked child (agents/forked.py): the image of the moment they are
taken, whatever the stream does meanwhile, byte for byte what the worker's loop would encode."""

import asyncio
import os

import pytest

from livemon.agents import forked
from livemon.agents.checkpoints import Checkpoint, _unpack, pack, unpack_job
from livemon.agents.ownership import _packed
from livemon.engine import Engine
from livemon.simulator.core import Simulation
from livemon.ingest.events import decode


def _engine_after(seconds: float) -> Engine:
    sim = Simulation("normal", rooms=3, seed=5, duration=seconds, rate=300)
    engine = Engine()
    for message in sim.messages():
        events, _ = decode(message.value, message.topic)
        engine.ingest(events, sim.now)
    engine.advance(sim.now)
    return engine


def test_the_child_encodes_the_state_of_the_moment_it_was_taken():
    engine = _engine_after(40)
    rooms = sorted(engine.rooms)
    expected = engine.export_rooms(rooms)

    async def main():
        # The stream moves on right after the checkpoint is taken, while the child encodes.
        asyncio.get_running_loop().call_soon(lambda: [engine.rooms.pop(room) for room in rooms[1:]])
        checkpoint = Checkpoint(partition=0, offsets={"t": 1}, rooms=rooms, alerts={"a": 1})
        (packed,) = await forked.encode([lambda: _packed(engine, checkpoint)])
        return checkpoint, packed

    checkpoint, packed = asyncio.run(main())
    assert len(engine.rooms) == 1 and checkpoint.state == b""  # the parent's copy moved on
    size, payload = unpack_job(packed)
    state, alerts = _unpack(payload, 3)
    assert state == expected and size == len(expected) and alerts == {"a": 1}
    assert sorted(Engine().import_rooms(state)) == rooms


def test_child_and_loop_encode_the_same_bytes():
    engine = _engine_after(20)
    rooms = sorted(engine.rooms)

    def job():
        return _packed(engine, Checkpoint(partition=1, offsets={}, rooms=rooms))
    in_child = asyncio.run(forked.encode([job, lambda: b"", job]))
    in_loop = asyncio.run(forked.encode([job, lambda: b"", job], in_child=False))
    assert in_child == in_loop and in_child[1] == b"" and unpack_job(in_child[0])[0] > 1000


def test_a_child_that_fails_is_an_error_and_the_worker_goes_on():
    def broken():
        raise ValueError("no")
    with pytest.raises(RuntimeError, match="status 1 after 1 of 2 jobs"):
        asyncio.run(forked.encode([lambda: pack(Checkpoint(0, {}, [])), broken]))
    assert asyncio.run(forked.encode([lambda: b"x" * 100_000])) == [b"x" * 100_000]
    assert not _children()  # none left behind (a zombie would be one)


def test_a_child_that_hangs_is_killed_after_the_timeout():
    import time

    started = time.monotonic()
    with pytest.raises(TimeoutError):
        asyncio.run(forked.encode([lambda: time.sleep(60) or b""], timeout=0.5))
    assert time.monotonic() - started < 10 and not _children()

    async def given_up():  # a revocation's deadline cancels the round: the child goes too
        await asyncio.wait_for(forked.encode([lambda: time.sleep(60) or b""]), 0.5)
    with pytest.raises(asyncio.TimeoutError):
        asyncio.run(given_up())
    assert time.monotonic() - started < 20 and not _children()


def _children() -> bool:
    try:
        return os.waitpid(-1, os.WNOHANG) != (0, 0)
    except ChildProcessError:
        return False


def test_the_child_encodes_at_a_lower_priority_than_the_stream():
    # The worker's loop goes on with the stream meanwhile: on a busy machine it comes first.
    parent = os.getpriority(os.PRIO_PROCESS, 0)
    (child,) = asyncio.run(forked.encode([lambda: str(os.getpriority(os.PRIO_PROCESS, 0)).encode()]))
    assert int(child) == min(19, parent + forked.CHILD_NICE) > parent
    assert os.getpriority(os.PRIO_PROCESS, 0) == parent
