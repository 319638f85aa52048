"""`livemon simulate`: the Kafka edge of the simulator.

It paces the generator's messages to event time (by default event time is the wall clock: a live
show), produces them with librdkafka (confluent-kafka: its per-message work is in C, so the load
generator leaves the machine's cores to the workers it loads) keyed by room, follows failover commands from
`liveroom.control` (the room's simulated viewers move to the new CDN), and can write what it sent:
`--out FILE` gets every event the monitor should accept, one per line in send order, which is the
input `livemon replay` takes; the deliberate bad input (bad-input scenario) goes to `FILE.rejected`,
one JSON record per line: {"reason", "topic", "raw"} (raw as UTF-8 text, or "raw_b64" when it is
not UTF-8). Late and future events are valid JSON events but belong to the rejected file, because
the monitor rejects them: `FILE` replayed gives exactly what a worker computed from the traffic.
"""

from __future__ import annotations

import base64
import json
import queue
import threading
import time
from contextlib import ExitStack

import click

from livemon.ingest.events import CONTROL_TOPIC, encode
from livemon.kafka_connection import KafkaSecurity
from livemon.processes import sigterm_as_interrupt
from livemon.settings import options as settings_options

from .core import Simulation
from .scenarios import SCENARIOS, parse_scenarios
from .traces import TraceError, load_traces


def _scenarios(ctx, param, value):
    try:
        return parse_scenarios(value)
    except ValueError as error:
        raise click.BadParameter(str(error)) from None


@click.command(epilog="Scenarios: " + "; ".join(f"{k}: {v}" for k, v in SCENARIOS.items()))
@click.option("--broker", default="127.0.0.1:9092", show_default=True, envvar="LIVEMON_BROKER", show_envvar=True,
              help="Kafka bootstrap servers, HOST:PORT[,HOST:PORT...].")
@click.option("--scenario", "scenarios", default="normal", show_default=True, callback=_scenarios,
              help="Scenario(s), comma-separated: " + ", ".join(SCENARIOS) + ".")
@click.option("--rooms", default=5, show_default=True, type=click.IntRange(1, 100_000),
              help="Live rooms; room-001 is the hot one.")
@click.option("--room-prefix", default="room-", show_default=True,
              help="Room ids are this prefix and a number (room-001...).")
@click.option("--rate", default=1000.0, show_default=True, type=click.FloatRange(min=0, min_open=True),
              help="Target events per second in a normal show (it sets the audience size).")
@click.option("--duration", default=60.0, show_default=True, type=click.FloatRange(min=0),
              help="Seconds of show; 0 runs until Ctrl-C.")
@click.option("--seed", default=0, show_default=True, type=int, help="Random seed: same seed, same show.")
@click.option("--envelope", default=20, show_default=True, type=click.IntRange(1, 10_000),
              help="Events per message (batch envelope); 1 sends single event objects.")
@click.option("--traces", type=click.Path(file_okay=False), default=None,
              help="Folder of bandwidth traces (seconds<TAB>Mbit/s); viewers' throughput follows them.")
@click.option("--out", type=click.Path(dir_okay=False, writable=True), default=None,
              help="Write every valid event sent to this JSONL file (bad input to FILE.rejected).")
@click.option("--speed", default=1.0, show_default=True, type=click.FloatRange(min=0),
              help="Event-time seconds per wall-clock second; 0 sends as fast as possible.")
@click.option("--beacon-interval", default=10.0, show_default=True,
              type=click.FloatRange(min=0, min_open=True), help="Seconds between a viewer's health beacons.")
@click.option("--fault-at", type=click.FloatRange(min=0), default=None,
              help="Seconds into the run when scenario episodes start [30% of the duration; "
                   "minute 2 of every 10 without end].")
@click.option("--fault-for", type=click.FloatRange(min=0), default=None,
              help="How long the episodes last [40% of the duration; 3 minutes].")
@click.option("--bad-fraction", default=0.02, show_default=True, type=click.FloatRange(0, 1),
              help="Bad input per good event in the bad-input scenario.")
@click.option("--end-show/--no-end-show", default=True, show_default=True,
              help="At the end of a finite run, the audience leaves and the shows end.")
@click.option("--follow-failover/--no-follow-failover", default=True, show_default=True,
              help=f"Move a room's viewers to the new CDN on a command on {CONTROL_TOPIC}.")
@click.option("--create-topics/--no-create-topics", default=True, show_default=True,
              help="Create the product's topics that do not exist yet.")
@click.option("--connect-timeout", default=10.0, show_default=True, type=click.FloatRange(min=0.1),
              help="Seconds to wait for the broker.")
@click.option("--compression", type=click.Choice(["gzip", "none"]), default="gzip", show_default=True,
              help="Kafka compression of the produced batches (as client SDKs and edge collectors send).")
@click.option("--keys", type=click.Choice(["room", "none"]), default="room", show_default=True,
              help="Message keys: the room id (as the monitor asks producers to), or none (the producer "
                   "then picks partitions at random, as a misconfigured collector does; the workers "
                   "forward each event to its room's partition).")
