"""Named operators: a file mapping each operator's name to a salted hash of their token, so every
control action records who did it.

The file (`LIVEMON_OPERATORS_FILE`) is TOML or JSON:

    # operators.toml
    [operators]
    lin = "scrypt$16384$8$1$<salt, base64>$<hash, base64>"

    {"operators": {"lin": "scrypt$16384$8$1$...$..."}}

A token is `<name>.<secret>` (`livemon operators add NAME` makes one and writes its hash line):
the name picks the hash, so a request costs one scrypt whatever the number of operators, and the
secret's hash is compared in constant time. The file holds no token: a reader of it cannot act.
It is read again when it changes, so an operator added or removed counts without a restart.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import secrets
import sys
import threading
from pathlib import Path

import click

OPERATORS_ENV = "LIVEMON_OPERATORS_FILE"
NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
SHARED_NAME = "operator"          # who acts with the single shared token
MAX_OPERATORS = 10_000
MAX_FILE_BYTES = 4 * 1024 * 1024
# scrypt at the cost RFC 7914 suggests for interactive logins: 16 MiB and some 50 ms per check.
SCRYPT_N, SCRYPT_R, SCRYPT_P, KEY_BYTES, SALT_BYTES = 2 ** 14, 8, 1, 32, 16
MAX_N = 2 ** 20                   # a hash line asking for more memory than this is refused
VERIFIED_KEPT = 256               # recently verified tokens remembered (as keyed digests), per file version


class OperatorsError(ValueError):
    """An operators file that cannot be used: the message says which line and why."""


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def hash_secret(secret: str, *, salt: bytes | None = None, n: int = SCRYPT_N, r: int = SCRYPT_R,
                p: int = SCRYPT_P) -> str:
    """`scrypt$N$r$p$salt$hash` of a secret (salt and hash in base64), with a new random salt."""
    salt = secrets.token_bytes(SALT_BYTES) if salt is None else salt
    key = hashlib.scrypt(secret.encode(), salt=salt, n=n, r=r, p=p, dklen=KEY_BYTES, maxmem=256 * 1024 * 1024)
    return f"scrypt${n}${r}${p}${_b64(salt)}${_b64(key)}"


def parse_hash(line: str, where: str = "hash") -> tuple[int, int, int, bytes, bytes]:
    """(N, r, p, salt, key) of a hash line; OperatorsError when it is not one."""
    parts = line.split("$") if isinstance(line, str) else []
    try:
        if len(parts) != 6 or parts[0] != "scrypt":
            raise ValueError
        n, r, p = int(parts[1]), int(parts[2]), int(parts[3])
        salt, key = base64.b64decode(parts[4], validate=True), base64.b64decode(parts[5], validate=True)
    except ValueError:
        raise OperatorsError(f"{where}: not a hash line of `livemon operators hash` "
                             "(scrypt$N$r$p$salt$hash)") from None
    if not (2 <= n <= MAX_N and n & (n - 1) == 0 and 1 <= r <= 32 and 1 <= p <= 16) or len(salt) < 8 or len(key) < 16:
        raise OperatorsError(f"{where}: scrypt parameters out of range (N a power of two up to {MAX_N}, "
                             "salt of 8 bytes or more, key of 16 or more)")
    return n, r, p, salt, key


def check_secret(secret: str, line: str) -> bool:
    n, r, p, salt, key = parse_hash(line)
    got = hashlib.scrypt(secret.encode(), salt=salt, n=n, r=r, p=p, dklen=len(key), maxmem=256 * 1024 * 1024)
    return hmac.compare_digest(got, key)


def new_token(name: str) -> str:
    if not NAME_RE.match(name or ""):
        raise OperatorsError(f"an operator name is 1 to 64 of A-Z a-z 0-9 _ - (not {name!r})")
    return f"{name}.{secrets.token_urlsafe(32)}"


def read_file(path: str | Path) -> dict[str, str]:
    """name -> hash line, checked; OperatorsError naming the file and the entry otherwise."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise OperatorsError(f"{OPERATORS_ENV} {path}: {error.strerror or error}") from None
    if len(raw) > MAX_FILE_BYTES:
        raise OperatorsError(f"{OPERATORS_ENV} {path}: larger than {MAX_FILE_BYTES} bytes")
    data = _decode(path, raw)
    table = data.get("operators") if isinstance(data, dict) else None
    if not isinstance(table, dict) or set(data) != {"operators"}:
        raise OperatorsError(f"{OPERATORS_ENV} {path}: expected one table `operators` of name = hash line")
    if len(table) > MAX_OPERATORS:
        raise OperatorsError(f"{OPERATORS_ENV} {path}: more than {MAX_OPERATORS} operators")
    out = {}
    for name, line in table.items():
        if not NAME_RE.match(name):
            raise OperatorsError(f"{path}: operator name {name!r} is not 1 to 64 of A-Z a-z 0-9 _ -")
        if name == SHARED_NAME:
            raise OperatorsError(f"{path}: {SHARED_NAME!r} is the name of the shared token; choose another")
        parse_hash(line, f"{path}: operator {name}")
        out[name] = line
    return out


def _decode(path: Path, raw: bytes):
    import tomllib

    text = raw.decode("utf-8", errors="replace")
    if path.suffix.lower() == ".json" or (path.suffix.lower() != ".toml" and text.lstrip().startswith("{")):
        try:
            return json.loads(text)
        except ValueError as error:
            raise OperatorsError(f"{OPERATORS_ENV} {path}: not JSON: {error}") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise OperatorsError(f"{OPERATORS_ENV} {path}: not TOML: {error}") from None


