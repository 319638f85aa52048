"""The control room's HTTP API: open to view, closed to act without the token, hardened headers."""

import json
import socket
import time

import pytest
import requests

import livemon.web.server as server
from tests.fixtures.browser import TOKEN, SyntheticShow

ACK = {"action": "ack", "room_id": "room-snacks", "rule": "cdn_stall_ratio_high", "cdn": "cdn-a"}


def fill(room, seconds=30):
    show = SyntheticShow()
    for i in range(seconds):
        room.feed_step(show.step(show.start + i))
    return show


def test_grid_lists_every_room_sorted_by_online_viewers(control_room):
    show = fill(control_room)
    # A second worker's rooms join the same grid.
    other = SyntheticShow(rooms=("room-books",), seed=9)
    other.size["room-books"] = 5000
    control_room.feed_step(other.step(other.start, worker="worker-2"))
    grid = requests.get(control_room.url + "/api/rooms", timeout=5).json()
    rooms = [t["room_id"] for t in grid["rooms"]]
    assert set(rooms) == set(show.rooms) | {"room-books"}
    online = [t["metrics"]["online"] for t in grid["rooms"]]
    assert online == sorted(online, reverse=True) and rooms[0] == "room-books"
    assert grid["workers"] == ["worker-1", "worker-2"]
    assert all(len(t["spark"]) >= 1 for t in grid["rooms"])


def test_room_view_has_history_and_alerts(control_room):
    show = fill(control_room)
    for rec in show.outage("room-snacks", "cdn-a", show.start + 29):
        control_room.feed_alert(rec)
    view = requests.get(control_room.url + "/api/rooms/room-snacks", timeout=5).json()
    assert len(view["points"]) == 30 and view["columns"][0] == "ts"
    assert view["alert"] == "critical"
    assert view["alerts_active"][0]["rule"] == "cdn_stall_ratio_high"
    assert view["failovers"][0]["to_cdn"] == "cdn-b"
    assert requests.get(control_room.url + "/api/rooms/nope", timeout=5).status_code == 404


def test_actions_need_the_token(control_room):
    url = control_room.url + "/api/actions"
    assert requests.post(url, json=ACK, timeout=5).status_code == 401
    assert requests.post(url, json=ACK, headers={"Authorization": "Bearer wrong"}, timeout=5).status_code == 401
    assert requests.post(url, json=ACK, headers={"X-Livemon-Token": TOKEN[:-1]}, timeout=5).status_code == 401
    assert control_room.published == []
    ok = requests.post(url, json=ACK, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5)
    assert ok.status_code == 202
    failover = {"action": "failover", "room_id": "room-snacks", "cdn": "cdn-a", "to_cdn": "cdn-b", "by": "lin"}
    assert requests.post(url, json=failover, headers={"X-Livemon-Token": TOKEN}, timeout=5).status_code == 202
    [(topic, key, value), (_, _, value2)] = control_room.published
    assert topic == "liveroom.operator" and key == b"room-snacks"
    sent = json.loads(value)
    assert {k: sent[k] for k in ("action", "room_id", "rule", "cdn")} == ACK and sent["ts"] > 0
    # Who acted is the token's operator (the shared token: "operator"), not the name the body claims.
    assert json.loads(value2)["to_cdn"] == "cdn-b" and json.loads(value2)["by"] == "operator"
    # Viewing needs no token.
    assert requests.get(control_room.url + "/api/alerts", timeout=5).status_code == 200


def test_token_is_compared_in_constant_time(control_room, monkeypatch):
    compared = []
    real = server.hmac.compare_digest
    monkeypatch.setattr(server.hmac, "compare_digest", lambda a, b: compared.append((a, b)) or real(a, b))
    requests.post(control_room.url + "/api/actions", json=ACK, headers={"Authorization": "Bearer guess"}, timeout=5)
    assert compared == [(b"guess", TOKEN.encode())]


def test_generated_token_is_long_and_random(monkeypatch):
    monkeypatch.delenv("LIVEMON_TOKEN", raising=False)
    (a, generated), (b, _) = server.control_token(), server.control_token()
    assert generated and a != b and len(a) >= 32
    configured = "c" * 32
    assert server.control_token(configured) == (configured, False)
    monkeypatch.setenv("LIVEMON_TOKEN", "e" * 40)
    assert server.control_token() == ("e" * 40, False)


