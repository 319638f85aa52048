"""The settings of `livemon worker`, declared once (see `livemon.settings`): each field is an
option of the command, a `LIVEMON_<NAME>` environment variable and a key of `[worker]` in
`--config livemon.toml`. The engine's settings (`EngineConfig`) are nested in them."""

from __future__ import annotations

import functools
import os
import socket
from dataclasses import dataclass

from livemon.engine import EngineConfig
from livemon.kafka_connection import KafkaConnection, KafkaSecurity
from livemon.settings import setting
from livemon.topics import DEFAULT_PARTITIONS


@dataclass(frozen=True)
class WorkerSettings:
    bootstrap: str = setting(help="Kafka bootstrap servers, HOST:PORT[,HOST:PORT...] (an entry that does not "
                             "answer is skipped).", flag="--broker", envvar="LIVEMON_BROKER")
    web_host: str = setting("127.0.0.1", "Address of /metrics, /healthz and the web page.")
    web_port: int = setting(6066, "Port of /metrics, /healthz and the web page.", minimum=0, maximum=65535)
    partitions: int = setting(DEFAULT_PARTITIONS, "Partitions per event topic when the worker has to create "
                              "the topics (existing topics keep theirs).", minimum=1, maximum=1024)
    data_dir: str | None = setting(None, "Working directory of the worker: alert outboxes, incidents "
                                   "(default: a temporary one).", path="dir", envvar="LIVEMON_WORKER_DIR")
    checkpoint_interval: float = setting(5.0, "Seconds between state checkpoints.", minimum=0.1)
    checkpoint_in_child: bool = setting(True, "Encode checkpoints in a child process forked at the checkpoint "
                                        "(a copy-on-write image): the stream never waits for them. Off: "
                                        "encoded in the worker's own loop, a partition at a time.")
    summary_interval: float = setting(10.0, "Seconds between provisional show summaries (SPEC §10) of the "
                                      "shows going on, published on liveroom.snapshots.", minimum=0.1)
    worker_id: str = setting(help="Name of this worker in records (default host-pid).",
                             default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}")
    batch_max: int = setting(2000, "Kafka messages per drained batch.", minimum=1)
    batch_within: float = setting(0.05, "Seconds to wait for a batch to fill.", minimum=0)
    group: str = setting("livemon", "Consumer group (Faust app id).")
    alerts: bool = setting(True, "Evaluate alert rules (--no-alerts: metrics only).")
    alerts_config: str | None = setting(None, "Alerting config (rules, receivers, failover). "
                                        "Default: the shipped alerts/alerting.yml.", path="file")
    web_page: bool = setting(True, "Serve the control-room page (else only /metrics, /healthz, /livez).")
    recording: bool = setting(True, "Record shows for the post-show review (independent of the page).")
    recording_dir: str | None = setting(None, "Where recorded timelines go (default: $LIVEMON_DATA_DIR or "
                                        "~/.local/share/livemon).", path="dir")
    token: str | None = setting(None, "Token for control actions on the web page, at least 32 characters "
                                "(default: generated and printed).")
    stall_after: float = setting(30.0, "Seconds without progress while messages wait before /livez reports "
                                 "the consumer stuck.", minimum=1)
    connect_timeout: float = setting(10.0, "Seconds to wait for the broker at start.", minimum=0.1)
    log_level: str = setting("warning", "Log level.", choices=("debug", "info", "warning", "error"))
    # Caps across all partitions of this worker (the engine's own caps are per partition): a room
    # costs the engine about 150 KB at a busy show and the control-room page about 90 KB of chart
    # history, so 4,000 live rooms keep a worker near 1 GB whatever the input (docs/ARCHITECTURE.md).
    worker_max_rooms: int = setting(4000, "Live rooms this worker tracks at most, over all its partitions; "
                                    "events of rooms beyond it are rejected room_limit.", minimum=1)
    worker_max_candidates: int = setting(50000, "Rooms not yet admitted (candidates) this worker holds at "
                                         "most; beyond it events are rejected room_limit.", minimum=0)
    kafka: KafkaSecurity = setting(default_factory=KafkaSecurity)
    engine: EngineConfig = setting(default_factory=EngineConfig)

    @functools.cached_property
    def connection(self) -> KafkaConnection:
        """The Kafka connection of every client of the worker (raises ValueError if invalid)."""
        return KafkaConnection.of(self.bootstrap, self.kafka)

    def engine_config(self) -> EngineConfig:
        return self.engine

    @property
    def step(self) -> float:
        return self.engine.step
