"""The Kafka connection as deployed, declared once: bootstrap list, TLS and SASL.

Every Kafka client the product opens (the worker's Faust consumer and aiokafka producers and
readers, the simulator's librdkafka producer, the control room's consumer, topic creation, the
lag exporter) is built from one `KafkaConnection`:

    connection = KafkaConnection.of("a:9092,b:9092", security)   # security: KafkaSecurity options
    AIOKafkaProducer(**connection.aiokafka_kwargs(), acks="all")
    KafkaAdminClient(**connection.kafka_python_kwargs())
    confluent_kafka.Producer(connection.librdkafka_config())
    faust.App(..., **connection.faust_settings())

`KafkaSecurity` holds the options of a command (`--kafka-ca-file` ..., `LIVEMON_KAFKA_*`, the
command's table in `--config`); `settings.options(KafkaSecurity)` adds them to a command, and a
settings class nests it (`kafka: KafkaSecurity`) to get them among its own.

A bootstrap entry that does not answer is skipped: clients try the next one. `check()` connects
to each entry first (TCP, the TLS handshake, one Kafka request, the SASL login) and turns the usual deployment
mistakes (wrong CA, a refused client certificate, TLS against a plaintext listener, a refused
password) into one line naming the broker and the cause, instead of a client's endless retries.

Passwords come from `LIVEMON_KAFKA_PASSWORD` or `--kafka-password-file`; they are never part of
a repr, a log line or an error message.
"""

from __future__ import annotations

import dataclasses
import socket
import ssl
import struct
import time
from dataclasses import dataclass
from pathlib import Path

from livemon.settings import setting
from livemon.topics import ALL_TOPICS, DEFAULT_PARTITIONS

SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


class KafkaConnectionError(RuntimeError):
    """The brokers cannot be used with this connection; the message is one line for people."""


@dataclass(frozen=True)
class KafkaSecurity:
    """How the product's Kafka clients authenticate and encrypt (the options of a command)."""

    kafka_security_protocol: str | None = setting(
        None, "Kafka security protocol (default: SSL when a CA or client certificate is given, "
        "SASL_PLAINTEXT or SASL_SSL when a SASL mechanism is).", choices=SECURITY_PROTOCOLS)
    kafka_sasl_mechanism: str | None = setting(None, "SASL mechanism for Kafka.", choices=SASL_MECHANISMS)
    kafka_username: str | None = setting(None, "SASL user name for Kafka.")
    kafka_password: str | None = dataclasses.field(default=None, repr=False, metadata=setting(
        None, "SASL password for Kafka; prefer the environment variable or --kafka-password-file "
        "(a command line is visible to other users of the machine).").metadata)
    kafka_password_file: str | None = setting(None, "File holding the SASL password for Kafka (one line).",
                                              path="file")
    kafka_ca_file: str | None = setting(None, "PEM file of the CA certificates that sign the brokers' "
                                        "TLS certificates (default: the system's).", path="file")
    kafka_cert_file: str | None = setting(None, "PEM file of this client's TLS certificate, for brokers "
                                          "that require one (the key may be in the same file).", path="file")
    kafka_key_file: str | None = setting(None, "PEM file of the private key of --kafka-cert-file.", path="file")


def parse_brokers(bootstrap: str) -> tuple[str, ...]:
    """'a:9092, b:9092' -> ('a:9092', 'b:9092'), with a clear error for anything else."""
    entries = tuple(entry.strip() for entry in str(bootstrap).split(","))
    for entry in entries:
        host, _, port = entry.rpartition(":")
        bare = host[1:-1] if host.startswith("[") and host.endswith("]") else host
        if not bare or not port.isdigit() or not 0 < int(port) < 65536 or any(c in bare for c in " /"):
            raise ValueError(f"broker address must be HOST:PORT[,HOST:PORT...], got {bootstrap!r}")
    return entries


def _split(entry: str) -> tuple[str, int]:
    host, _, port = entry.rpartition(":")
    return host.strip("[]"), int(port)


