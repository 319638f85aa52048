"""Encode state in a forked child: the stream never waits for a checkpoint.

Encoding a partition's state is pure Python over every room (seconds at a surge of 300 rooms).
On the event loop it would hold up the stream, the steps and /metrics that long. A child forked
at the moment the checkpoint is taken sees a copy-on-write image of that moment: it encodes
every job there, on another core, and sends the bytes back through a pipe, while the parent's
loop goes on changing its own copy. As Redis's BGSAVE does.

The child only runs the jobs (the engine's export and compression: no Kafka client, no event
loop, no lock another thread may hold) and leaves with `os._exit`. Where `os.fork` is missing,
or with `in_child=False`, the jobs run in this process at once, holding up the loop meanwhile.
"""

from __future__ import annotations

import asyncio
import gc
import os
import signal
from collections.abc import Callable

FORK = hasattr(os, "fork")
_LENGTH = 8
CHILD_NICE = 10  # the child's CPU priority below the worker's, which goes on with the stream


async def encode(jobs: list[Callable[[], bytes]], in_child: bool = True, timeout: float = 300.0) -> list[bytes]:
    """The bytes each job returns, reading the state as it is at this call. A child that has not
    finished within `timeout` seconds (or whose caller is cancelled) is killed: TimeoutError."""
    if not (in_child and FORK and jobs):
        return [job() for job in jobs]  # at once: the state must not move on between the jobs
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: this moment's image of the state
        status = 1
        try:
            os.close(read_end)
            _lower_priority()  # the stream's loop first: a checkpoint can wait a little
            gc.disable()  # it leaves soon: a collection would only copy every page it walks
            with os.fdopen(write_end, "wb") as out:
                for job in jobs:
                    blob = job()
                    out.write(len(blob).to_bytes(_LENGTH, "big"))
                    out.write(blob)
            status = 0
        finally:
            os._exit(status)
    os.close(write_end)
    loop = asyncio.get_running_loop()
    try:
        data = await asyncio.wait_for(loop.run_in_executor(None, _read_all, read_end), timeout)
    except BaseException:
        # Timed out, or the caller gave up (a revocation's deadline): the child must not linger,
        # nor stay a zombie. Killed, its end of the pipe closes and the reading thread ends.
        _kill(pid)
        raise
    _, status = await loop.run_in_executor(None, os.waitpid, pid, 0)
    results = _split(data)
    if status != 0 or len(results) != len(jobs):
        raise RuntimeError(f"the encoding child ended with status {os.waitstatus_to_exitcode(status)} "
                           f"after {len(results)} of {len(jobs)} jobs")
    return results


def _lower_priority() -> None:
    try:
        os.nice(CHILD_NICE)
    except OSError:  # not allowed here: encode at the same priority
        pass


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    os.waitpid(pid, 0)  # at once: a killed process ends without running anything


def _read_all(fd: int) -> bytes:
    with os.fdopen(fd, "rb") as pipe:
        return pipe.read()


def _split(data: bytes) -> list[bytes]:
    """The length-prefixed blobs of `data`; a cut-off last one is left out."""
    blobs, position = [], 0
    while position + _LENGTH <= len(data):
        size = int.from_bytes(data[position:position + _LENGTH], "big")
        start = position + _LENGTH
        if start + size > len(data):
            break
        blobs.append(data[start:start + size])
        position = start + size
    return blobs
