"""The control-room web app: pages, JSON and server-sent-event API, control actions.

Mount it on a worker's aiohttp app with `add_routes(app, hub, token=...)`, or serve it alone with
`build_web_app(hub, token=...)`. Viewing needs nothing; control actions need a token (header
`Authorization: Bearer <token>` or `X-Livemon-Token`): the shared one, compared in constant time, or
a named operator's from the operators file (`livemon.web.operators`), and every action records the
name of whoever sent it (`operator` for the shared token).

`add_routes` also hardens the whole app it is mounted on (the worker's /metrics, /healthz and /livez
too): security headers on every answer, short JSON error bodies, an allow-list of Host names, and
aiohttp's own logger kept free of request bytes.
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import ipaddress
import logging
import math
import os
import re
import secrets
import time
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from urllib.parse import quote

import orjson
from aiohttp import web

from livemon import catalogue
from livemon.web.hub import ACTIONS, SORT_KEYS, ControlRoomHub, GridView, target_metrics
from livemon.web.operators import OPERATORS_ENV, Operators

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
# Static files are served from this fixed list only: an odd name (NUL, 300 characters, "..") is a 404.
STATIC_FILES = {p.relative_to(STATIC).as_posix(): p for p in STATIC.rglob("*") if p.is_file()}
MAX_ACTION_BYTES = 4096
STREAM_INTERVAL = 1.0        # an SSE frame at least this often (the page promises 2 s)
ID_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
RULE_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")
TOKEN_ENV = "LIVEMON_TOKEN"
MIN_TOKEN_LENGTH = 32
MAX_ROOMS_ASKED = 50         # `?rooms=` ids a grid request may add to the top rooms
SHOWS_PAGE = 100             # /api/shows default page size
MAX_SHOWS_PAGE = 1000
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})

# Nothing inline, nothing from elsewhere: scripts, styles and data come from this origin only.
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
}
CONTENT_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                 ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml"}


@dataclass(frozen=True)
class WebSettings:
    """Limits of the web app; `from_env()` reads the LIVEMON_WEB_* variables over these defaults."""
    max_streams: int = 100            # concurrent /api/stream clients; one more gets 503 + Retry-After
    write_timeout: float = 10.0       # a stream client that takes no frame for this long is dropped
    grid_rooms: int = 100             # rooms in a grid frame (most online first), plus those asked for
    allowed_hosts: frozenset = frozenset()   # Host names accepted beside the loopback ones
    rules_file: str | None = None     # alert rules (or alerting.yml) whose thresholds colour the tiles
    targets_file: str | None = None   # targets.toml: GMV, online, conversion per room or show
    operators_file: str | None = None  # named operators: name -> scrypt hash of their token

    @classmethod
    def from_env(cls, environ=os.environ) -> WebSettings:
        def number(name, kind, default, low):
            raw = environ.get(name)
            if raw in (None, ""):
                return default
            try:
                value = kind(raw)
            except ValueError:
                value = None
            if value is None or not value >= low:
                raise ValueError(f"{name} must be a number of at least {low}, not {raw!r}")
            return value
        hosts = frozenset(h.strip().lower().rstrip(".") for h in environ.get("LIVEMON_WEB_HOSTS", "").split(",")
                          if h.strip())
        return cls(max_streams=number("LIVEMON_WEB_MAX_STREAMS", int, cls.max_streams, 1),
                   write_timeout=number("LIVEMON_WEB_WRITE_TIMEOUT", float, cls.write_timeout, 0.1),
                   grid_rooms=number("LIVEMON_WEB_GRID_ROOMS", int, cls.grid_rooms, 1),
                   allowed_hosts=hosts,
                   # The worker's own alerting config unless the page is told otherwise.
                   rules_file=environ.get("LIVEMON_WEB_RULES") or environ.get("LIVEMON_ALERTS_CONFIG") or None,
                   targets_file=environ.get("LIVEMON_WEB_TARGETS") or None,
                   operators_file=environ.get(OPERATORS_ENV) or None)


# ---- colour lines and targets -------------------------------------------------------------------

TARGET_FIELDS = {"gmv": (0.01, 1e12), "online": (1, 1e9), "conversion": (1e-6, 1.0), "minutes": (1, 1440)}


def rule_thresholds(path: str | Path | None) -> dict[str, dict]:
    """Per room metric, the colour lines of its threshold alert rule: red past the fire threshold,
    amber past the clear line (the rule's hysteresis). Several rules on one metric: the most
    sensitive. An unreadable file gives none (the alerting service reports its own errors)."""
    from livemon.alerting.cli import default_config
    from livemon.alerting.config import load_config

    path = Path(path) if path else default_config()  # the shipped rule set
    if path is None or not path.exists():
        return {}
    try:
        rules = load_config(path).rules
    except Exception as error:  # noqa: BLE001 - the page still works, uncoloured by rules
        log.warning("no rule thresholds for the tiles from %s: %s", path, error)
        return {}
    out: dict[str, dict] = {}
    for rule in rules:
        if rule.scope != "room" or rule.threshold is None:
            continue
        line = {"op": rule.op, "crit": rule.threshold, "warn": rule.clear, "rule": rule.name, "severity": rule.severity}
        held = out.get(rule.metric)
        upward = rule.op in (">", ">=")
        if held is None or (rule.threshold < held["crit"] if upward else rule.threshold > held["crit"]):
            out[rule.metric] = line
    return out


def check_target(values, where: str, partial: bool = False) -> dict:
    """A target's fields, each a number in its range; with `partial`, None removes a field."""
    if not isinstance(values, dict):
        raise ValueError(f"{where}: a target is a table of {', '.join(TARGET_FIELDS)}")
    out = {}
    for name, value in values.items():
        if name not in TARGET_FIELDS:
            raise ValueError(f"{where}: unknown target {name!r} (known: {', '.join(TARGET_FIELDS)})")
        if value is None and partial:
            out[name] = None
            continue
        low, high = TARGET_FIELDS[name]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                or not low <= value <= high:
            raise ValueError(f"{where}: {name} must be a number from {low:g} to {high:g}")
        out[name] = value
    return out


def load_targets(path: str | Path) -> dict:
    """targets.toml: `[default]`, `[rooms.<room_id>]` and `[shows."<room_id>.<show id>"]` tables of
    gmv (CNY, the show's), online, conversion (0-1) and minutes (planned show length)."""
    import tomllib

    try:
        with open(path, "rb") as file:
            data = tomllib.load(file)
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise ValueError(f"LIVEMON_WEB_TARGETS {path}: {error}") from None
    unknown = set(data) - {"default", "rooms", "shows"}
    if unknown:
        raise ValueError(f"LIVEMON_WEB_TARGETS {path}: unknown table(s) {', '.join(sorted(unknown))}")
    out = {"default": check_target(data.get("default", {}), f"{path} [default]"), "rooms": {}, "shows": {}}
    for table in ("rooms", "shows"):
        for key, values in (data.get(table) or {}).items():
            parts = key.split(".", 1) if table == "shows" else [key]
            if not all(ID_RE.match(p) for p in parts) or (table == "shows" and len(parts) != 2):
                raise ValueError(f"{path} [{table}]: {key!r} is not a "
                                 + ("<room_id>.<show id>" if table == "shows" else "room id"))
            out[table][key] = check_target(values, f"{path} [{table}.{key}]")
    return out


class TokenGuard:
    """Wrong control tokens per client address: after `free` of them, every try waits a back-off
    that doubles with each further failure (1 s, 2 s, ... up to `max_wait`); the right token clears
    the count. Entries are forgotten `forget` seconds after their last failure."""

    def __init__(self, free: int = 5, max_wait: float = 300.0, forget: float = 900.0, clock=time.monotonic):
        self.free, self.max_wait, self.forget, self.clock = free, max_wait, forget, clock
        self.failures: dict[str, tuple[int, float]] = {}   # client -> (count, time of the last failure)

    def wait(self, client: str) -> float:
        """Seconds this client must still wait before its next try (0: it may try now)."""
        count, last = self.failures.get(client, (0, 0.0))
        if count < self.free:
            return 0.0
        return max(0.0, last + min(self.max_wait, 2.0 ** (count - self.free)) - self.clock())

    def failed(self, client: str) -> None:
        now = self.clock()
        if len(self.failures) >= 10_000:   # many clients: drop the ones not heard from for a while
            self.failures = {c: f for c, f in self.failures.items() if now - f[1] < self.forget}
        count, last = self.failures.get(client, (0, now))
        self.failures[client] = (count + 1 if now - last < self.forget else 1, now)

    def succeeded(self, client: str) -> None:
        self.failures.pop(client, None)


HUB_KEY = web.AppKey("livemon_control_room_hub", ControlRoomHub)
TOKEN_KEY = web.AppKey("livemon_control_token", str)
STREAMS_KEY = web.AppKey("livemon_control_streams", set)
SETTINGS_KEY = web.AppKey("livemon_web_settings", WebSettings)
GUARD_KEY = web.AppKey("livemon_token_guard", TokenGuard)
OPERATORS_KEY = web.AppKey("livemon_operators", Operators)


def control_token(configured: str | None = None) -> tuple[str, bool]:
    """The token for control actions: the configured one (option or $LIVEMON_TOKEN), else a new
    random one. Returns (token, generated); the caller prints a generated token once at start.
    A configured token shorter than MIN_TOKEN_LENGTH characters, or not printable ASCII, is refused."""
    token = configured or os.environ.get(TOKEN_ENV)
    if token:
        if len(token) < MIN_TOKEN_LENGTH or not (token.isascii() and token.isprintable()):
            raise ValueError(f"the control token (--token or ${TOKEN_ENV}) must be at least {MIN_TOKEN_LENGTH} "
                             "printable ASCII characters; e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))'")
        return token, False
    return secrets.token_urlsafe(32), True


def _harden(headers, csp: str = CSP):
    headers.setdefault("Content-Security-Policy", csp)
    for name, value in SECURITY_HEADERS.items():
        headers.setdefault(name, value)
    headers["Server"] = "livemon"   # no version for a scanner to match


def json_response(data, status=200):
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json",
                        headers={"Cache-Control": "no-store"})


