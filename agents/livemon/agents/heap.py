"""Give the C allocator's free memory back to the system now and then.

A backlog passes through a worker as large short-lived buffers (fetched record batches, their
decompressed envelopes), some of them allocated on the consumer's thread. Freed, glibc keeps
them in its heaps for reuse, and a worker that caught up from one backlog keeps the memory of
its peak for the rest of the show: in the 30-minute soak, each backlog episode raised the
workers' RSS for good (555 -> 766 MiB over three of them). `malloc_trim(0)` returns the free
pages of every heap; it takes a few milliseconds and runs off the event loop.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging

log = logging.getLogger(__name__)

RELEASE_EVERY = 30.0  # seconds


def _malloc_trim():
    """glibc's `malloc_trim`, or None (another C library: nothing to do)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
    trim = getattr(libc, "malloc_trim", None)
    if trim is not None:
        trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim


_TRIM = _malloc_trim()


def release() -> bool:
    """Return the allocator's free pages to the system now; True when any were."""
    return bool(_TRIM(0)) if _TRIM is not None else False


async def release_loop(every: float = RELEASE_EVERY) -> None:
    if _TRIM is None:
        log.info("no malloc_trim in this C library: free heap memory stays with the process")
        return
    while True:
        await asyncio.sleep(every)
        try:
            await asyncio.to_thread(release)  # (ctypes lets go of the GIL for the call)
        except Exception:  # noqa: BLE001 - a failed release must not end the worker's loop
            log.exception("releasing free heap memory failed")
