"""Record batches a consumer cannot read become a counted marker, never a crash.

aiokafka decompresses a fetched batch while handing out its records; a batch it cannot read (a
corrupt payload, a bad CRC, an unknown codec) raises from `getmany`, Faust's fetcher crashes the
worker, and a restarted worker fetches the same offset and crashes again: one bad batch would stop
the monitor for good. So every batch is read whole before its first record is handed out, and a
batch that fails is replaced by one marker record at the batch's last offset: the consumer moves
past the batch, and the runtime counts it and dead-letters its topic, partition and offsets, in
offset order with everything else (so the skip is checkpointed exactly like an applied message).

The guard wraps the records of aiokafka's `PartitionRecords` (the one place a fetch response is
unpacked); it is installed once per process with `guard_fetches()` and covers every consumer of
the process: the worker's event topics and its readers of checkpoints, operator actions and
snapshots.
"""

from __future__ import annotations

import logging
import secrets
from typing import NamedTuple

import orjson
from aiokafka.consumer import fetcher
from aiokafka.errors import UnsupportedCodecError

log = logging.getLogger(__name__)

# The marker's header key: random per process, so no producer can forge a marker and have a
# message of its own skipped.
MARKER = f"livemon-unreadable-batch-{secrets.token_hex(8)}"


class UnreadableBatch(NamedTuple):
    """A batch skipped at [first, last] of (topic, partition), and why."""

    reason: str
    first: int
    last: int
    detail: str


def unreadable_batch(message) -> UnreadableBatch | None:
    """The skipped batch a message stands for, or None for an ordinary message."""
    for key, value in message.headers or ():
        if key == MARKER:
            return UnreadableBatch(**orjson.loads(value))
    return None


class _MarkerRecord(NamedTuple):
    offset: int
    timestamp: int
    timestamp_type: int
    key: None
    value: None
    checksum: None
    headers: tuple


class _ReadBatch:
    """A batch whose records were all read: iterated from memory, other attributes delegated."""

    def __init__(self, batch, records: list):
        self._batch = batch
        self._records = records

    def __getattr__(self, name):
        return getattr(self._batch, name)

    def validate_crc(self) -> bool:
        return True  # checked while reading

    def __iter__(self):
        return iter(self._records)


class _SkippedBatch:
    """Stands for a batch that cannot be read: one marker record at its last offset."""

    is_control_batch = False
    is_transactional = False
    producer_id = None

    def __init__(self, first: int, next_offset: int, reason: str, detail: str, timestamp: int = -1):
        self.base_offset = first
        self.next_offset = next_offset
        info = {"reason": reason, "first": first, "last": next_offset - 1, "detail": detail[:300]}
        self._marker = _MarkerRecord(next_offset - 1, timestamp, 0, None, None, None,
                                     ((MARKER, orjson.dumps(info)),))

    def validate_crc(self) -> bool:
        return True

    def __iter__(self):
        return iter((self._marker,))


class _BatchCrcError(ValueError):
    """The batch's CRC does not match its bytes."""


def _reason(error: Exception) -> str:
    """The value of livemon_batches_rejected_total{reason}."""
    if isinstance(error, UnsupportedCodecError) or "compression codec" in str(error).lower():
        return "codec"  # a codec this client cannot decode
    if isinstance(error, _BatchCrcError):
        return "crc"
    return "corrupt"  # the payload does not decompress or parse


class _GuardedRecords:
    """The batches of one fetch response, each read whole (decompressed) before it is used."""

    def __init__(self, records, fetch_offset: int, tp):
        self._records = records
        self._tp = tp
        self._position = fetch_offset  # where the next batch starts, as far as we know
        self._broken = False

    def has_next(self) -> bool:
        return not self._broken and self._records.has_next()

    def next_batch(self):
        try:
            batch = self._records.next_batch()
        except Exception as error:  # noqa: BLE001 - the batch header itself is unreadable
            # No batch boundary to skip to: step over one offset; the next fetch starts after it.
            self._broken = True
            return self._skip(self._position, self._position + 1, error)
        try:
            if not batch.validate_crc():
                raise _BatchCrcError("CRC mismatch")
            records = list(batch)  # decompresses and parses every record of the batch
        except Exception as error:  # noqa: BLE001 - any failure to read the batch skips it
            self._position = batch.next_offset
            return self._skip(batch.base_offset, batch.next_offset, error,
                              getattr(batch, "max_timestamp", -1))
        self._position = batch.next_offset
        return _ReadBatch(batch, records)

    def _skip(self, first: int, next_offset: int, error: Exception, timestamp: int = -1):
        log.warning("unreadable record batch at %s offsets %d-%d skipped: %r",
                    self._tp, first, next_offset - 1, error)
        return _SkippedBatch(first, next_offset, _reason(error), repr(error), timestamp)


class _GuardedPartitionRecords(fetcher.PartitionRecords):
    def __init__(self, tp, records, aborted_transactions, fetch_offset, *args, **kwargs):
        super().__init__(tp, _GuardedRecords(records, fetch_offset, tp), aborted_transactions,
                         fetch_offset, *args, **kwargs)


def guard_fetches() -> None:
    """Install the guard in aiokafka's fetcher (idempotent; every consumer of the process)."""
    fetcher.PartitionRecords = _GuardedPartitionRecords