def json_error(status: int, message: str, headers=None):
    response = json_response({"error": message}, status)
    if headers:
        response.headers.update(headers)
    return response


class BadQuery(ValueError):
    """A query parameter that does not parse: a 400 with the message."""


def _query_number(request, name: str, default, kind=float, low=None, high=None):
    raw = request.query.get(name)
    if raw in (None, ""):
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise BadQuery(f"{name} must be a number") from None
    if not math.isfinite(value) or (low is not None and value < low) or (high is not None and value > high):
        raise BadQuery(f"{name} is out of range")
    return value


def _query_rooms(request) -> tuple[str, ...]:
    """The room ids a viewer asked to see whatever their rank: `?rooms=a,b` and `?room=`."""
    asked = [r for r in request.query.get("rooms", "").split(",") if r]
    if request.query.get("room"):
        asked.append(request.query["room"])
    if len(asked) > MAX_ROOMS_ASKED or not all(ID_RE.match(r) for r in asked):
        raise BadQuery(f"rooms must be at most {MAX_ROOMS_ASKED} room ids")
    return tuple(dict.fromkeys(asked))


def _query_view(request) -> tuple[GridView, int]:
    """The grid a reader asked for (sort, filter, page) and its page size."""
    hub, settings = request.app[HUB_KEY], request.app[SETTINGS_KEY]
    sort = request.query.get("sort") or "online"
    if sort not in SORT_KEYS and sort not in hub.tile_names():
        raise BadQuery("sort must be a tile metric, room_id, alert or gmv_progress")
    q = request.query.get("q", "").strip()
    if len(q) > 64 or not q.isprintable():
        raise BadQuery("q must be at most 64 printable characters")
    state = request.query.get("state", "")
    if state not in ("", "alert", "critical"):
        raise BadQuery("state must be alert or critical")
    desc = request.query.get("desc", "1") != "0"
    offset = _query_number(request, "offset", 0, int, 0, 1_000_000)
    limit = _query_number(request, "limit", settings.grid_rooms, int, 1, settings.grid_rooms)
    return GridView(sort, desc, q, state, offset), limit


