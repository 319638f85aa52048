"""The Kafka connection as deployed: bootstrap lists, TLS with a client certificate, SASL.

The embedded broker (Tansu 0.6) cannot terminate TLS itself (its `--cert` and `--key` options
exclude each other and leave the listener in plaintext) and its SASL offers no mechanism a client
shares (`NoSharedMechanism` for PLAIN and SCRAM alike). So a loopback gate sits in front of Tansu,
which advertises the gate's address, so every connection a client makes, bootstrap and partition
leaders alike, goes through it: TLS (Python's `ssl`, the broker's certificate, client certificates
required and checked against the test CA) and, for `sasl_tls_broker`, a SASL/SCRAM login that must
succeed before any request but ApiVersions reaches the broker (SaslHandshake, SaslAuthenticate
v0-2 and the SCRAM server side written out below, as Apache Kafka runs them). The exact
configuration each client library receives (aiokafka, kafka-python, Faust) is checked as well.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import math
import os
import socket
import ssl
import struct
import subprocess
import sys
import threading
import time

import pytest
from click.testing import CliRunner
from livemon.broker import free_port, tansu_binary
from livemon.kafka_connection import (
    KafkaConnection,
    KafkaConnectionError,
    KafkaSecurity,
    describe_error,
    ensure_topics,
    parse_brokers,
)

ROOM = "tls-room-1"


# ---- a certificate authority, the broker's certificate, a client's -----------------------------

def _openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """PEM files: ca.pem signs server.pem (for 127.0.0.1) and client.pem; other-ca.pem signs nothing."""
    d = tmp_path_factory.mktemp("pki")
    for ca in ("ca", "other-ca"):
        _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{ca}.key", "-out", f"{ca}.pem",
                 "-days", "2", "-subj", f"/CN=livemon test {ca}", cwd=d)
    (d / "server.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n")
    (d / "client.ext").write_text("basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n")
    for name, subject in (("server", "/CN=localhost"), ("client", "/CN=livemon-worker")):
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
                 "-subj", subject, cwd=d)
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                 "-out", f"{name}.pem", "-days", "2", "-extfile", f"{name}.ext", cwd=d)
    return {name: str(d / name) for name in ("ca.pem", "other-ca.pem", "server.pem", "server.key",
                                             "client.pem", "client.key")}


SASL_USER, SASL_PASSWORD = "livemon", "scram-test-password"


class Scram:
    """The server side of SCRAM (RFC 5802, as Kafka runs it): one exchange of two messages."""

    def __init__(self, mechanism: str, users: dict[str, str]):
        self.hash = {"SCRAM-SHA-256": "sha256", "SCRAM-SHA-512": "sha512"}[mechanism]
        self.users, self.salt, self.iterations = users, os.urandom(16), 4096
        self.client_first_bare = self.server_first = None
        self.password = None

    def _hmac(self, key: bytes, message: bytes) -> bytes:
        return hmac.new(key, message, self.hash).digest()

    def step(self, message: bytes) -> tuple[bytes | None, bool]:
        """(answer, done); answer None: authentication failed."""
        text = message.decode()
        if self.server_first is None:
            self.client_first_bare = text.split(",", 2)[2]
            fields = dict(item.split("=", 1) for item in self.client_first_bare.split(","))
            self.password = self.users.get(fields["n"])
            nonce = fields["r"] + base64.b64encode(os.urandom(18)).decode()
            self.server_first = f"r={nonce},s={base64.b64encode(self.salt).decode()},i={self.iterations}"
            return self.server_first.encode(), False
        without_proof, _, proof = text.rpartition(",p=")
        if self.password is None:
            return None, True
        salted = hashlib.pbkdf2_hmac(self.hash, self.password.encode(), self.salt, self.iterations)
        client_key = self._hmac(salted, b"Client Key")
        auth_message = f"{self.client_first_bare},{self.server_first},{without_proof}".encode()
        signature = self._hmac(hashlib.new(self.hash, client_key).digest(), auth_message)
        expected = bytes(a ^ b for a, b in zip(client_key, signature))
        if not hmac.compare_digest(base64.b64decode(proof), expected):
            return None, True
        server_signature = self._hmac(self._hmac(salted, b"Server Key"), auth_message)
        return b"v=" + base64.b64encode(server_signature), True


def _uvarint(data: bytes, at: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, at
        shift += 7


def _put_uvarint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


class TlsTerminator:
    """TLS on 127.0.0.1:`port` (client certificates required), relayed to a plaintext broker; with
    `sasl`, it is also the broker's SASL gate: a connection must authenticate (SaslHandshake v0-1,
    SaslAuthenticate v0-2, SCRAM-SHA-256/512 against `sasl`'s users) before any other request
    than ApiVersions reaches the broker, as Apache Kafka's SASL_SSL listeners require."""

    def __init__(self, pki: dict, target_port: int, sasl: dict[str, str] | None = None):
        self.sasl = sasl
        self.logins: list[tuple[str, bool]] = []  # (mechanism, accepted) of each SASL exchange
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=pki["ca.pem"])
        self.context.load_cert_chain(pki["server.pem"], pki["server.key"])
        self.context.verify_mode = ssl.CERT_REQUIRED
        self.target_port = target_port
        self.port = free_port()
        self.clients: list[str] = []  # the verified client certificates' common names
        self.refused = 0
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.server = None

    def start(self):
        self.thread.start()
        self.server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._relay, "127.0.0.1", self.port, ssl=self.context,
                                 ssl_handshake_timeout=5), self.loop).result(10)
        return self

    async def _relay(self, reader, writer):
        peer = writer.get_extra_info("peercert") or {}
        self.clients.append(dict(item[0] for item in peer.get("subject", ())).get("commonName", ""))
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        if self.sasl is not None:
            try:
                accepted = await self._authenticate(reader, writer, upstream_reader, upstream_writer)
            except (ConnectionError, ssl.SSLError, asyncio.IncompleteReadError, ValueError, KeyError,
                    IndexError, struct.error):
                accepted = False
            if not accepted:
                writer.close()
                upstream_writer.close()
                return

        async def pipe(source, sink):
            try:
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            except (ConnectionError, ssl.SSLError, asyncio.IncompleteReadError):
                pass
            finally:
                sink.close()
        await asyncio.gather(pipe(reader, upstream_writer), pipe(upstream_reader, writer))

    async def _authenticate(self, reader, writer, upstream_reader, upstream_writer) -> bool:
        scram = None
        while True:
            frame = await reader.readexactly(struct.unpack(">i", await reader.readexactly(4))[0])
            key, version, correlation = struct.unpack(">hhi", frame[:8])
            at = 10 + max(0, struct.unpack(">h", frame[8:10])[0])  # past the client id
            if key == 18:  # ApiVersions: the broker's own answer
                upstream_writer.write(struct.pack(">i", len(frame)) + frame)
                answer = await upstream_reader.readexactly(
                    struct.unpack(">i", await upstream_reader.readexactly(4))[0])
                writer.write(struct.pack(">i", len(answer)) + answer)
            elif key == 17 and version <= 1:  # SaslHandshake
                length = struct.unpack(">h", frame[at:at + 2])[0]
                mechanism = frame[at + 2:at + 2 + length].decode()
                offered = ("SCRAM-SHA-256", "SCRAM-SHA-512")
                error = 0 if mechanism in offered else 33  # UNSUPPORTED_SASL_MECHANISM
                scram = Scram(mechanism, self.sasl) if not error else None
                body = struct.pack(">hi", error, len(offered)) + b"".join(
                    struct.pack(">h", len(m)) + m.encode() for m in offered)
                writer.write(struct.pack(">ii", 4 + len(body), correlation) + body)
                if error:
                    return False
            elif key == 36 and scram is not None and version <= 2:  # SaslAuthenticate
                if version == 2:
                    _tags, at = _uvarint(frame, at)
                    length, at = _uvarint(frame, at)
                    token = frame[at:at + length - 1]
                else:
                    length = struct.unpack(">i", frame[at:at + 4])[0]
                    token = frame[at + 4:at + 4 + length]
                answer, done = scram.step(token)
                error, message = (0, None) if answer is not None else (
                    58, f"Authentication failed during authentication due to invalid credentials with SASL "
                        f"mechanism SCRAM-SHA-{scram.hash[3:]}")
                answer = answer or b""
                if version == 2:
                    text = b"\0" if message is None else _put_uvarint(len(message) + 1) + message.encode()
                    body = (struct.pack(">h", error) + text + _put_uvarint(len(answer) + 1) + answer
                            + struct.pack(">q", 0) + b"\0")
                    header = struct.pack(">i", correlation) + b"\0"
                else:
                    text = struct.pack(">h", -1) if message is None else \
                        struct.pack(">h", len(message)) + message.encode()
                    body = struct.pack(">h", error) + text + struct.pack(">i", len(answer)) + answer
                    body += struct.pack(">q", 0) if version == 1 else b""
                    header = struct.pack(">i", correlation)
                if done:  # noted before the answer leaves, so a client that has it sees it noted
                    self.logins.append((f"SCRAM-SHA-{scram.hash[3:]}", error == 0))
                writer.write(struct.pack(">i", len(header) + len(body)) + header + body)
                await writer.drain()
                if done:
                    return error == 0
            else:
                return False  # anything else before authenticating: the connection is closed
            await writer.drain()

    def stop(self):
        if self.server is not None:
            self.loop.call_soon_threadsafe(self.server.close)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@pytest.fixture