@click.option("--quiet", is_flag=True, help="No progress display and no summary.")
@settings_options(KafkaSecurity)
def simulate(broker, scenarios, rooms, room_prefix, rate, duration, seed, envelope, traces, out, speed,
             beacon_interval, fault_at, fault_for, bad_fraction, end_show, follow_failover,
             create_topics, connect_timeout, compression, keys, quiet, **kafka):
    """Produce realistic live-room traffic to a Kafka broker."""
    from livemon.broker import BrokerUnavailable
    from livemon.kafka_connection import KafkaConnection, KafkaConnectionError, ensure_topics
    from livemon.settings import build

    try:
        connection = KafkaConnection.of(broker, build(KafkaSecurity, kafka))
        trace_set = load_traces(traces) if traces else None
        options = dict(rooms=rooms, seed=seed, duration=duration, rate=rate, envelope=envelope,
                       traces=trace_set, beacon_interval=beacon_interval, fault_at=fault_at,
                       fault_for=fault_for, end_show=end_show, bad_fraction=bad_fraction,
                       room_prefix=room_prefix)
        Simulation(scenarios, **options)  # check the options before connecting
    except (ValueError, TraceError) as error:
        raise click.ClickException(str(error)) from None
    try:
        if create_topics:
            ensure_topics(connection, timeout=connect_timeout)
        else:
            connection.check(connect_timeout)
    except (BrokerUnavailable, KafkaConnectionError, ValueError) as error:
        raise click.ClickException(str(error)) from None
    except Exception as error:  # noqa: BLE001 - any client failure: say it plainly
        raise click.ClickException(f"cannot use the broker at {broker}: {error}") from None

    with ExitStack() as stack:
        report = _Report(quiet, duration)
        producer = _Producer(connection, compression, report)
        files = _open_outputs(stack, out)
        commands: queue.Queue = queue.Queue()
        if follow_failover:
            stop = threading.Event()
            thread = threading.Thread(target=_follow_control, args=(connection, commands, stop),
                                      name="simulate-control", daemon=True)
            thread.start()
            stack.callback(thread.join, 5)
            stack.callback(stop.set)
        # Event time is the wall clock from now on: a live show.
        sim = Simulation(scenarios, start=time.time(), **options)
        stack.enter_context(report)
        stack.enter_context(sigterm_as_interrupt())  # (e.g. from `livemon demo` stopping): flushed, files closed
        try:
            _run(sim, producer, files, commands, report, speed, keyed=keys == "room")
        except KeyboardInterrupt:
            report.note("stopped")
        finally:
            if unsent := producer.flush(10):
                report.error(f"{unsent} messages still unsent after 10 s", unsent)
        if report.failed:
            raise click.ClickException(f"{report.failed} messages could not be delivered to {broker}: "
                                       f"{report.first_error}")
    report.summary()


def _run(sim: Simulation, producer: "_Producer", files, commands: queue.Queue, report: "_Report",
         speed: float, keyed: bool = True):
    wall0, due_ts = time.monotonic(), sim.start
    for message in sim.messages():
        while not commands.empty():
            command = commands.get_nowait()
            if sim.apply_failover(command["room_id"], command["to_cdn"], from_cdn=command.get("from_cdn")):
                report.failovers += 1
        if message.events:
            due_ts = max(due_ts, message.events[-1].ts)
        if speed > 0:
            # Send an envelope once its last event has happened: no event is from the future.
            wait = wall0 + (due_ts - sim.start) / speed - time.monotonic()
            if wait > 0:
                report.refresh(sim.now - sim.start)
                time.sleep(wait)
        producer.send(message.topic, message.key.encode() if keyed else None, message.value)
        report.sent(message)
        if files:
            good, rejected = files
            for event in message.events:
                good.write(encode(event) + b"\n")
            for reason, raw in message.rejected:
                rejected.write(_rejected_line(reason, message.topic, raw))
        report.refresh(sim.now - sim.start)


class _Producer:
    """librdkafka's producer as the simulator uses it: acks=1, batches of up to 20 ms, delivery
    failures counted in the report (librdkafka retries a send itself before it fails it)."""

    def __init__(self, connection, compression: str, report: "_Report"):
        import logging

        from confluent_kafka import KafkaException, Producer

        config = {**connection.librdkafka_config(), "client.id": "livemon-simulate", "acks": 1,
                  "linger.ms": 20, "batch.size": 512 * 1024, "message.max.bytes": 4 * 1024 * 1024,
                  "message.send.max.retries": 5, "compression.codec": compression,
                  "partitioner": "murmur2_random",  # the Java client's: a room's events on its partition
                  # librdkafka's own log (a broker that went away, a dead bootstrap entry) as warnings
                  "logger": logging.getLogger("livemon.simulate.kafka")}
        try:
            self._producer = Producer(config)
        except KafkaException as error:
            raise click.ClickException(f"cannot make a producer for {connection.bootstrap}: {error}") from None
        self._report = report

    def _delivered(self, error, message) -> None:  # called from poll/flush, in this thread
        if error is not None:
            self._report.error(error)

    def send(self, topic: str, key: bytes | None, value: bytes) -> None:
        while True:
            try:
                self._producer.produce(topic, value, key, on_delivery=self._delivered)
                break
            except BufferError:  # the local queue is full (sending as fast as possible): let it drain
                self._producer.poll(0.05)
        self._producer.poll(0)

    def flush(self, timeout: float) -> int:
        """Wait until every message is delivered or failed; the number still unsent."""
        return self._producer.flush(timeout)