# ---- pages and static files ---------------------------------------------------------------------

def _file_response(path: Path, cache: str = "no-cache"):
    return web.Response(body=path.read_bytes(), headers={"Content-Type": CONTENT_TYPES.get(path.suffix, "application/octet-stream"),
                                                         "Cache-Control": cache})


async def page_grid(request):
    return _file_response(STATIC / "index.html")


async def page_room(request):
    if not ID_RE.match(request.match_info["room_id"]):
        return json_error(404, "no such room")
    return _file_response(STATIC / "room.html")


async def page_shows(request):
    return _file_response(STATIC / "shows.html")


async def static_file(request):
    path = STATIC_FILES.get(request.match_info["path"])
    if path is None:
        return json_error(404, "no such file")
    return _file_response(path)


async def page_review(request):
    from livemon.recording.review import ReviewError, build_review

    hub = request.app[HUB_KEY]
    if hub.recorder is None:
        return json_error(404, "nothing is recorded here")
    compare = request.query.get("compare") or None
    exports = f"/review/{quote(request.match_info['show'], safe='')}/export.{{fmt}}" + (
        f"?compare={quote(compare, safe='')}" if compare else "")
    try:
        html, csp = await asyncio.to_thread(build_review, hub.recorder, request.match_info["show"], compare,
                                            export_url=exports)
    except ReviewError as error:
        return json_error(404, str(error)[:200])
    response = web.Response(text=html, content_type="text/html", charset="utf-8")
    response.headers["Content-Security-Policy"] = csp
    return response


