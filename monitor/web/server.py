"""The control-room web app: pages, JSON and server-sent-event API, control actions.

Mount it on a worker's aiohttp app with `add_routes(app, hub, token=...)`, or serve it alone with
`build_web_app(hub, token=...)`. Viewing needs nothing; control actions need the token (header
`Authorization: Bearer <token>` or `X-Livemon-Token`), compared in constant time.
"""

from __future__ import annotations

import asyncio
import hmac
import os
import re
import secrets
from pathlib import Path

import orjson
from aiohttp import web

from livemon.web.hub import ACTIONS, ControlRoomHub

STATIC = Path(__file__).parent / "static"
MAX_ACTION_BYTES = 4096
STREAM_INTERVAL = 1.0        # an SSE frame at least this often (the page promises 2 s)
ID_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
RULE_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")
TOKEN_ENV = "LIVEMON_TOKEN"

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

HUB_KEY = web.AppKey("livemon_control_room_hub", ControlRoomHub)
TOKEN_KEY = web.AppKey("livemon_control_token", str)
STREAMS_KEY = web.AppKey("livemon_control_streams", set)


def control_token(configured: str | None = None) -> tuple[str, bool]:
    """The token for control actions: the configured one (option or $LIVEMON_TOKEN), else a new
    random one. Returns (token, generated); the caller prints a generated token once at start."""
    token = configured or os.environ.get(TOKEN_ENV)
    if token:
        return token, False
    return secrets.token_urlsafe(24), True


def _harden(headers, csp: str = CSP):
    headers.setdefault("Content-Security-Policy", csp)
    for name, value in SECURITY_HEADERS.items():
        headers.setdefault(name, value)


def json_response(data, status=200):
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json",
                        headers={"Cache-Control": "no-store"})


def json_error(status: int, message: str):
    return json_response({"error": message}, status)


# ---- pages and static files ---------------------------------------------------------------------

def _file_response(path: Path, cache: str = "no-cache"):
    return web.Response(body=path.read_bytes(), headers={"Content-Type": CONTENT_TYPES.get(path.suffix, "application/octet-stream"),
                                                         "Cache-Control": cache})


async def page_grid(request):
    return _file_response(STATIC / "index.html")


async def page_room(request):
    if not ID_RE.match(request.match_info["room_id"]):
        raise web.HTTPNotFound()
    return _file_response(STATIC / "room.html")


async def page_shows(request):
    return _file_response(STATIC / "shows.html")


async def static_file(request):
    # Only files that exist under static/: no path traversal.
    name = request.match_info["path"]
    path = (STATIC / name).resolve()
    if STATIC.resolve() not in path.parents or not path.is_file():
        raise web.HTTPNotFound()
    return _file_response(path)


async def page_review(request):
    from livemon.recording.review import ReviewError, build_review

    hub = request.app[HUB_KEY]
    if hub.recorder is None:
        raise web.HTTPNotFound(text="nothing is recorded here")
    compare = request.query.get("compare") or None
    try:
        html, csp = await asyncio.to_thread(build_review, hub.recorder, request.match_info["show"], compare)
    except ReviewError as error:
        raise web.HTTPNotFound(text=str(error))
    response = web.Response(text=html, content_type="text/html", charset="utf-8")
    response.headers["Content-Security-Policy"] = csp
    return response


# ---- JSON API -----------------------------------------------------------------------------------

async def api_rooms(request):
    return json_response(request.app[HUB_KEY].grid())


async def api_room(request):
    since = request.query.get("since")
    view = request.app[HUB_KEY].room_view(request.match_info["room_id"], float(since) if since else None)
    if view is None:
        return json_error(404, "no such room")
    return json_response(view)


async def api_alerts(request):
    return json_response(request.app[HUB_KEY].alerts_view())


async def api_shows(request):
    hub = request.app[HUB_KEY]
    shows = await asyncio.to_thread(hub.recorder.shows) if hub.recorder is not None else []
    return json_response({"shows": shows})