def tls_broker(pki, tmp_path):
    """A Tansu broker reachable only through TLS: (tls bootstrap, plaintext bootstrap of Tansu itself,
    the terminator)."""
    with _gated_broker(pki, tmp_path) as gated:
        yield gated


@pytest.fixture
def sasl_tls_broker(pki, tmp_path):
    """The same, and SASL/SCRAM required (user SASL_USER, password SASL_PASSWORD)."""
    with _gated_broker(pki, tmp_path, {SASL_USER: SASL_PASSWORD}) as gated:
        yield gated


@contextlib.contextmanager
def _gated_broker(pki, tmp_path, sasl=None):
    plain_port = free_port()
    terminator = TlsTerminator(pki, plain_port, sasl)
    url = f"tcp://127.0.0.1:{plain_port}"
    advertised = f"tcp://127.0.0.1:{terminator.port}"
    with open(tmp_path / "tansu.log", "ab") as log:
        broker = subprocess.Popen([tansu_binary(), "broker", "--listener-url", url, "--advertised-listener-url",
                                   advertised, "--storage-engine", "memory://tansu/"],
                                  stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                  start_new_session=True)
    terminator.start()
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", plain_port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or broker.poll() is not None:
                    raise
                time.sleep(0.1)
        yield f"127.0.0.1:{terminator.port}", f"127.0.0.1:{plain_port}", terminator
    finally:
        terminator.stop()
        broker.terminate()
        broker.wait(10)