@dataclass(frozen=True)
class KafkaConnection:
    brokers: tuple[str, ...]
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    username: str | None = None
    password: str | None = dataclasses.field(default=None, repr=False)
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None

    def __post_init__(self):
        if not self.brokers:
            raise ValueError("no Kafka broker given")
        parse_brokers(",".join(self.brokers))
        if self.security_protocol not in SECURITY_PROTOCOLS:
            raise ValueError(f"Kafka security protocol must be one of {', '.join(SECURITY_PROTOCOLS)}, "
                             f"got {self.security_protocol!r}")
        if self.sasl:
            if self.sasl_mechanism not in SASL_MECHANISMS:
                raise ValueError(f"{self.security_protocol} needs --kafka-sasl-mechanism, one of "
                                 f"{', '.join(SASL_MECHANISMS)}")
            if not self.username or self.password is None:
                raise ValueError(f"SASL {self.sasl_mechanism} needs --kafka-username and a password "
                                 f"(LIVEMON_KAFKA_PASSWORD or --kafka-password-file)")
        elif self.sasl_mechanism or self.username:
            raise ValueError(f"a SASL mechanism or user name needs a SASL security protocol, "
                             f"not {self.security_protocol}")
        if not self.tls and (self.ca_file or self.cert_file or self.key_file):
            raise ValueError(f"TLS files need an SSL security protocol, not {self.security_protocol}")
        if self.key_file and not self.cert_file:
            raise ValueError("--kafka-key-file needs --kafka-cert-file")
        for option, path in (("--kafka-ca-file", self.ca_file), ("--kafka-cert-file", self.cert_file),
                             ("--kafka-key-file", self.key_file)):
            if path and not Path(path).is_file():
                raise ValueError(f"{option}: no such file {path}")

    @classmethod
    def of(cls, bootstrap: str | KafkaConnection, security: KafkaSecurity | None = None) -> KafkaConnection:
        """The connection to the `bootstrap` list with the `security` options (validated; the
        password file read). A KafkaConnection is returned as it is."""
        if isinstance(bootstrap, KafkaConnection):
            return bootstrap
        security = security or KafkaSecurity()
        password = security.kafka_password
        if security.kafka_password_file:
            if password is not None:
                raise ValueError("give the Kafka password either in LIVEMON_KAFKA_PASSWORD or in "
                                 "--kafka-password-file, not both")
            try:
                password = Path(security.kafka_password_file).read_text().rstrip("\r\n")
            except OSError as error:
                raise ValueError(f"cannot read --kafka-password-file {security.kafka_password_file}: "
                                 f"{error.strerror}") from None
        tls = bool(security.kafka_ca_file or security.kafka_cert_file)
        protocol = security.kafka_security_protocol
        if protocol is None:
            protocol = ("SASL_SSL" if tls else "SASL_PLAINTEXT") if security.kafka_sasl_mechanism else \
                ("SSL" if tls else "PLAINTEXT")
        mechanism = security.kafka_sasl_mechanism.upper() if security.kafka_sasl_mechanism else None
        return cls(parse_brokers(bootstrap), protocol.upper(), mechanism,
                   security.kafka_username, password, security.kafka_ca_file, security.kafka_cert_file,
                   security.kafka_key_file)

    # ---- what it is ----

    @property
    def bootstrap(self) -> str:
        return ",".join(self.brokers)

    @property
    def tls(self) -> bool:
        return self.security_protocol in ("SSL", "SASL_SSL")

    @property
    def sasl(self) -> bool:
        return self.security_protocol.startswith("SASL_")

    def describe(self) -> str:
        """For logs: the brokers and how we connect, never the password."""
        how = self.security_protocol
        if self.sasl:
            how += f" {self.sasl_mechanism} as {self.username}"
        if self.cert_file:
            how += " with a client certificate"
        return f"{self.bootstrap} ({how})"

    def ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context of every client: the brokers' certificates verified against the CA file
        (or the system's CAs), host names checked, the client certificate if given."""
        if not self.tls:
            return None
        try:
            context = ssl.create_default_context(cafile=self.ca_file)
            if self.cert_file:
                context.load_cert_chain(self.cert_file, self.key_file)
        except (ssl.SSLError, OSError) as error:
            raise ValueError(f"cannot load the Kafka TLS files: {error}") from None
        return context

    # ---- per-client settings ----

    def aiokafka_kwargs(self) -> dict:
        """Keyword arguments of aiokafka's AIOKafkaProducer / AIOKafkaConsumer / AIOKafkaAdminClient."""
        kwargs: dict = dict(bootstrap_servers=list(self.brokers), security_protocol=self.security_protocol)
        if self.tls:
            kwargs["ssl_context"] = self.ssl_context()
        if self.sasl:
            kwargs.update(sasl_mechanism=self.sasl_mechanism, sasl_plain_username=self.username,
                          sasl_plain_password=self.password)
        return kwargs

    def kafka_python_kwargs(self) -> dict:
        """Keyword arguments of kafka-python's KafkaProducer / KafkaConsumer / KafkaAdminClient."""
        kwargs: dict = dict(bootstrap_servers=list(self.brokers), security_protocol=self.security_protocol)
        if self.tls:
            kwargs.update(ssl_context=self.ssl_context(), ssl_check_hostname=True)
        if self.sasl:
            kwargs.update(sasl_mechanism=self.sasl_mechanism, sasl_plain_username=self.username,
                          sasl_plain_password=self.password)
        return kwargs

    def librdkafka_config(self) -> dict:
        """Configuration of librdkafka's clients (confluent-kafka's Producer): the simulator's,
        whose per-message cost in C leaves the machine's cores to the workers."""
        config: dict = {"bootstrap.servers": self.bootstrap, "security.protocol": self.security_protocol}
        if self.tls:
            # "probe": the system's CAs, found where the distribution keeps them (the wheel's own
            # OpenSSL does not know the path).
            config.update({"ssl.ca.location": self.ca_file or "probe",
                           "ssl.endpoint.identification.algorithm": "https"})
            if self.cert_file:
                config["ssl.certificate.location"] = self.cert_file
                config["ssl.key.location"] = self.key_file or self.cert_file
        if self.sasl:
            config.update({"sasl.mechanism": self.sasl_mechanism, "sasl.username": self.username,
                           "sasl.password": self.password})
        return config

    def faust_settings(self) -> dict:
        """Faust app settings: the broker list and its credentials (Faust hands them to aiokafka)."""
        import faust

        settings: dict = dict(broker=[f"kafka://{entry}" for entry in self.brokers])
        if self.sasl:
            settings["broker_credentials"] = faust.SASLCredentials(
                username=self.username, password=self.password, mechanism=self.sasl_mechanism,
                ssl_context=self.ssl_context())
        elif self.tls:
            settings["broker_credentials"] = faust.SSLCredentials(self.ssl_context())
        return settings

    # ---- before the first client ----

    def check(self, timeout: float = 10.0) -> list[str]:
        """Return once some bootstrap entry answers a Kafka request over this connection's transport
        and, with SASL, accepts the login; else raise KafkaConnectionError naming each broker and
        its cause. Returns the causes of the entries that did not answer (to warn about)."""
        deadline = time.monotonic() + timeout
        context = self.ssl_context()
        while True:
            failures: list[str] = []
            fatal: list[str] = []
            for entry in self.brokers:
                cause, is_fatal = _probe(self, entry, context, max(0.5, min(3.0, deadline - time.monotonic())))
                if cause is None:
                    return failures
                (fatal if is_fatal else failures).append(f"{entry}: {cause}")
            if fatal:
                raise KafkaConnectionError("cannot use Kafka at " + "; ".join(fatal + failures))
            if time.monotonic() > deadline:
                raise KafkaConnectionError("cannot reach a Kafka broker at " + "; ".join(failures))
            time.sleep(0.2)

    def admin(self, timeout: float = 10.0):
        """A kafka-python admin client over this connection."""
        from kafka import KafkaAdminClient

        return KafkaAdminClient(**self.kafka_python_kwargs(), client_id="livemon-admin",
                                request_timeout_ms=int(timeout * 1000))


def describe_error(error: BaseException, connection: KafkaConnection) -> str:
    """One line for a client's exception: the cause in deployment terms, never a password."""
    from kafka import errors

    name = type(error).__name__
    if isinstance(error, errors.SaslAuthenticationFailedError) or "Authentication" in name:
        return (f"the broker refused the SASL {connection.sasl_mechanism} login of user "
                f"{connection.username!r}: wrong user name or password")
    if isinstance(error, errors.UnsupportedSaslMechanismError):
        return f"the broker does not offer SASL {connection.sasl_mechanism}"
    text = str(error).splitlines()[0] if str(error) else name
    if connection.password:
        text = text.replace(connection.password, "***")
    return f"{name}: {text}"


def _probe(connection: KafkaConnection, entry: str, context: ssl.SSLContext | None,
           timeout: float) -> tuple[str | None, bool]:
    """(None, _) when `entry` answers an ApiVersions request over TCP (and TLS with `context`) and,
    with SASL, accepts the login; else (cause, fatal): a fatal cause is a configuration mistake
    that waiting will not fix."""
    host, port = _split(entry)
    try:
        raw = socket.create_connection((host, port), timeout=timeout)
    except socket.gaierror:
        return "unknown host", False
    except ConnectionRefusedError:
        return "nothing listening", False
    except TimeoutError:
        return f"no answer within {timeout:.1f} s", False
    except OSError as error:
        return error.strerror or str(error), False
    try:
        sock = raw
        if context is not None:
            try:
                sock = context.wrap_socket(raw, server_hostname=host)
            except ssl.SSLCertVerificationError as error:
                return (f"its TLS certificate is not trusted ({error.verify_message}; "
                        f"check --kafka-ca-file)"), True
            except ssl.SSLError as error:
                return _tls_cause(error), True
            except (ConnectionResetError, EOFError, TimeoutError) as error:
                return (f"no TLS handshake ({type(error).__name__}): is it a PLAINTEXT listener?"), True
        # ApiVersions v0: answered before any authentication by every Kafka broker.
        try:
            size = len(_request(sock, 18, 0, b""))
        except ssl.SSLError as error:
            return _tls_cause(error), True
        except TimeoutError:
            return (f"no Kafka answer within {timeout:.1f} s" +
                    ("" if context else ": is it a TLS listener (--kafka-security-protocol SSL)?")), \
                context is None
        except (ConnectionResetError, BrokenPipeError, EOFError):
            if context is None:
                return "it closed the connection: is it a TLS listener (--kafka-security-protocol SSL)?", True
            return "it closed the TLS connection: does it require a client certificate (--kafka-cert-file)?", True
        except ValueError:
            return "it does not speak the Kafka protocol", True
        if not size:
            return "it does not speak the Kafka protocol", True
        if connection.sasl:
            try:
                return _sasl_login(sock, connection), True
            except TimeoutError:
                return f"no answer to the SASL login within {timeout:.1f} s", False
            except (ConnectionResetError, BrokenPipeError, EOFError, ssl.SSLError):
                return ("it closed the connection at the SASL login: does the listener use SASL "
                        "(--kafka-security-protocol)?"), True
            except (ValueError, struct.error, IndexError) as error:
                return f"the SASL login failed: {error}", True
        return None, False
    finally:
        raw.close()


def _request(sock, api_key: int, version: int, body: bytes) -> bytes:
    """Send one request (header v1, client id `livemon`); return the response body (after its
    correlation id)."""
    request = struct.pack(">hhih", api_key, version, 1, len(b"livemon")) + b"livemon" + body
    sock.sendall(struct.pack(">i", len(request)) + request)
    size = struct.unpack(">i", _read(sock, 4))[0]
    if not 4 <= size < 1 << 20:
        raise ValueError("not a Kafka response")
    return _read(sock, size)[4:]


def _string(data: bytes, at: int) -> tuple[str | None, int]:
    length = struct.unpack(">h", data[at:at + 2])[0]
    if length < 0:
        return None, at + 2
    return data[at + 2:at + 2 + length].decode(errors="replace"), at + 2 + length


def _sasl_login(sock, connection: KafkaConnection) -> str | None:
    """SaslHandshake v1, then SaslAuthenticate v0 rounds (PLAIN, or SCRAM with the server's
    signature checked); None when the broker accepts the login, else the cause."""
    import base64
    import hashlib
    import hmac
    import secrets

    mechanism, user, password = connection.sasl_mechanism, connection.username, connection.password or ""
    name = mechanism.encode()
    answer = _request(sock, 17, 1, struct.pack(">h", len(name)) + name)
    error, count = struct.unpack(">hi", answer[:6])
    offered, at = [], 6
    for _ in range(max(0, count)):
        item, at = _string(answer, at)
        offered.append(item)
    if error or mechanism not in offered:
        return f"the broker does not offer SASL {mechanism} (it offers {', '.join(map(str, offered)) or 'none'})"

    def authenticate(token: bytes) -> tuple[str | None, bytes]:
        body = _request(sock, 36, 0, struct.pack(">i", len(token)) + token)
        code = struct.unpack(">h", body[:2])[0]
        message, at = _string(body, 2)
        length = struct.unpack(">i", body[at:at + 4])[0]
        reply = body[at + 4:at + 4 + max(0, length)]
        if code == 58:  # SASL_AUTHENTICATION_FAILED
            return (f"the broker refused the SASL {mechanism} login of user {user!r}: "
                    f"wrong user name or password"), reply
        if code:
            return f"the SASL login failed (error {code}: {message})", reply
        return None, reply

    if mechanism == "PLAIN":
        return authenticate(b"\0" + user.encode() + b"\0" + password.encode())[0]
    digest = "sha256" if mechanism == "SCRAM-SHA-256" else "sha512"
    saslname = user.replace("=", "=3D").replace(",", "=2C")
    client_nonce = secrets.token_urlsafe(18)
    client_first_bare = f"n={saslname},r={client_nonce}"
    cause, server_first = authenticate(f"n,,{client_first_bare}".encode())
    if cause:
        return cause
    fields = dict(item.split("=", 1) for item in server_first.decode().split(",") if "=" in item)
    if not fields.get("r", "").startswith(client_nonce) or "s" not in fields or "i" not in fields:
        return "the broker's SCRAM answer is malformed"
    salted = hashlib.pbkdf2_hmac(digest, password.encode(), base64.b64decode(fields["s"]), int(fields["i"]))
    client_key = hmac.new(salted, b"Client Key", digest).digest()
    without_proof = f"c=biws,r={fields['r']}"
    auth_message = f"{client_first_bare},{server_first.decode()},{without_proof}".encode()
    signature = hmac.new(hashlib.new(digest, client_key).digest(), auth_message, digest).digest()
    proof = base64.b64encode(bytes(a ^ b for a, b in zip(client_key, signature))).decode()
    cause, server_final = authenticate(f"{without_proof},p={proof}".encode())
    if cause:
        return cause
    server_key = hmac.new(salted, b"Server Key", digest).digest()
    expected = b"v=" + base64.b64encode(hmac.new(server_key, auth_message, digest).digest())
    if not hmac.compare_digest(server_final.split(b",")[0], expected):
        return "the broker's SCRAM signature does not match: it does not know this password"
    return None


def _read(sock, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise EOFError("connection closed")
        data += chunk
    return data


def _tls_cause(error: ssl.SSLError) -> str:
    reason = (error.reason or str(error)).upper()
    if "CERTIFICATE_REQUIRED" in reason or "HANDSHAKE_FAILURE" in reason:
        return f"it requires a TLS client certificate ({error.reason}; check --kafka-cert-file)"
    if "UNKNOWN_CA" in reason or "BAD_CERTIFICATE" in reason or "CERTIFICATE_UNKNOWN" in reason:
        return f"it refused our TLS client certificate ({error.reason}; check --kafka-cert-file)"
    if "WRONG_VERSION_NUMBER" in reason or "RECORD_LAYER" in reason or "PACKET_LENGTH" in reason:
        return f"no TLS handshake ({error.reason}): is it a PLAINTEXT listener?"
    return f"TLS failed: {error.reason or error}"


def ensure_topics(connection: KafkaConnection, partitions: int = DEFAULT_PARTITIONS,
                  topics: tuple[str, ...] = ALL_TOPICS, timeout: float = 15.0,
                  warn=lambda line: None) -> dict[str, int]:
    """`livemon.broker.ensure_topics` over a deployed connection: check the brokers (a clear error
    for a wrong CA, certificate or password; `warn` gets each bootstrap entry that did not answer),
    then create the product's missing topics; return {topic: partition count}."""
    from kafka.errors import KafkaError
    from livemon.broker import create_topics

    for skipped in connection.check(timeout):
        warn(f"Kafka bootstrap entry {skipped}; using the others")
    try:
        admin = connection.admin(timeout)
    except KafkaError as error:
        raise KafkaConnectionError(f"cannot use Kafka at {connection.bootstrap}: "
                                   f"{describe_error(error, connection)}") from None
    return create_topics(admin, partitions, topics, timeout)