async def api_stream(request):
    """Server-sent events: `grid` every step (and at least every second), and `room` with the new
    chart points and alert lists when `?room=` names a room."""
    hub: ControlRoomHub = request.app[HUB_KEY]
    room_id = request.query.get("room")
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store",
                                           "X-Accel-Buffering": "no",
                                           "Content-Security-Policy": CSP, **SECURITY_HEADERS})
    await response.prepare(request)
    streams = request.app[STREAMS_KEY]
    streams.add(response)
    version, since = -1, None
    try:
        await response.write(b"retry: 2000\n\n")
        while response in streams:
            version = await hub.wait_change(version, STREAM_INTERVAL)
            frames = [b"event: grid\ndata: " + orjson.dumps(hub.grid()) + b"\n\n"]
            if room_id:
                view = hub.room_view(room_id, since)
                if view is not None:
                    if view["points"]:
                        since = view["points"][-1][0]
                    frames.append(b"event: room\ndata: " + orjson.dumps(view) + b"\n\n")
            await response.write(b"".join(frames))
            await asyncio.sleep(0.25)   # at most four frames a second whatever the number of workers
    except (ConnectionResetError, asyncio.CancelledError):
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
    by = body.get("by") or "operator"
    if not isinstance(by, str) or len(by) > 64 or not by.isprintable():
        raise ValueError("by must be a short name")
    out["by"] = by
    if action == "silence":
        duration = body.get("duration", 3600)
        if not isinstance(duration, (int, float)) or not 60 <= duration <= 86400:
            raise ValueError("duration must be 60 to 86400 seconds")
        out["duration"] = duration
    return out


async def api_action(request):
    if request.content_length is not None and request.content_length > MAX_ACTION_BYTES:
        return json_error(413, f"body larger than {MAX_ACTION_BYTES} bytes")
    if not token_ok(_token_of(request), request.app[TOKEN_KEY]):
        return json_error(401, "a valid control token is required")
    raw = b""
    while len(raw) <= MAX_ACTION_BYTES:   # a chunked body arrives in pieces: stop past the limit
        piece = await request.content.read(MAX_ACTION_BYTES + 1 - len(raw))
        if not piece:
            break
        raw += piece
    if len(raw) > MAX_ACTION_BYTES:
        return json_error(413, f"body larger than {MAX_ACTION_BYTES} bytes")
    try:
        action = validate_action(orjson.loads(raw))
    except orjson.JSONDecodeError:
        return json_error(400, "the body is not JSON")
    except ValueError as error:
        return json_error(400, str(error))
    try:
        record = await request.app[HUB_KEY].act(action)
    except Exception as error:
        return json_error(503, f"could not publish the action: {type(error).__name__}")
    return json_response({"ok": True, "action": record}, 202)


# ---- assembly -----------------------------------------------------------------------------------

ROUTES = [
    ("GET", "/", page_grid),
    ("GET", "/room/{room_id}", page_room),
    ("GET", "/review/", page_shows),
    ("GET", "/review/{show}", page_review),
    ("GET", "/static/{path:.+}", static_file),
    ("GET", "/api/rooms", api_rooms),
    ("GET", "/api/rooms/{room_id}", api_room),
    ("GET", "/api/alerts", api_alerts),
    ("GET", "/api/shows", api_shows),
    ("GET", "/api/stream", api_stream),
    ("POST", "/api/actions", api_action),
]


@web.middleware
async def harden_everything(request, handler):
    try:
        response = await handler(request)
    except web.HTTPException as error:
        _harden(error.headers)
        raise
    if not response.prepared:
        _harden(response.headers)
    return response


def add_routes(app: web.Application, hub: ControlRoomHub, *, token: str) -> None:
    """Mount the control room on an existing app (before it starts). The hub's Kafka consumption
    is the caller's: `await hub.start(bootstrap)` on startup, `await hub.stop()` on cleanup."""
    if not token:
        raise ValueError("a control token is required (see control_token())")
    app[HUB_KEY] = hub
    app[TOKEN_KEY] = token
    app[STREAMS_KEY] = set()
    app.middlewares.append(harden_everything)   # the app's own 404s and 405s too
    for method, path, handler in ROUTES:
        app.router.add_route(method, path, handler)

    async def close_streams(app):
        app[STREAMS_KEY].clear()   # open event streams end within a second
    app.on_shutdown.append(close_streams)


def build_web_app(hub: ControlRoomHub, *, token: str, bootstrap_servers: str | None = None) -> web.Application:
    """A standalone app serving the control room; with `bootstrap_servers` it also runs the hub's
    Kafka consumption for its lifetime."""
    app = web.Application(client_max_size=64 * 1024)
    add_routes(app, hub, token=token)
    if bootstrap_servers:
        async def start(app):
            await hub.start(bootstrap_servers)

        async def stop(app):
            await hub.stop()
        app.on_startup.append(start)
        app.on_cleanup.append(stop)
    return app