def _tls_options(pki, ca="ca.pem", cert=True):
    options = ["--kafka-ca-file", pki[ca]]
    if cert:
        options += ["--kafka-cert-file", pki["client.pem"], "--kafka-key-file", pki["client.key"]]
    return options


def _tls(pki, bootstrap, ca="ca.pem", cert=True) -> KafkaConnection:
    return KafkaConnection.of(bootstrap, KafkaSecurity(
        kafka_ca_file=pki[ca], kafka_cert_file=pki["client.pem"] if cert else None,
        kafka_key_file=pki["client.key"] if cert else None))


# ---- TLS, for real -----------------------------------------------------------------------------

def _scram_options(tmp_path, password=SASL_PASSWORD):
    secret = tmp_path / f"kafka-password-{len(list(tmp_path.glob('kafka-password-*')))}"
    secret.write_text(password + "\n")
    return ["--kafka-sasl-mechanism", "SCRAM-SHA-512", "--kafka-username", SASL_USER,
            "--kafka-password-file", str(secret)]


def test_a_worker_joins_through_a_list_whose_first_entry_is_dead_with_scram_over_tls_and_a_client_certificate(
        sasl_tls_broker, pki, start_worker, tmp_path):
    tls_bootstrap, _plain, terminator = sasl_tls_broker
    bootstrap = f"127.0.0.1:{free_port()},{tls_bootstrap}"  # nothing listens on the first entry
    secured = [*_tls_options(pki), *_scram_options(tmp_path)]
    worker = start_worker(bootstrap, "--no-alerts", "--no-web-page", "--partitions", "2", *secured)
    # The simulator's producer goes through the same list, the same way.
    sim = subprocess.run([sys.executable, "-m", "livemon", "simulate", "--broker", bootstrap, "--rooms", "2",
                          "--room-prefix", "tls-room-", "--duration", "3", "--rate", "40", "--quiet",
                          "--no-follow-failover", "--out", str(tmp_path / "sent.jsonl"), *secured],
                         capture_output=True, text=True, timeout=60)
    assert sim.returncode == 0, sim.stdout + sim.stderr
    sent = [json.loads(line) for line in open(tmp_path / "sent.jsonl")]
    assert sent, "the simulator sent nothing"
    rooms = {event["room_id"] for event in sent}
    deadline = time.monotonic() + 60
    while True:
        metrics = worker.metrics()
        seen = {dict(labels).get("room") for (name, labels), _ in metrics.items()
                if name == "livemon_room_snapshot_timestamp_seconds"}
        if rooms <= seen:
            break
        assert time.monotonic() < deadline, f"rooms {rooms - seen} not seen; worker log:\n{worker.log()}"
        time.sleep(0.5)
    assert math.fsum(v for (name, _), v in metrics.items() if name == "livemon_events_total") > 0
    # Every connection went through the TLS terminator with the client's verified certificate, and
    # logged in with SCRAM-SHA-512 before its first request to the broker.
    assert terminator.clients and set(terminator.clients) == {"livemon-worker"}
    # (the gate refuses anything but ApiVersions before a login; the two connections without one are
    # the worker's and the simulator's pre-flight checks, which ask ApiVersions only)
    assert len(terminator.logins) >= len(terminator.clients) - 2 > 0
    assert set(terminator.logins) == {("SCRAM-SHA-512", True)}
    assert "(SASL_SSL SCRAM-SHA-512 as livemon with a client certificate)" in worker.log()
    assert f"warning: Kafka bootstrap entry {bootstrap.split(',')[0]}: nothing listening; using the others" \
        in worker.log()
    assert SASL_PASSWORD not in worker.log() + sim.stdout + sim.stderr
    assert worker.stop() == 0