async def review_export(request):
    """The review's tables (the show summary's, or two shows compared with ?compare=) as one XLSX
    workbook or a zip of CSV files."""
    from livemon.recording.review import ReviewError, export_download

    hub = request.app[HUB_KEY]
    if hub.recorder is None:
        return json_error(404, "nothing is recorded here")
    try:
        body, name, kind = await asyncio.to_thread(export_download, hub.recorder, request.match_info["show"],
                                                   request.match_info["fmt"], request.query.get("compare") or None)
    except ReviewError as error:
        return json_error(404, str(error)[:200])
    return web.Response(body=body, content_type=kind, headers={
        "Content-Disposition": f'attachment; filename="{name}"', "Cache-Control": "no-store"})


# ---- JSON API -----------------------------------------------------------------------------------

async def api_rooms(request):
    view, limit = _query_view(request)
    body = request.app[HUB_KEY].grid_json(limit, _query_rooms(request), view)
    return web.Response(body=body, content_type="application/json", headers={"Cache-Control": "no-store"})


async def api_room(request):
    since = _query_number(request, "since", None)
    view = request.app[HUB_KEY].room_view(request.match_info["room_id"], since)
    if view is None:
        return json_error(404, "no such room")
    return json_response(view)


async def api_room_summary(request):
    """The provisional show summary (SPEC §10, `"provisional": true`) of the room's show going on, as
    its worker last published it (every `summary_interval`)."""
    room_id = request.match_info["room_id"]
    if not ID_RE.match(room_id):
        return json_error(404, "no such room")
    summary = request.app[HUB_KEY].provisional.get(room_id)
    if summary is None:
        return json_error(404, f"no show going on in room {room_id} (or no summary of it yet)")
    return json_response(summary)


