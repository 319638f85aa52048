"""The recording written from a thread of its own, so that a worker's event loop never waits on it.

A worker that records (the compose file's `web`) feeds every step's final snapshots to the
recording. Written on the event loop, each step's transaction, and its fsync (the store commits
with `synchronous=FULL`), held up the loop: in the soak, the recording worker's step took 0.24 s
beyond its snapshots at the median and up to 1.2 s, against 0.1 s for a worker that does not
record, and it skipped one step in thirty. `RecordingWriter` takes the writes in order into a
queue that one thread applies (SQLite releases the GIL while it works and syncs); reads go
straight to the store, which is thread-safe.

The queue is bounded: should the disk stall for minutes, a write waits for room rather than the
memory growing without limit. `close_writer()` applies everything queued before it returns; writes
after it are applied at once, on the caller's thread (a last step fed while the worker stops).
"""

from __future__ import annotations

import logging
import queue
import threading

from .store import RecordingStore

log = logging.getLogger(__name__)

# Writes waiting at most: ten minutes of one-second steps, each with its summaries and records.
MAX_PENDING = 2000


class RecordingWriter:
    """A `RecordingStore` whose writes (`write`, `write_summary`, `close_idle`, `purge`) are
    applied in order by a thread; anything else is the store's own (reads)."""

    WRITES = ("write", "write_summary", "close_idle", "purge")

    def __init__(self, store: RecordingStore, max_pending: int = MAX_PENDING):
        self.store = store
        self.failed = 0  # writes that raised (logged with their traceback)
        self._queue: queue.Queue = queue.Queue(maxsize=max_pending)
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="recording-writer", daemon=True)
        self._thread.start()

    def __getattr__(self, name):
        return getattr(self.store, name)

    def write(self, *args, **kwargs) -> None:
        self._submit("write", args, kwargs)

    def write_summary(self, *args, **kwargs) -> None:
        self._submit("write_summary", args, kwargs)

    def close_idle(self, *args, **kwargs) -> None:
        self._submit("close_idle", args, kwargs)

    def purge(self, *args, **kwargs) -> None:
        self._submit("purge", args, kwargs)

    def _submit(self, name: str, args: tuple, kwargs: dict) -> None:
        if self._closed:  # after close (a last step fed while shutting down): write it directly
            self._apply(name, args, kwargs)
        else:
            self._queue.put((name, args, kwargs))

    def _apply(self, name: str, args: tuple, kwargs: dict) -> None:
        try:
            getattr(self.store, name)(*args, **kwargs)
        except Exception:  # noqa: BLE001 - one bad write must not stop the recording
            self.failed += 1
            log.exception("recording: %s failed", name)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is None:
                    return
                self._apply(*item)
            finally:
                self._queue.task_done()

    @property
    def pending(self) -> int:
        """Writes queued and not applied yet."""
        return self._queue.unfinished_tasks

    def flush(self) -> None:
        """Return once every write queued so far is applied."""
        self._queue.join()

    def close_writer(self) -> None:
        """Apply what is queued and stop the thread (the store stays open for reading)."""
        if not self._closed:
            self._queue.put(None)
            self._thread.join()
            self._closed = True