def _open_outputs(stack: ExitStack, out: str | None):
    if not out:
        return None
    try:
        good = stack.enter_context(open(out, "wb"))
        rejected = stack.enter_context(open(out + ".rejected", "wb"))
    except OSError as error:
        raise click.ClickException(f"cannot write {error.filename}: {error.strerror}") from None
    return good, rejected


def _rejected_line(reason: str, topic: str, raw: bytes) -> bytes:
    record = {"reason": reason, "topic": topic}
    try:
        record["raw"] = raw.decode("utf-8")
    except UnicodeDecodeError:
        record["raw"], record["raw_b64"] = base64.b64encode(raw).decode(), True
    return json.dumps(record, ensure_ascii=False).encode() + b"\n"


def _follow_control(connection, commands: queue.Queue, stop: threading.Event) -> None:
    """Read failover commands issued from now on; put the well-formed ones on `commands`."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = None
    seen: set = set()
    while not stop.is_set():
        try:
            if consumer is None:
                consumer = KafkaConsumer(**connection.kafka_python_kwargs(), group_id=None,
                                         client_id="livemon-simulate-control", enable_auto_commit=False)
                partitions = consumer.partitions_for_topic(CONTROL_TOPIC)
                if not partitions:
                    consumer.close()
                    consumer = None
                    stop.wait(1.0)
                    continue
                consumer.assign([TopicPartition(CONTROL_TOPIC, p) for p in sorted(partitions)])
                consumer.seek_to_end()
            for records in consumer.poll(timeout_ms=300).values():
                for record in records:
                    command = _parse_command(record.value)
                    # Commands arrive at least once: a repeated command_id is the same command.
                    if command and command.get("command_id", object()) not in seen:
                        seen.add(command.get("command_id"))
                        commands.put(command)
        except Exception:  # noqa: BLE001 - the broker may be restarting: try again shortly
            if consumer is not None:
                consumer.close()
                consumer = None
            stop.wait(1.0)
    if consumer is not None:
        consumer.close()


def _parse_command(value: bytes) -> dict | None:
    try:
        command = json.loads(value)
    except (ValueError, TypeError):
        return None
    if (isinstance(command, dict) and isinstance(command.get("room_id"), str)
            and isinstance(command.get("to_cdn"), str)):
        return command
    return None


class _Report:
    """Counts, the progress display (on a terminal), and the closing summary."""

    def __init__(self, quiet: bool, duration: float):
        from rich.console import Console

        self.console = Console(stderr=True)
        self.quiet = quiet
        self.duration = duration or None
        self.events = self.messages = self.bad = self.failovers = self.failed = 0
        self.first_error = None
        self.started = time.monotonic()
        self.last_refresh = 0.0
        self.progress = None
        self.stopped = ""

    def __enter__(self):
        if not self.quiet and self.console.is_terminal:
            from rich.progress import (BarColumn, Progress, SpinnerColumn, TextColumn,
                                       TimeElapsedColumn)

            columns = [SpinnerColumn(), TextColumn("[bold]simulating")]
            if self.duration:
                columns.append(BarColumn())
            columns += [TextColumn("{task.fields[stats]}"), TimeElapsedColumn()]
            self.progress = Progress(*columns, console=self.console, transient=True)
            self.progress.start()
            self.task = self.progress.add_task("simulate", total=self.duration, stats="")
        return self

    def __exit__(self, *exc):
        if self.progress is not None:
            self.progress.stop()

    def sent(self, message) -> None:
        self.messages += 1
        self.events += len(message.events)
        self.bad += len(message.rejected)

    def error(self, error, count: int = 1) -> None:
        self.failed += count
        self.first_error = self.first_error or error

    def note(self, text: str) -> None:
        self.stopped = f" ({text})"

    def refresh(self, show_seconds: float) -> None:
        now = time.monotonic()
        if self.progress is None or now - self.last_refresh < 0.2:
            return
        self.last_refresh = now
        elapsed = max(now - self.started, 1e-9)
        stats = (f"{self.events:,} events  {self.events / elapsed:,.0f}/s  "
                 f"{self.messages:,} messages  bad {self.bad:,}  failovers {self.failovers}")
        self.progress.update(self.task, completed=min(show_seconds, self.duration or show_seconds),
                             stats=stats)

    def summary(self) -> None:
        if self.quiet:
            return
        elapsed = max(time.monotonic() - self.started, 1e-9)
        self.console.print(f"sent {self.events:,} events in {self.messages:,} messages "
                           f"({self.bad:,} bad input) in {elapsed:.1f} s, "
                           f"{self.events / elapsed:,.0f} events/s; "
                           f"failovers followed: {self.failovers}{self.stopped}", highlight=False,
                           soft_wrap=True)