async def api_show_summary(request):
    """The recorded summary (SPEC §10) of an ended show, with its `incidents`; the show as
    /api/shows and /review/ name it (its key, or a room id for the room's newest show)."""
    hub = request.app[HUB_KEY]
    name = request.match_info["show"]
    if hub.recorder is None:
        return json_error(404, "nothing is recorded here")
    if len(name) > 200 or not name.isprintable():
        return json_error(404, "no such show")
    show = await asyncio.to_thread(hub.recorder.find_show, name)
    if show is None:
        return json_error(404, "no such show")
    summary = await asyncio.to_thread(hub.recorder.summary, show["key"])
    if summary is None:
        return json_error(404, f"show {show['key']} has no summary yet (it is not over)")
    return json_response({"show_key": show["key"], **summary})


async def api_alerts(request):
    return json_response(request.app[HUB_KEY].alerts_view())


async def api_catalogue(request):
    """The metric catalogue: names, labels (zh, en), formats, charts and tiles the page draws."""
    return json_response(catalogue.as_json())


async def api_shows(request):
    """One page of recorded shows, newest first: `?limit=` (default SHOWS_PAGE) and `?offset=`."""
    limit = _query_number(request, "limit", SHOWS_PAGE, int, 1, MAX_SHOWS_PAGE)
    offset = _query_number(request, "offset", 0, int, 0)
    hub = request.app[HUB_KEY]
    if hub.recorder is None:
        return json_response({"shows": [], "total": 0, "limit": limit, "offset": offset})
    page = await asyncio.to_thread(hub.recorder.shows_page, limit, offset)
    return json_response({**page, "limit": limit, "offset": offset})


async def api_stream(request):
    """Server-sent events: `grid` every step (and at least every second), and `room` with the new
    chart points and alert lists when `?room=` names a room. Frames come from the hub's cache, so
    each is encoded once whatever the number of readers; a reader that does not take a frame within
    the write timeout is cut off, and its unsent bytes with it."""
    hub: ControlRoomHub = request.app[HUB_KEY]
    settings = request.app[SETTINGS_KEY]
    room_id = request.query.get("room")
    asked = _query_rooms(request)
    view, limit = _query_view(request)
    streams = request.app[STREAMS_KEY]
    if len(streams) >= settings.max_streams:
        return json_error(503, "too many live streams; try again shortly", {"Retry-After": "5"})
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store",
                                           "X-Accel-Buffering": "no"})
    streams.add(response)
    version, since, alerts_seen = -1, None, -1
    try:
        await response.prepare(request)
        await response.write(b"retry: 2000\n\n")
        while response in streams:
            version = await hub.wait_change(version, STREAM_INTERVAL)
            frame = hub.grid_frame(limit, asked, view)
            if room_id:
                # The room's alert lists go out again only when an alert record came in.
                alerts_now = hub.alerts_version
                room_frame, newest = hub.room_frame(room_id, since, lists=alerts_now != alerts_seen)
                if room_frame is not None:
                    frame += room_frame
                    since, alerts_seen = newest, alerts_now
            try:
                await asyncio.wait_for(response.write(frame), settings.write_timeout)
            except TimeoutError:
                # close() would keep the unsent bytes until the client reads them: abort frees them now.
                if request.transport is not None:
                    request.transport.abort()
                log.info("dropped an event stream that took no frame for %.0f s", settings.write_timeout)
                break
            await asyncio.sleep(0.25)   # at most four frames a second whatever the number of workers
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        streams.discard(response)
    return response