def test_a_wrong_password_is_one_line_naming_the_broker_and_the_cause(sasl_tls_broker, pki, tmp_path):
    tls_bootstrap, _plain, terminator = sasl_tls_broker
    result = _worker_error(["--broker", tls_bootstrap, *_tls_options(pki),
                            *_scram_options(tmp_path, "not-the-password")])
    line = _one_line_error(result)
    assert tls_bootstrap in line and "refused the SASL SCRAM-SHA-512 login of user 'livemon'" in line
    assert "not-the-password" not in result.stdout + result.stderr
    assert ("SCRAM-SHA-512", False) in terminator.logins


def test_the_check_logs_in_with_either_scram_and_names_a_mechanism_not_offered(sasl_tls_broker, pki):
    tls_bootstrap, _plain, terminator = sasl_tls_broker

    def connection(mechanism):
        return KafkaConnection.of(tls_bootstrap, KafkaSecurity(
            kafka_ca_file=pki["ca.pem"], kafka_cert_file=pki["client.pem"], kafka_key_file=pki["client.key"],
            kafka_sasl_mechanism=mechanism, kafka_username=SASL_USER, kafka_password=SASL_PASSWORD))
    for mechanism in ("SCRAM-SHA-256", "SCRAM-SHA-512"):
        assert connection(mechanism).check(5) == []
        assert terminator.logins[-1] == (mechanism, True)
    with pytest.raises(KafkaConnectionError, match=f"{tls_bootstrap}: the broker does not offer SASL PLAIN "
                                                   r"\(it offers SCRAM-SHA-256, SCRAM-SHA-512\)"):
        connection("PLAIN").check(5)