def write_file(path: str | Path, operators: dict[str, str]) -> None:
    """Write the operators file (JSON for a .json name, else TOML), readable by its owner only,
    replacing the old one at once."""
    path = Path(path)
    if path.suffix.lower() == ".json":
        text = json.dumps({"operators": dict(sorted(operators.items()))}, indent=2) + "\n"
    else:
        text = ("# livemon operators: name = scrypt hash of the token (livemon operators add NAME)\n[operators]\n"
                + "".join(f'{name} = "{line}"\n' for name, line in sorted(operators.items())))
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


class Operators:
    """Who a control token belongs to: the shared token is `operator`, a named token `<name>.<secret>`
    is checked against the file's hash for that name. The file is read again when it changes; a
    file that became unreadable keeps the last good list (and says so in the log)."""

    shared_name = SHARED_NAME

    def __init__(self, shared_token: str | None, path: str | Path | None = None):
        self.shared = shared_token
        self.path = Path(path) if path else None
        self._stamp = None
        self._hashes: dict[str, str] = {}
        self._verified: dict[bytes, str] = {}
        self._key = secrets.token_bytes(32)
        self._lock = threading.Lock()
        self._dummy = hash_secret(secrets.token_urlsafe(16))
        if self.path is not None:
            self._hashes = read_file(self.path)   # a bad file stops the start, saying why
            self._stamp = self._stat()

    def _stat(self):
        try:
            st = self.path.stat()
        except OSError:
            return None
        return st.st_mtime_ns, st.st_size, st.st_ino

    def _refresh(self) -> None:
        stamp = self._stat()
        if stamp == self._stamp:
            return
        import logging
        try:
            hashes = read_file(self.path)
        except OperatorsError as error:
            logging.getLogger(__name__).warning("operators file not reloaded, the last good one holds: %s", error)
            self._stamp = stamp
            return
        with self._lock:
            self._hashes, self._stamp, self._verified = hashes, stamp, {}

    @property
    def names(self) -> list[str]:
        return sorted(self._hashes)

    def who(self, token: str) -> str | None:
        """The operator a token belongs to, or None. Constant time for the shared token; one scrypt
        for a named one (then remembered as a keyed digest until the file changes)."""
        if not token or not token.isascii():
            return None
        if self.shared is not None and hmac.compare_digest(token.encode(), self.shared.encode()):
            return SHARED_NAME
        if self.path is None:
            return None
        self._refresh()
        digest = hmac.new(self._key, token.encode(), hashlib.sha256).digest()
        known = self._verified.get(digest)
        if known is not None:
            return known
        name, dot, secret = token.partition(".")
        line = self._hashes.get(name) if dot else None
        # An unknown name costs a scrypt too: timing tells nothing about which names exist.
        ok = check_secret(secret, line or self._dummy) and line is not None
        if not ok:
            return None
        with self._lock:
            if len(self._verified) >= VERIFIED_KEPT:
                self._verified.clear()
            self._verified[digest] = name
        return name


# ---- the command line ---------------------------------------------------------------------------

@click.group()
def operators():
    """Named operators: tokens whose actions on the control-room page record who did them."""


def _file_option(required: bool):
    return click.option("--file", "path", envvar=OPERATORS_ENV, required=required, type=click.Path(dir_okay=False),
                        help=f"The operators file (TOML, or JSON for a .json name) [env: {OPERATORS_ENV}].")


@operators.command("add")
@click.argument("name")
@_file_option(True)
def add(name, path):
    """Make a new token for NAME, write its hash to the operators file (created if missing; an
    operator of that name gets a new token) and print the token once."""
    try:
        token = new_token(name)
        held = read_file(path) if Path(path).exists() else {}
        if name == SHARED_NAME:
            raise OperatorsError(f"{SHARED_NAME!r} is the name of the shared token; choose another")
        if name not in held and len(held) >= MAX_OPERATORS:
            raise OperatorsError(f"at most {MAX_OPERATORS} operators")
        held[name] = hash_secret(token.partition(".")[2])
        write_file(path, held)
    except OperatorsError as error:
        raise click.ClickException(str(error)) from None
    click.echo(f"operator {name} written to {path}; their token (shown once, give it to them only):", err=True)
    click.echo(token)


@operators.command("remove")
@click.argument("name")
@_file_option(True)
def remove(name, path):
    """Remove NAME from the operators file: their token stops working."""
    try:
        held = read_file(path)
        if name not in held:
            raise OperatorsError(f"no operator {name!r} in {path}")
        del held[name]
        write_file(path, held)
    except OperatorsError as error:
        raise click.ClickException(str(error)) from None
    click.echo(f"operator {name} removed from {path}", err=True)


@operators.command("hash")
@click.argument("name")
def hash_command(name):
    """Make a new token for NAME and print it with the line to add under [operators] (nothing is written)."""
    try:
        token = new_token(name)
    except OperatorsError as error:
        raise click.ClickException(str(error)) from None
    click.echo(f"token: {token}")
    click.echo(f'line:  {name} = "{hash_secret(token.partition(".")[2])}"')


@operators.command("list")
@_file_option(True)
def list_command(path):
    """The operators' names in the file."""
    try:
        names = sorted(read_file(path))
    except OperatorsError as error:
        raise click.ClickException(str(error)) from None
    click.echo("\n".join(names) if names else "(none)", file=sys.stdout)