def _token_of(request) -> str:
    auth = request.headers.get("Authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    return request.headers.get("X-Livemon-Token", "")


def token_ok(given: str, expected: str) -> bool:
    # A token is printable ASCII: anything else (e.g. a raw \xff byte) is simply wrong, not an error.
    if not given.isascii():
        return False
    # Constant time over the bytes, so response timing tells nothing about how much of a guess matched.
    return hmac.compare_digest(given.encode(), expected.encode())


def validate_action(body) -> dict:
    if not isinstance(body, dict):
        raise ValueError("the body must be a JSON object")
    action = body.get("action")
    if action not in ACTIONS:
        raise ValueError(f"action must be one of {', '.join(ACTIONS)}")
    out = {"action": action}
    for field, pattern, required in (("room_id", ID_RE, True), ("rule", RULE_RE, action in ("ack", "silence")),
                                     ("cdn", ID_RE, False), ("to_cdn", ID_RE, action == "failover")):
        value = body.get(field)
        if value in (None, ""):
            if required:
                raise ValueError(f"{field} is required for {action}")
            out[field] = None
        elif not isinstance(value, str) or not pattern.match(value):
            raise ValueError(f"{field} is not a valid name")
        else:
            out[field] = value
    # Who acts is the token's operator (set by the caller), never a name the body gives.
    if action == "silence":
        duration = body.get("duration", 3600)
        if not isinstance(duration, (int, float)) or not 60 <= duration <= 86400:
            raise ValueError("duration must be 60 to 86400 seconds")
        out["duration"] = duration
    return out


async def _authorized_body(request) -> tuple[bytes | None, str | None, web.Response | None]:
    """The body of a control request and who sent it once its token is right: (raw body, operator
    name, None), else (None, None, the error answer). Size limit, back-off after wrong tokens,
    constant-time compare (a named operator's token: one scrypt, off the event loop)."""
    if request.content_length is not None and request.content_length > MAX_ACTION_BYTES:
        return None, None, json_error(413, f"body larger than {MAX_ACTION_BYTES} bytes")
    guard, client = request.app[GUARD_KEY], request.remote or "-"
    wait = guard.wait(client)
    if wait > 0:
        return None, None, json_error(429, "too many wrong tokens; wait before trying again",
                                      {"Retry-After": str(math.ceil(wait))})
    token, operators = _token_of(request), request.app[OPERATORS_KEY]
    if token_ok(token, request.app[TOKEN_KEY]):
        name = operators.shared_name
    elif operators.path is not None and token.isascii() and len(token) <= 200:
        name = await asyncio.to_thread(operators.who, token)
    else:
        name = None
    if name is None:
        guard.failed(client)
        return None, None, json_error(401, "a valid control token is required")
    guard.succeeded(client)
    raw = b""
    while len(raw) <= MAX_ACTION_BYTES:   # a chunked body arrives in pieces: stop past the limit
        piece = await request.content.read(MAX_ACTION_BYTES + 1 - len(raw))
        if not piece:
            break
        raw += piece
    if len(raw) > MAX_ACTION_BYTES:
        return None, None, json_error(413, f"body larger than {MAX_ACTION_BYTES} bytes")
    return raw, name, None


async def api_targets(request):
    """The targets held: from the targets file and operators."""
    return json_response(request.app[HUB_KEY].targets)


def validate_target(body) -> tuple[str, str | None, dict]:
    if not isinstance(body, dict):
        raise ValueError("the body must be a JSON object")
    room_id, show = body.get("room_id"), body.get("show")
    if not isinstance(room_id, str) or not ID_RE.match(room_id):
        raise ValueError("room_id is required")
    if show not in (None, "") and (not isinstance(show, str) or not ID_RE.match(show)):
        raise ValueError("show is not a valid show id")
    values = check_target({k: v for k, v in body.items() if k not in ("room_id", "show", "by")}, "target",
                          partial=True)
    if not values:
        raise ValueError(f"give at least one of {', '.join(TARGET_FIELDS)} (null removes it)")
    return room_id, show or None, values


async def api_set_target(request):
    """An operator sets (or with null removes) a room's or a show's targets; token required."""
    raw, name, error = await _authorized_body(request)
    if error is not None:
        return error
    try:
        room_id, show, values = validate_target(orjson.loads(raw))
        held = request.app[HUB_KEY].set_target(room_id, show, values, by=name)
    except orjson.JSONDecodeError:
        return json_error(400, "the body is not JSON")
    except ValueError as error:
        return json_error(400, str(error))
    log.info("target set for %s%s by %s", room_id, f".{show}" if show else "", name)
    return json_response({"ok": True, "room_id": room_id, "show": show, "target": held})


async def api_thresholds(request):
    """What colours the tiles: the alert rules' lines per metric, the metric each target applies
    to, and the metrics a tile carries."""
    hub = request.app[HUB_KEY]
    return json_response({"lines": hub.thresholds, "targets": target_metrics(), "tile": hub.tile_names()})


async def api_action(request):
    raw, name, error = await _authorized_body(request)
    if error is not None:
        return error
    try:
        action = {**validate_action(orjson.loads(raw)), "by": name}
    except orjson.JSONDecodeError:
        return json_error(400, "the body is not JSON")
    except ValueError as error:
        return json_error(400, str(error))
    try:
        record = await request.app[HUB_KEY].act(action)
    except Exception as error:
        return json_error(503, f"could not publish the action: {type(error).__name__}")
    return json_response({"ok": True, "action": record}, 202)


# ---- the edge: every request and every answer of the app ---------------------------------------

def _host_name(host: str) -> str:
    """The name part of a Host header: no port, no IPv6 brackets, lower case, no trailing dot."""
    if host.startswith("["):
        return host[1:host.find("]")].lower() if "]" in host else ""
    return host.rsplit(":", 1)[0].lower().rstrip(".") if host.count(":") == 1 else host.lower().rstrip(".")


def host_allowed(request, allowed: frozenset) -> bool:
    """Against DNS rebinding: a browser on a hostile page that resolved its own name to us sends
    that name as Host. Accepted: loopback names, configured names, and the address the connection
    came in on (Prometheus and probes reach a worker by its IP)."""
    host = request.headers.get("Host")
    if host is None:      # HTTP/1.0 without Host: not a browser
        return True
    name = _host_name(host)
    if name in LOOPBACK_HOSTS or name in allowed:
        return True
    sock = request.transport.get_extra_info("sockname") if request.transport else None
    try:
        return bool(sock) and ipaddress.ip_address(name) == ipaddress.ip_address(sock[0])
    except ValueError:
        return False


def _route_of(request) -> str:
    """The route pattern a request matched, for logs: never the raw path or query."""
    route = request.match_info.route
    return getattr(route.resource, "canonical", None) or "-"


@web.middleware
async def edge(request, handler):
    """Host allow-list, short JSON bodies for every error, one log line per error answer."""
    settings = request.app[SETTINGS_KEY]
    if not host_allowed(request, settings.allowed_hosts):
        response = json_error(421, "this server does not answer for that host name")
    else:
        try:
            response = await handler(request)
        except BadQuery as error:
            response = json_error(400, str(error))
        except web.HTTPException as error:
            if error.status < 400:
                raise
            # aiohttp's own answers (no route, wrong method, body too large): same shape as ours.
            headers = {k: v for k, v in error.headers.items() if k in ("Allow", "Retry-After")}
            response = json_error(error.status, error.reason.lower(), headers)
        except Exception as error:  # noqa: BLE001 - any bug in a handler is a 500, not a traceback
            log.error("500 on %s %s: %s", request.method, _route_of(request), type(error).__name__)
            return json_error(500, "internal error")
    if response.status >= 400:
        log.info("%d on %s %s", response.status, request.method, _route_of(request))
    return response


class _EdgeRequest(web.Request):
    """Every answer leaves through this hook, including aiohttp's own to a request it could not
    parse (a malformed header line, which never reaches the middlewares): the same security headers,
    and a short JSON body instead of aiohttp's, which quotes the offending request bytes."""

    async def _prepare_hook(self, response):
        await super()._prepare_hook(response)
        if self._match_info is None and response.status >= 400 and isinstance(response, web.Response):
            body = orjson.dumps({"error": HTTPStatus(response.status).phrase.lower()})
            response.body = body
            response.headers["Content-Type"] = "application/json"
            response.headers["Content-Length"] = str(len(body))
        _harden(response.headers)


class _QuietServerLog(logging.Filter):
    """aiohttp logs a request it cannot parse with the exception, whose text quotes the raw bytes
    (a token header included): one line with the exception's name instead."""

    def filter(self, record):
        if record.exc_info and record.exc_info[1] is not None:
            error = record.exc_info[1]
            record.msg, record.args = "%s: %s", (record.getMessage(), type(error).__name__)
            record.exc_info = record.exc_text = None
        return True


QUIET_SERVER_LOG = _QuietServerLog()


# ---- assembly -----------------------------------------------------------------------------------

ROUTES = [
    ("GET", "/", page_grid),
    ("GET", "/room/{room_id}", page_room),
    ("GET", "/review/", page_shows),
    ("GET", "/review/{show}", page_review),
    ("GET", "/review/{show}/export.{fmt:xlsx|zip}", review_export),
    ("GET", "/static/{path:.+}", static_file),
    ("GET", "/api/rooms", api_rooms),
    ("GET", "/api/rooms/{room_id}", api_room),
    ("GET", "/api/rooms/{room_id}/summary", api_room_summary),
    ("GET", "/api/alerts", api_alerts),
    ("GET", "/api/catalogue", api_catalogue),
    ("GET", "/api/shows", api_shows),
    ("GET", "/api/shows/{show}/summary", api_show_summary),
    ("GET", "/api/stream", api_stream),
    ("GET", "/api/thresholds", api_thresholds),
    ("GET", "/api/targets", api_targets),
    ("POST", "/api/targets", api_set_target),
    ("POST", "/api/actions", api_action),
]


def add_routes(app: web.Application, hub: ControlRoomHub, *, token: str, settings: WebSettings | None = None) -> None:
    """Mount the control room on an existing app (before it starts) and harden the whole app. The
    hub's Kafka consumption is the caller's: `await hub.start(bootstrap)` on startup,
    `await hub.stop()` on cleanup. Without `settings`, WebSettings.from_env()."""
    if not token:
        raise ValueError("a control token is required (see control_token())")
    app[HUB_KEY] = hub
    app[TOKEN_KEY] = token
    app[STREAMS_KEY] = set()
    settings = app[SETTINGS_KEY] = settings or WebSettings.from_env()
    app[GUARD_KEY] = TokenGuard()
    app[OPERATORS_KEY] = Operators(None, settings.operators_file)   # a bad file stops the start, saying why
    hub.set_thresholds(rule_thresholds(settings.rules_file))
    if settings.targets_file:
        hub.set_targets(load_targets(settings.targets_file))   # a bad file stops the start, saying why
    app.middlewares.insert(0, edge)   # outermost: the app's own 404s and 405s, and its other routes, too
    # The request class whose prepare hook hardens every answer (see _EdgeRequest).
    app._make_request = functools.partial(app._make_request, _cls=_EdgeRequest)
    server_log = logging.getLogger("aiohttp.server")
    if QUIET_SERVER_LOG not in server_log.filters:
        server_log.addFilter(QUIET_SERVER_LOG)
    for method, path, handler in ROUTES:
        app.router.add_route(method, path, handler)

    async def close_streams(app):
        app[STREAMS_KEY].clear()   # open event streams end within a second
    app.on_shutdown.append(close_streams)


def build_web_app(hub: ControlRoomHub, *, token: str, bootstrap_servers: str | None = None,
                  settings: WebSettings | None = None) -> web.Application:
    """A standalone app serving the control room; with `bootstrap_servers` it also runs the hub's
    Kafka consumption for its lifetime."""
    app = web.Application(client_max_size=64 * 1024)
    add_routes(app, hub, token=token, settings=settings)
    if bootstrap_servers:
        async def start(app):
            await hub.start(bootstrap_servers)

        async def stop(app):
            await hub.stop()
        app.on_startup.append(start)
        app.on_cleanup.append(stop)
    return app
