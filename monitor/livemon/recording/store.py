"""The durable timeline store: final snapshots, alerts and failovers of every show, in SQLite.

SQLite in WAL mode because it is embedded (nothing to install or run), a single file that survives
restarts, crash-safe on every commit, and readers (the web page, `livemon review`) never block the
writer. Writes are idempotent (snapshots keyed by room and instant, records by their content), so a
record delivered twice, or two workers recording into the same file, store it once.

Each show also keeps its show summary (SPEC §10, the 复盘 record the workers publish once the show
is over): one per room and show start, the latest received wins; read back with the show's recorded
alerts and failovers as its `incidents`.

A show belongs to one room. It is delimited by the engine's `show` field ({"id", "start"}), which
follows the producer's `show` start/end events; without it, by idle time: a room's snapshots after
more than `idle_timeout` seconds (10 minutes) without any start a new show.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import orjson

IDLE_TIMEOUT = 600.0
MAX_INCIDENTS = 1000         # alert and failover records a summary lists at most (the first ones)
DEFAULT_RETENTION_DAYS = 30.0
DB_NAME = "recording.sqlite3"

SCHEMA = """
CREATE TABLE IF NOT EXISTS shows (
    key TEXT PRIMARY KEY,        -- "<room_id>.<show id>" or "<room_id>.<start as YYYYmmdd-HHMMSS>"
    room_id TEXT NOT NULL,
    show_id TEXT,                -- the producer's show id when it sent one, else the engine's
    title TEXT,
    start REAL NOT NULL,         -- event time of the show's start
    last_ts REAL NOT NULL,       -- newest recorded instant or record
    ended REAL,                  -- set at the engine's show end (a new show id) or idle timeout
    recorded_at REAL NOT NULL    -- wall clock of the last write, for retention
);
CREATE INDEX IF NOT EXISTS shows_room ON shows (room_id, start);
CREATE INDEX IF NOT EXISTS shows_start ON shows (start);
CREATE TABLE IF NOT EXISTS snapshots (
    room_id TEXT NOT NULL,
    ts REAL NOT NULL,
    show_key TEXT NOT NULL,
    metrics BLOB NOT NULL,       -- JSON of the SPEC metrics
    cdn BLOB NOT NULL,           -- JSON {cdn: {metric: value}}, the snapshot's per-CDN metrics
    UNIQUE (room_id, ts)
);  -- a rowid table: a step's rows (2 KB each) go at its end, only their small keys into the indexes
CREATE INDEX IF NOT EXISTS snapshots_show ON snapshots (show_key, ts);
CREATE TABLE IF NOT EXISTS records (
    digest TEXT PRIMARY KEY,     -- hash of the record, so redelivery stores it once
    show_key TEXT NOT NULL,
    room_id TEXT NOT NULL,
    ts REAL NOT NULL,
    kind TEXT NOT NULL,          -- alert | failover | incident | operator
    record BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS records_show ON records (show_key, ts);
CREATE TABLE IF NOT EXISTS summaries (
    room_id TEXT NOT NULL,
    start REAL NOT NULL,         -- the show's start, as the summary gives it
    show_key TEXT NOT NULL,
    end_ts REAL,
    summary BLOB NOT NULL,       -- JSON of the SPEC §10 summary as the worker published it
    recorded_at REAL NOT NULL,
    PRIMARY KEY (room_id, start)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS summaries_show ON summaries (show_key);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value REAL NOT NULL);
"""


def default_data_dir() -> Path:
    """$LIVEMON_DATA_DIR, else $XDG_DATA_HOME/livemon (~/.local/share/livemon): the same place for
    `livemon demo`, `livemon worker` and `livemon review`, whatever the working directory."""
    if os.environ.get("LIVEMON_DATA_DIR"):
        return Path(os.environ["LIVEMON_DATA_DIR"])
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "livemon"


def show_key(room_id: str, show_id: str | None, start: float) -> str:
    if show_id == f"{room_id}-{int(start)}":
        show_id = None   # the engine's name for a show without a producer id: use the readable one
    if show_id:
        return f"{room_id}.{show_id}"
    stamp = datetime.fromtimestamp(start, timezone.utc).strftime("%Y%m%d-%H%M%S")
    return f"{room_id}.{stamp}"


class RecordingStore:
    """Thread-safe: one connection behind a lock (the web server reads while the hub writes)."""

    def __init__(self, data_dir: str | Path | None = None, *, retention_days: float = DEFAULT_RETENTION_DAYS,
                 idle_timeout: float = IDLE_TIMEOUT):
        self.dir = Path(data_dir) if data_dir else default_data_dir()
        self.dir.mkdir(parents=True, exist_ok=True)
        self.path = self.dir / DB_NAME
        self.retention_days = retention_days
        self.idle_timeout = idle_timeout
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, timeout=30, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        # FULL: a committed step survives a power cut too; one commit per step keeps it cheap.
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(SCHEMA)
        self._current: dict[str, dict] = {}   # room_id -> its open show row, cached
        # Within `write`: the snapshot rows to insert, and show key -> (last_ts, wall) to set, both
        # written in one go at its end (a step's final snapshots are a row each of a few hundred rooms,
        # and each moved its show's last_ts), or before anything reads the tables.
        self._rows: list[tuple] = []
        self._touched: dict[str, tuple[float, float]] = {}
        self.purge()

    def close(self):
        with self._lock:
            self._db.close()

    # ---- writing -------------------------------------------------------------------------------

    def write(self, snapshots=(), records=(), wall: float | None = None):
        """Record final snapshots and alert/failover/incident/operator records in one transaction."""
        wall = time.time() if wall is None else wall
        with self._lock, self._db:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for snap in snapshots:
                    self._write_snapshot(snap, wall)
                for rec in records:
                    self._write_record(rec, wall)
                self._flush()
            finally:
                self._rows, self._touched = [], {}
            self._db.execute("INSERT OR REPLACE INTO meta VALUES ('last_write', ?)", (wall,))

    def _flush(self) -> None:
        """Write what `write` has gathered so far."""
        if self._rows:
            self._db.executemany("INSERT OR REPLACE INTO snapshots VALUES (?,?,?,?,?)", self._rows)
            self._rows = []
        if self._touched:
            self._db.executemany("UPDATE shows SET last_ts=?, recorded_at=? WHERE key=?",
                                 [(ts, wall, key) for key, (ts, wall) in self._touched.items()])
            self._touched = {}

    def _show_for(self, room_id: str, ts: float, show: dict | None, wall: float, title=None) -> str:
        """The key of the show an instant or record of a room belongs to, opening shows as needed."""
        cur = self._current.get(room_id)
        if cur is None:
            self._flush()  # (before the tables are read)
            cur = self._newest(room_id)
        if show and show.get("start") is not None:
            key = show_key(room_id, show.get("id"), float(show["start"]))
            if cur and cur["key"] == key:
                return self._touch(room_id, cur, ts, wall)
            self._flush()
            known = self._row("key=?", (key,))
            if known:   # a late or redelivered record of an earlier show
                self._db.execute("UPDATE shows SET last_ts=max(last_ts, ?) WHERE key=?", (ts, key))
                return key
            if cur and cur["show_id"] is None and cur["start"] >= float(show["start"]) - self.idle_timeout \
                    and not self._db.execute("SELECT 1 FROM snapshots WHERE show_key=?", (cur["key"],)).fetchone():
                # Records (alerts run on live values) came before this show's first final snapshot
                # and opened a show of their own: they belong to this one.
                self._db.execute("UPDATE records SET show_key=? WHERE show_key=?", (key, cur["key"]))
                self._db.execute("DELETE FROM shows WHERE key=?", (cur["key"],))
            elif cur and cur["ended"] is None:
                self._end(cur)
            return self._open(room_id, key, show.get("id"), float(show["start"]), ts, wall, title)
        # Without a show from the engine, idle time delimits shows.
        if cur and (ts <= cur["last_ts"] or (cur["ended"] is None and ts - cur["last_ts"] <= self.idle_timeout)):
            return self._touch(room_id, cur, ts, wall)
        if cur and cur["ended"] is None:
            self._end(cur)
        return self._open(room_id, show_key(room_id, None, ts), None, ts, ts, wall, title)

    def _row(self, where, args):
        row = self._db.execute(f"SELECT key, show_id, start, last_ts, ended FROM shows WHERE {where}"
                               " ORDER BY start DESC LIMIT 1", args).fetchone()
        return dict(zip(("key", "show_id", "start", "last_ts", "ended"), row)) if row else None

    def _newest(self, room_id):
        return self._row("room_id=?", (room_id,))

    def _open(self, room_id, key, show_id, start, ts, wall, title):
        self._db.execute("INSERT OR IGNORE INTO shows VALUES (?,?,?,?,?,?,NULL,?)",
                         (key, room_id, show_id, title, start, ts, wall))
        cur = {"key": key, "show_id": show_id, "start": start, "last_ts": ts, "ended": None}
        self._current[room_id] = cur
        return key

    def _touch(self, room_id, cur, ts, wall):
        if ts > cur["last_ts"]:
            cur["last_ts"] = ts
            self._touched[cur["key"]] = (ts, wall)
        self._current[room_id] = cur
        return cur["key"]

    def _end(self, cur):
        cur["ended"] = cur["last_ts"]
        self._db.execute("UPDATE shows SET ended=? WHERE key=?", (cur["last_ts"], cur["key"]))

    def _write_snapshot(self, snap: dict, wall: float):
        room_id, ts = snap["room_id"], float(snap["ts"])
        show = snap.get("show")
        key = self._show_for(room_id, ts, show, wall, (show or {}).get("title"))
        if show and show.get("ended_at") is not None:
            cur = self._current.get(room_id)
            if cur and cur["key"] == key and cur["ended"] is None:
                cur["ended"] = float(show["ended_at"])
                self._db.execute("UPDATE shows SET ended=? WHERE key=?", (cur["ended"], key))
        self._rows.append((room_id, ts, key, orjson.dumps(snap.get("metrics") or {}),
                           orjson.dumps(snap.get("cdn") or {})))

    def _write_record(self, rec: dict, wall: float):
        room_id = rec.get("room_id")
        if not room_id:
            return
        ts = float(rec.get("ts") or wall)
        raw = orjson.dumps(rec, option=orjson.OPT_SORT_KEYS)
        # A record belongs to the room's current show; one that comes before any snapshot of the
        # room opens a show, so an outage is recorded even when the final snapshots lag behind.
        key = self._show_for(room_id, ts, None, wall)
        self._db.execute("INSERT OR IGNORE INTO records VALUES (?,?,?,?,?,?)",
                         (hashlib.sha256(raw).hexdigest(), key, room_id, ts, rec.get("kind") or "alert", raw))

    def write_summary(self, summary: dict, wall: float | None = None, open_show: bool = True) -> str | None:
        """Store a show's summary (SPEC §10) with its show: the recorded show of the room with that
        start, else (with `open_show`) a show opened for it. Another summary of the same room and
        start replaces it (a summary published again after a worker's crash, or a later one).
        Returns the show's key, or None when not stored (no such show and not `open_show`)."""
        wall = time.time() if wall is None else wall
        room_id, start = str(summary["room_id"]), float(summary["start"])
        end = summary.get("end")
        end = float(end) if end is not None else None
        with self._lock, self._db:
            self._db.execute("BEGIN IMMEDIATE")
            row = self._db.execute("SELECT key FROM shows WHERE room_id=? AND start=? ORDER BY key LIMIT 1",
                                   (room_id, start)).fetchone()
            if row is not None:
                key = row[0]
            elif not open_show:
                return None
            else:
                key = show_key(room_id, summary.get("show_id"), start)
                self._db.execute("INSERT OR IGNORE INTO shows VALUES (?,?,?,?,?,?,?,?)",
                                 (key, room_id, summary.get("show_id"), summary.get("title"), start,
                                  start if end is None else end, end, wall))
            if end is not None:   # the show is over: it ended at its summary's end unless known
                self._db.execute("UPDATE shows SET ended=coalesce(ended, ?), recorded_at=? WHERE key=?",
                                 (end, wall, key))
                cur = self._current.get(room_id)
                if cur is not None and cur["key"] == key and cur["ended"] is None:
                    cur["ended"] = end
            self._db.execute("INSERT OR REPLACE INTO summaries VALUES (?,?,?,?,?,?)",
                             (room_id, start, key, end, orjson.dumps(summary), wall))
            self._db.execute("INSERT OR REPLACE INTO meta VALUES ('last_write', ?)", (wall,))
        return key

    def close_idle(self, now_ts: float):
        """Mark shows ended whose room has been silent past the idle timeout."""
        with self._lock, self._db:
            self._db.execute("UPDATE shows SET ended=last_ts WHERE ended IS NULL AND last_ts < ?",
                             (now_ts - self.idle_timeout,))
            for cur in self._current.values():
                if cur["ended"] is None and cur["last_ts"] < now_ts - self.idle_timeout:
                    cur["ended"] = cur["last_ts"]

    def purge(self, wall: float | None = None) -> int:
        """Drop shows last written more than `retention_days` ago; returns how many."""
        wall = time.time() if wall is None else wall
        cutoff = wall - self.retention_days * 86400
        with self._lock, self._db:
            keys = [k for (k,) in self._db.execute("SELECT key FROM shows WHERE recorded_at < ?", (cutoff,))]
            for key in keys:
                self._db.execute("DELETE FROM snapshots WHERE show_key=?", (key,))
                self._db.execute("DELETE FROM records WHERE show_key=?", (key,))
                self._db.execute("DELETE FROM summaries WHERE show_key=?", (key,))
                self._db.execute("DELETE FROM shows WHERE key=?", (key,))
            self._current = {r: c for r, c in self._current.items() if c["key"] not in keys}
        return len(keys)

    def last_write(self) -> float | None:
        with self._lock:
            row = self._db.execute("SELECT value FROM meta WHERE name='last_write'").fetchone()
        return row[0] if row else None

    # ---- reading -------------------------------------------------------------------------------

    SHOW_COLUMNS = ("key", "room_id", "show_id", "title", "start", "last_ts", "ended", "instants", "alerts",
                    "failovers")

    def _listed(self, where: str = "", args=(), tail: str = "ORDER BY s.start DESC") -> list[dict]:
        """Shows with a few totals for listing; the caller holds the lock."""
        sql = ("SELECT s.key, s.room_id, s.show_id, s.title, s.start, s.last_ts, s.ended,"
               " (SELECT count(*) FROM snapshots WHERE show_key=s.key),"
               " (SELECT count(*) FROM records WHERE show_key=s.key AND kind='alert'),"
               " (SELECT count(*) FROM records WHERE show_key=s.key AND kind='failover')"
               f" FROM shows s {where} {tail}")
        return [dict(zip(self.SHOW_COLUMNS, row)) for row in self._db.execute(sql, args).fetchall()]

    def shows(self, room_id: str | None = None) -> list[dict]:
        """Recorded shows, newest first, with a few totals for listing."""
        with self._lock:
            return self._listed("WHERE s.room_id=?", (room_id,)) if room_id else self._listed()

    def shows_page(self, limit: int, offset: int = 0) -> dict:
        """One page of `shows()`: {"shows": [...], "total": number of shows}."""
        with self._lock:
            total = self._db.execute("SELECT count(*) FROM shows").fetchone()[0]
            return {"shows": self._listed(tail="ORDER BY s.start DESC LIMIT ? OFFSET ?", args=(limit, offset)), "total": total}

    def has_open_show(self, room_id: str) -> bool:
        """Whether the room's newest show has not ended (e.g. one recorded before a restart)."""
        with self._lock:
            cur = self._current.get(room_id) or self._newest(room_id)
        return cur is not None and cur["ended"] is None

    def find_show(self, name: str) -> dict | None:
        """A show by its key, else the newest show of a room id, else by a unique key prefix; each
        through an index, however many shows are recorded."""
        with self._lock:
            for where in ("WHERE s.key=?", "WHERE s.room_id=?"):
                found = self._listed(where, (name,), "ORDER BY s.start DESC LIMIT 1")
                if found:
                    return found[0]
            # Keys starting with `name` sort between it and it followed by the highest code point.
            matches = self._listed("WHERE s.key >= ? AND s.key < ?", (name, name + "\U0010ffff"), "LIMIT 2")
        return matches[0] if len(matches) == 1 else None

    def timeline(self, key: str) -> list[dict]:
        """The show's final snapshots in time order, in the SPEC replay-line shape."""
        with self._lock:
            rows = self._db.execute("SELECT room_id, ts, metrics, cdn FROM snapshots WHERE show_key=? ORDER BY ts",
                                    (key,)).fetchall()
        return [{"ts": ts, "room_id": room, "metrics": orjson.loads(m), "cdn": orjson.loads(c)}
                for room, ts, m, c in rows]

    def records(self, key: str) -> list[dict]:
        with self._lock:
            rows = self._db.execute("SELECT record FROM records WHERE show_key=? ORDER BY ts", (key,)).fetchall()
        return [orjson.loads(r) for (r,) in rows]

    def summary(self, key: str) -> dict | None:
        """The show's summary (SPEC §10) as recorded, with `incidents`: the show's recorded alert
        transitions and failover decisions in time order (at most MAX_INCIDENTS); None before
        the show's summary came."""
        with self._lock:
            row = self._db.execute("SELECT summary FROM summaries WHERE show_key=? ORDER BY start DESC LIMIT 1",
                                   (key,)).fetchone()
            if row is None:
                return None
            incidents = self._db.execute("SELECT record FROM records WHERE show_key=? AND kind IN ('alert', 'failover')"
                                         " ORDER BY ts LIMIT ?", (key, MAX_INCIDENTS)).fetchall()
        summary = orjson.loads(row[0])
        summary["incidents"] = [orjson.loads(r) for (r,) in incidents]
        return summary
