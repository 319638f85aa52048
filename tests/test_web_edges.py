"""The HTTP edges of the control room and of the worker app it is mounted on, against real servers:
every error answer is short JSON with the security headers, hostile bytes never reach a log or an
answer, odd names and values are clean 4xx, foreign Host names are refused, token guessing backs off.
"""

import asyncio
import json
import logging
import socket
import threading
import time

import pytest
import requests
from aiohttp import web
from livemon.web import server
from livemon.web.hub import ControlRoomHub

from tests.fixtures.browser import TOKEN, ControlRoomServer, SyntheticShow, free_port

ACK = {"action": "ack", "room_id": "room-snacks", "rule": "cdn_stall_ratio_high"}


@pytest.fixture
def room(tmp_path, monkeypatch):
    monkeypatch.setenv("LIVEMON_WEB_HOSTS", "monitor.example.com")
    control = ControlRoomServer(tmp_path / "data")
    show = SyntheticShow()
    for i in range(3):
        control.feed_step(show.step(show.start + i))
    yield control
    control.close()


def raw(port: int, request: bytes) -> bytes:
    """Send bytes as they are (no client library would send them) and read the whole answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        conn.sendall(request)
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
    return answer


def status_headers_body(answer: bytes) -> tuple[int, dict, bytes]:
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, body


def assert_hardened_error(status: int, headers: dict, body: bytes, expected: int):
    headers = {k.lower(): v for k, v in headers.items()}
    assert status == expected, (status, body)
    assert "default-src 'none'" in headers["content-security-policy"]
    assert headers["x-content-type-options"] == "nosniff" and headers["x-frame-options"] == "DENY"
    assert headers["content-type"].startswith("application/json")
    assert "aiohttp" not in headers.get("server", "") and "Python" not in headers.get("server", "")
    message = json.loads(body)["error"]
    assert isinstance(message, str) and 0 < len(message) <= 200


def get(room, path, **kwargs) -> tuple[int, dict, bytes]:
    answer = requests.get(room.url + path, timeout=5, **kwargs)
    return answer.status_code, dict(answer.headers), answer.content


def test_every_error_answer_is_short_json_with_the_security_headers(room):
    auth = {"Authorization": f"Bearer {TOKEN}"}
    url = room.url
    answers = [
        (requests.get(url + "/nowhere", timeout=5), 404),
        (requests.get(url + "/api/rooms/nope", timeout=5), 404),
        (requests.get(url + "/review/no-such-show", timeout=5), 404),
        (requests.get(url + "/room/<script>", timeout=5), 404),
        (requests.get(url + "/api/rooms/room-snacks?since=abc", timeout=5), 400),
        (requests.get(url + "/api/rooms/room-snacks?since=nan", timeout=5), 400),
        (requests.get(url + "/api/rooms?rooms=<script>", timeout=5), 400),
        (requests.get(url + "/api/shows?limit=abc", timeout=5), 400),
        (requests.get(url + "/api/shows?limit=100000", timeout=5), 400),
        (requests.get(url + "/api/shows?offset=-1", timeout=5), 400),
        (requests.get(url + "/api/rooms", headers={"Host": "evil.example"}, timeout=5), 421),
        (requests.delete(url + "/api/rooms", timeout=5), 405),
        (requests.post(url + "/api/actions", json=ACK, timeout=5), 401),
        (requests.post(url + "/api/actions", data=b"{" + b" " * 5000 + b"}", headers=auth, timeout=5), 413),
        (requests.post(url + "/api/actions", data=b"{not json", headers=auth, timeout=5), 400),
        (requests.post(url + "/api/rooms", data=b"x" * (70 * 1024), timeout=5), 405),
    ]
    for answer, expected in answers:
        assert_hardened_error(answer.status_code, dict(answer.headers), answer.content, expected)
    assert answers[11][0].headers["Allow"] == "GET"
    ok = requests.get(url + "/api/rooms", timeout=5)
    assert ok.status_code == 200 and ok.headers["Server"] == "livemon" and ok.headers["X-Content-Type-Options"] == "nosniff"


def test_a_non_ascii_token_is_a_401_not_a_500(room):
    body = json.dumps(ACK).encode()
    for header in (b"X-Livemon-Token: \xff", b"Authorization: Bearer \xff\xfe-token", b"X-Livemon-Token: \xc3\xbc"):
        answer = raw(room.port, b"POST /api/actions HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n" + header +
                     b"\r\nContent-Type: application/json\r\nContent-Length: " + str(len(body)).encode() +
                     b"\r\n\r\n" + body)
        assert_hardened_error(*status_headers_body(answer), 401)
    assert room.published == []


def test_static_names_are_checked_against_the_shipped_files(room):
    assert get(room, "/static/app.css")[0] == 200
    for name in ("app.css%00", "app.css%00.js", "a" * 300, "%2e%2e/server.py", "vendor/../../server.py",
                 "vendor/" + "b" * 300 + ".js", "app.css/"):
        assert_hardened_error(*get(room, "/static/" + name), 404)


def test_a_malformed_header_line_is_answered_and_logged_without_its_bytes(room, caplog):
    secret = "tok-in-a-bad-header-line-0123456789"
    caplog.set_level(logging.DEBUG)
    for line in (f"X-Livemon-Token: {secret}\x00", f"X-Livemon-Token {secret}", f"X-Livemon-Token: {secret}" + "a" * 9000):
        answer = raw(room.port, b"GET /api/rooms HTTP/1.1\r\nHost: 127.0.0.1\r\n" + line.encode("latin-1") +
                     b"\r\nConnection: close\r\n\r\n")
        assert secret.encode() not in answer
        assert_hardened_error(*status_headers_body(answer), 400)
    server_lines = [r for r in caplog.records if r.name == "aiohttp.server"]
    assert len(server_lines) == 3
    for record in server_lines:
        text = caplog.text
        assert record.exc_info is None and "\n" not in record.getMessage()
        assert "BadHttpMessage" in record.getMessage() or "LineTooLong" in record.getMessage()
        assert secret not in text and "X-Livemon-Token" not in text


@pytest.mark.parametrize("host", ["localhost", "localhost:6066", "127.0.0.1", "127.0.0.1:80", "[::1]:6066",
                                  "LOCALHOST.", "monitor.example.com", "monitor.example.com:443"])
def test_loopback_and_configured_host_names_are_served(room, host):
    assert get(room, "/api/rooms", headers={"Host": host})[0] == 200


@pytest.mark.parametrize("host", ["evil.example", "localhost.evil.example", "127.0.0.1.nip.io", "10.1.2.3",
                                  "monitor.example.com.evil.example", "[::2]:6066", ""])
def test_other_host_names_are_misdirected_requests(room, host):
    # A DNS-rebinding page resolves its own name to us: the browser then sends that name as Host.
    for path in ("/api/rooms", "/", "/api/stream"):
        assert_hardened_error(*get(room, path, headers={"Host": host}), 421)


def test_wrong_tokens_back_off_per_client(room):
    url = room.url + "/api/actions"
    answers = [requests.post(url, json=ACK, headers={"X-Livemon-Token": f"guess-{i}"}, timeout=5) for i in range(50)]
    codes = [a.status_code for a in answers]
    assert codes[:5] == [401] * 5 and set(codes[5:]) == {429}, codes
    blocked = answers[5]
    assert_hardened_error(blocked.status_code, dict(blocked.headers), blocked.content, 429)
    wait = int(blocked.headers["Retry-After"])
    assert 1 <= wait <= 300
    # While blocked, even the right token is refused: guessing learns nothing.
    assert requests.post(url, json=ACK, headers={"X-Livemon-Token": TOKEN}, timeout=5).status_code == 429
    assert room.published == []
    time.sleep(wait + 0.2)
    assert requests.post(url, json=ACK, headers={"X-Livemon-Token": TOKEN}, timeout=5).status_code == 202
    # The right token cleared the count: a typo afterwards is a plain 401 again.
    assert requests.post(url, json=ACK, headers={"X-Livemon-Token": "typo"}, timeout=5).status_code == 401


def test_token_back_off_doubles_and_is_bounded():
    now = [0.0]
    guard = server.TokenGuard(free=2, max_wait=8.0, clock=lambda: now[0])
    waits = []
    for _ in range(8):
        waits.append(guard.wait("a"))
        guard.failed("a")
    assert waits == [0, 0, 1, 2, 4, 8, 8, 8]
    assert guard.wait("b") == 0          # per client
    now[0] += 8
    assert guard.wait("a") == 0
    guard.succeeded("a")
    assert guard.failures == {}


class WorkerLikeApp:
    """The worker's own routes (as agents/runtime.py builds them) with the control room mounted."""

    def __init__(self, tmp_path):
        async def metrics(request):
            return web.Response(text="livemon_up 1\n")

        async def broken(request):
            raise RuntimeError("secret detail 0xdeadbeef")

        app = web.Application(client_max_size=64 * 1024)
        app.router.add_get("/metrics", metrics)
        app.router.add_get("/healthz", broken)
        server.add_routes(app, ControlRoomHub(), token=TOKEN)
        self.port = free_port()
        self.loop = asyncio.new_event_loop()
        self.runner = web.AppRunner(app, access_log=None)

        async def start():
            await self.runner.setup()
            await web.TCPSite(self.runner, "127.0.0.1", self.port).start()
        threading.Thread(target=self.loop.run_forever, daemon=True).start()
        asyncio.run_coroutine_threadsafe(start(), self.loop).result(10)

    def close(self):
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)


def test_the_worker_routes_are_hardened_too(tmp_path, caplog):
    worker = WorkerLikeApp(tmp_path)
    try:
        url = f"http://127.0.0.1:{worker.port}"
        ok = requests.get(url + "/metrics", timeout=5)
        assert ok.status_code == 200 and "default-src 'none'" in ok.headers["Content-Security-Policy"]
        assert ok.headers["Server"] == "livemon"
        rebound = requests.get(url + "/metrics", headers={"Host": "attacker.example"}, timeout=5)
        assert_hardened_error(rebound.status_code, dict(rebound.headers), rebound.content, 421)
        caplog.set_level(logging.INFO)
        failed = requests.get(url + "/healthz?q=request-bytes", timeout=5)
        assert_hardened_error(failed.status_code, dict(failed.headers), failed.content, 500)
        assert b"deadbeef" not in failed.content
        lines = [r for r in caplog.records if r.name == "livemon.web.server"]
        assert [r.getMessage() for r in lines] == ["500 on GET /healthz: RuntimeError"]
        assert lines[0].exc_info is None and "request-bytes" not in caplog.text
    finally:
        worker.close()