def test_the_lag_exporter_reads_offsets_with_scram_over_tls(sasl_tls_broker, pki):
    from livemon.lag import LagExporter

    tls_bootstrap, _plain, terminator = sasl_tls_broker
    connection = KafkaConnection.of(f"127.0.0.1:{free_port()},{tls_bootstrap}", KafkaSecurity(
        kafka_ca_file=pki["ca.pem"], kafka_cert_file=pki["client.pem"], kafka_key_file=pki["client.key"],
        kafka_sasl_mechanism="SCRAM-SHA-256", kafka_username=SASL_USER, kafka_password=SASL_PASSWORD))
    ensure_topics(connection, partitions=2, timeout=15)
    exporter = LagExporter(connection, ("nobody-yet",), ("liveroom.views",))
    assert exporter.poll() == {("nobody-yet", "liveroom.views", 0): 0, ("nobody-yet", "liveroom.views", 1): 0}
    exporter.stop()
    assert terminator.logins and set(terminator.logins) == {("SCRAM-SHA-256", True)}


def test_the_sasl_gate_refuses_requests_before_a_login(sasl_tls_broker, pki):
    """The gate is a real requirement: a TLS client without SASL gets no metadata."""
    tls_bootstrap, _plain, terminator = sasl_tls_broker
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError
    with pytest.raises(KafkaError):
        admin = KafkaAdminClient(**_tls(pki, tls_bootstrap).kafka_python_kwargs(), request_timeout_ms=3000)
        admin.list_topics()


def _worker_error(args, timeout=60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "livemon", "worker", "--web-port", str(free_port()),
                           "--connect-timeout", "4", *args], capture_output=True, text=True, timeout=timeout)


def _one_line_error(result) -> str:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_a_wrong_ca_is_one_line_naming_the_broker_and_the_cause(tls_broker, pki):
    tls_bootstrap, _plain, _ = tls_broker
    line = _one_line_error(_worker_error(["--broker", tls_bootstrap, *_tls_options(pki, ca="other-ca.pem")]))
    assert tls_bootstrap in line and "certificate is not trusted" in line and "--kafka-ca-file" in line


def test_a_missing_client_certificate_is_one_line_naming_the_broker_and_the_cause(tls_broker, pki):
    tls_bootstrap, _plain, _ = tls_broker
    line = _one_line_error(_worker_error(["--broker", tls_bootstrap, *_tls_options(pki, cert=False)]))
    assert tls_bootstrap in line and "client certificate" in line


def test_tls_against_a_plaintext_listener_and_plaintext_against_tls_are_named(tls_broker, pki):
    tls_bootstrap, plain_bootstrap, _ = tls_broker
    with pytest.raises(KafkaConnectionError, match=f"{plain_bootstrap}: no TLS handshake"):
        _tls(pki, plain_bootstrap).check(3)
    with pytest.raises(KafkaConnectionError, match=f"{tls_bootstrap}: .*TLS listener"):
        KafkaConnection.of(tls_bootstrap).check(3)


def test_topics_are_created_over_tls_and_a_dead_list_says_which_entries_failed(tls_broker, pki):
    tls_bootstrap, _plain, _ = tls_broker
    dead = f"127.0.0.1:{free_port()}"
    counts = ensure_topics(_tls(pki, f"{dead},{tls_bootstrap}"), partitions=3, timeout=15)
    assert counts["liveroom.views"] == 3
    with pytest.raises(KafkaConnectionError, match=f"{dead}: nothing listening"):
        KafkaConnection.of(dead).check(1)


# ---- the exact configuration of each client ----------------------------------------------------

SCRAM_TLS = dict(kafka_sasl_mechanism="SCRAM-SHA-512", kafka_username="monitor", kafka_password="s3cret-pw")