def test_a_short_or_odd_configured_token_is_refused(monkeypatch):
    monkeypatch.delenv("LIVEMON_TOKEN", raising=False)
    for bad in ("x" * 31, "ü" * 40, "tab\t" * 10):
        with pytest.raises(ValueError, match="at least 32 printable ASCII"):
            server.control_token(bad)
    monkeypatch.setenv("LIVEMON_TOKEN", "short-from-env")
    with pytest.raises(ValueError, match="LIVEMON_TOKEN"):
        server.control_token()


def test_actions_are_validated(control_room):
    url, auth = control_room.url + "/api/actions", {"Authorization": f"Bearer {TOKEN}"}
    bad = [{"action": "reboot", "room_id": "r"}, {"action": "ack", "room_id": "r"},
           {"action": "failover", "room_id": "r"}, {"action": "ack", "room_id": "<script>", "rule": "x"},
           {"action": "silence", "room_id": "r", "rule": "x", "duration": 10 ** 9}, ["ack"]]
    for body in bad:
        answer = requests.post(url, json=body, headers=auth, timeout=5)
        assert answer.status_code == 400, body
    assert requests.post(url, data=b"{not json", headers=auth, timeout=5).status_code == 400
    assert control_room.published == []


def test_request_bodies_are_limited(control_room):
    url, auth = control_room.url + "/api/actions", {"Authorization": f"Bearer {TOKEN}"}
    big = dict(ACK, by="x" * 10_000)
    assert requests.post(url, json=big, headers=auth, timeout=5).status_code == 413
    # Without a Content-Length (chunked), the body is cut at the limit all the same.
    chunks = (b'{"action": "ack", "room_id": "r", "rule": "' + b"x" * 1000 for _ in range(10))
    assert requests.post(url, data=chunks, headers=auth, timeout=5).status_code == 413
    assert control_room.published == []


def test_every_page_and_answer_carries_a_strict_csp(control_room):
    fill(control_room, 5)
    for path in ("/", "/room/room-snacks", "/review/", "/static/app.css", "/static/vendor/uPlot.iife.min.js",
                 "/api/rooms", "/api/rooms/nope", "/static/%2e%2e/server.py", "/review/no-such-show", "/nowhere"):
        answer = requests.get(control_room.url + path, timeout=5)
        csp = answer.headers.get("Content-Security-Policy", "")
        assert "script-src 'self'" in csp and "default-src 'none'" in csp, path
        assert "unsafe-inline" not in csp and "unsafe-eval" not in csp, path
        assert answer.headers["X-Content-Type-Options"] == "nosniff", path
    assert requests.get(control_room.url + "/static/%2e%2e/server.py", timeout=5).status_code == 404
    page = requests.get(control_room.url + "/room/room-snacks", timeout=5).text
    # No inline script and nothing fetched from another origin.
    assert "<script>" not in page and "http" not in page.replace('"http-equiv"', "")


def test_review_page_has_its_own_hash_based_policy(control_room):
    fill(control_room, 40)
    answer = requests.get(control_room.url + "/review/room-snacks", timeout=10)
    assert answer.status_code == 200 and "Peak online" in answer.text
    csp = answer.headers["Content-Security-Policy"]
    assert "script-src 'sha256-" in csp and "unsafe-inline" not in csp and "connect-src" not in csp
    shows = requests.get(control_room.url + "/api/shows", timeout=5).json()["shows"]
    assert {s["room_id"] for s in shows} == {"room-beauty", "room-snacks", "room-phones", "room-fashion"}


def test_event_stream_pushes_at_least_every_two_seconds(control_room):
    fill(control_room, 3)
    with socket.create_connection(("127.0.0.1", control_room.port), timeout=5) as conn:
        conn.sendall(b"GET /api/stream?room=room-snacks HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n")
        started, buffer, grid_frames = time.monotonic(), b"", 0
        while grid_frames < 3:          # no new data at all: frames must come anyway
            buffer += conn.recv(65536)
            grid_frames = buffer.count(b"event: grid")
            assert time.monotonic() - started < 6
        assert b"event: room" in buffer and b"text/event-stream" in buffer
        assert b"Content-Security-Policy" in buffer