def test_sasl_scram_over_tls_gives_each_client_library_its_exact_settings(pki):
    import faust
    from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

    connection = KafkaConnection.of("k1:9093, k2:9093", KafkaSecurity(kafka_ca_file=pki["ca.pem"], **SCRAM_TLS))
    assert connection.brokers == ("k1:9093", "k2:9093") and connection.security_protocol == "SASL_SSL"

    aiokafka = connection.aiokafka_kwargs()
    context = aiokafka.pop("ssl_context")
    assert aiokafka == {"bootstrap_servers": ["k1:9093", "k2:9093"], "security_protocol": "SASL_SSL",
                        "sasl_mechanism": "SCRAM-SHA-512", "sasl_plain_username": "monitor",
                        "sasl_plain_password": "s3cret-pw"}
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert any("livemon test ca" in str(ca.get("subject")) for ca in context.get_ca_certs())

    python = connection.kafka_python_kwargs()
    assert isinstance(python.pop("ssl_context"), ssl.SSLContext)
    assert python == {"bootstrap_servers": ["k1:9093", "k2:9093"], "security_protocol": "SASL_SSL",
                      "ssl_check_hostname": True, "sasl_mechanism": "SCRAM-SHA-512",
                      "sasl_plain_username": "monitor", "sasl_plain_password": "s3cret-pw"}
    # kafka-python and aiokafka accept them (unknown keys raise there).
    from kafka import KafkaAdminClient
    assert set(python) <= set(KafkaAdminClient.DEFAULT_CONFIG)

    librdkafka = connection.librdkafka_config()
    assert librdkafka == {"bootstrap.servers": "k1:9093,k2:9093", "security.protocol": "SASL_SSL",
                          "ssl.ca.location": pki["ca.pem"], "ssl.endpoint.identification.algorithm": "https",
                          "sasl.mechanism": "SCRAM-SHA-512", "sasl.username": "monitor",
                          "sasl.password": "s3cret-pw"}
    from confluent_kafka import Producer
    Producer(librdkafka)  # librdkafka accepts it (an unknown or invalid property raises)

    settings = connection.faust_settings()
    assert settings["broker"] == ["kafka://k1:9093", "kafka://k2:9093"]
    credentials = settings["broker_credentials"]
    assert isinstance(credentials, faust.SASLCredentials)
    auth = credentials_to_aiokafka_auth(credentials)  # what Faust hands its aiokafka clients
    assert {k: v for k, v in auth.items() if k != "ssl_context"} == {
        "security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "monitor", "sasl_plain_password": "s3cret-pw"}
    assert auth["ssl_context"].verify_mode == ssl.CERT_REQUIRED
    app = faust.App("livemon-connection-test", **settings)
    assert [str(url) for url in app.conf.broker] == ["kafka://k1:9093", "kafka://k2:9093"]


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_sasl_without_tls_is_sasl_plaintext_and_has_no_tls_context(mechanism):
    connection = KafkaConnection.of("k:9092", KafkaSecurity(kafka_sasl_mechanism=mechanism,
                                                             kafka_username="u", kafka_password="p"))
    assert connection.aiokafka_kwargs() == {"bootstrap_servers": ["k:9092"], "security_protocol": "SASL_PLAINTEXT",
                                            "sasl_mechanism": mechanism, "sasl_plain_username": "u",
                                            "sasl_plain_password": "p"}
    assert "broker_credentials" in connection.faust_settings()


def test_librdkafka_gets_the_client_certificate_and_the_systems_cas_without_a_ca_file(pki):
    from confluent_kafka import Producer

    connection = KafkaConnection.of("k:9093", KafkaSecurity(kafka_cert_file=pki["client.pem"],
                                                             kafka_key_file=pki["client.key"]))
    config = connection.librdkafka_config()
    assert config == {"bootstrap.servers": "k:9093", "security.protocol": "SSL", "ssl.ca.location": "probe",
                      "ssl.endpoint.identification.algorithm": "https",
                      "ssl.certificate.location": pki["client.pem"], "ssl.key.location": pki["client.key"]}
    Producer(config)  # the certificate and key load (a wrong path or a key not matching raises)
    assert KafkaConnection.of("k:9092").librdkafka_config() == {"bootstrap.servers": "k:9092",
                                                               "security.protocol": "PLAINTEXT"}


def test_plaintext_is_what_it_was():
    connection = KafkaConnection.of("127.0.0.1:9092")
    assert connection.aiokafka_kwargs() == {"bootstrap_servers": ["127.0.0.1:9092"],
                                            "security_protocol": "PLAINTEXT"}
    assert connection.faust_settings() == {"broker": ["kafka://127.0.0.1:9092"]}


def test_the_password_is_never_shown(pki, tmp_path):
    connection = KafkaConnection.of("k:9093", KafkaSecurity(kafka_ca_file=pki["ca.pem"], **SCRAM_TLS))
    assert "s3cret-pw" not in repr(connection) + repr(KafkaSecurity(**SCRAM_TLS)) + connection.describe()
    assert "s3cret-pw" not in describe_error(RuntimeError("login s3cret-pw failed"), connection)
    from kafka.errors import SaslAuthenticationFailedError
    message = describe_error(SaslAuthenticationFailedError("Authentication failed"), connection)
    assert message == "the broker refused the SASL SCRAM-SHA-512 login of user 'monitor': wrong user name or password"

    from livemon.agents.worker import worker
    env = {"LIVEMON_KAFKA_PASSWORD": "s3cret-pw"}
    help_text = CliRunner().invoke(worker, ["--help"], env=env, terminal_width=200).output
    assert "LIVEMON_KAFKA_PASSWORD" in help_text and "--kafka-password-file" in help_text
    assert "s3cret-pw" not in help_text


def test_options_environment_and_password_file_reach_the_connection(tmp_path, pki):
    import click
    from livemon.agents.settings import WorkerSettings
    from livemon.settings import build, config_option, options

    @click.command()
    @config_option("worker")
    @options(WorkerSettings, exclude=("clockless_future_limit",))
    def show(**values):
        connection = build(WorkerSettings, values).connection
        click.echo(json.dumps([connection.brokers, connection.security_protocol, connection.sasl_mechanism,
                               connection.username, connection.password, connection.ca_file]))

    secret = tmp_path / "password"
    secret.write_text("from-file\n")
    config = tmp_path / "livemon.toml"
    config.write_text(f'[worker]\nkafka_username = "from-config"\nkafka_ca_file = "{pki["ca.pem"]}"\n')
    result = CliRunner().invoke(show, ["--broker", "a:9093,b:9093", "--config", str(config),
                                       "--kafka-password-file", str(secret)],
                                env={"LIVEMON_KAFKA_SASL_MECHANISM": "SCRAM-SHA-256"})
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == [["a:9093", "b:9093"], "SASL_SSL", "SCRAM-SHA-256", "from-config",
                                         "from-file", pki["ca.pem"]]
    result = CliRunner().invoke(show, ["--broker", "a:9092", "--kafka-sasl-mechanism", "PLAIN",
                                       "--kafka-username", "u"], env={"LIVEMON_KAFKA_PASSWORD": "from-env"})
    assert json.loads(result.output)[2:5] == ["PLAIN", "u", "from-env"]


@pytest.mark.parametrize("bootstrap, security, message", [
    ("a:9092,b", {}, "HOST:PORT"),
    ("a:9092,,b:9092", {}, "HOST:PORT"),
    ("a:9092", {"kafka_sasl_mechanism": "SCRAM-SHA-512", "kafka_username": "u"}, "password"),
    ("a:9092", {"kafka_sasl_mechanism": "SCRAM-SHA-512", "kafka_password": "p"}, "--kafka-username"),
    ("a:9092", {"kafka_security_protocol": "SASL_SSL"}, "--kafka-sasl-mechanism"),
    ("a:9092", {"kafka_security_protocol": "PLAINTEXT", "kafka_ca_file": "/etc/hostname"}, "SSL"),
    ("a:9092", {"kafka_ca_file": "/nonexistent/ca.pem"}, "no such file"),
    ("a:9092", {"kafka_key_file": "/etc/hostname", "kafka_ca_file": "/etc/hostname"}, "--kafka-cert-file"),
])
def test_bad_settings_are_clear_errors(bootstrap, security, message):
    with pytest.raises(ValueError, match=message):
        KafkaConnection.of(bootstrap, KafkaSecurity(**security))


def test_a_bad_option_stops_the_worker_before_it_connects():
    result = _worker_error(["--broker", "a:9092", "--kafka-sasl-mechanism", "PLAIN", "--kafka-username", "u"])
    assert result.returncode == 2 and "LIVEMON_KAFKA_PASSWORD" in result.stderr
    assert "Traceback" not in result.stderr


def test_ipv6_entries_are_accepted():
    assert parse_brokers("[::1]:9092, 10.0.0.1:9092") == ("[::1]:9092", "10.0.0.1:9092")


def test_the_embedded_broker_answers_the_check_after_a_dead_entry(broker):
    dead = f"127.0.0.1:{free_port()}"
    assert KafkaConnection.of(f"{dead},{broker}").check(5) == [f"{dead}: nothing listening"]
