"""`livemon dashboards push` against a local stand-in for Grafana's HTTP API (no Grafana server can be
installed here): the exact requests grafana-client sends, idempotency, and the errors a user sees."""

from __future__ import annotations

import asyncio
import json
import threading

import pytest
from aiohttp import web
from click.testing import CliRunner

from livemon.dashboards.cli import dashboards
from livemon.dashboards.push import JSON_DIR
from tests.fixtures.prometheus import free_port

TOKEN = "glsa_test_token"
FOLDER_UID = "livemon-live-room-monitor"


class FakeGrafana:
    """Grafana's folder and dashboard endpoints, as documented, in memory; records every request."""

    def __init__(self):
        self.requests: list[tuple[str, str, dict | None]] = []
        self.folders: dict[str, dict] = {}
        self.dashboards: dict[str, dict] = {}
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"

    @web.middleware
    async def auth(self, request, handler):
        body = await request.json() if request.can_read_body else None
        self.requests.append((request.method, request.path, body))
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            return web.json_response({"message": "invalid API key"}, status=401)
        return await handler(request)

    async def get_folder(self, request):
        folder = self.folders.get(request.match_info["uid"])
        if folder is None:
            return web.json_response({"message": "folder not found", "status": "not-found"}, status=404)
        return web.json_response(folder)

    async def create_folder(self, request):
        body = await request.json()
        folder = {"id": len(self.folders) + 1, "uid": body["uid"], "title": body["title"],
                  "url": f"/dashboards/f/{body['uid']}/", "version": 1}
        self.folders[body["uid"]] = folder
        return web.json_response(folder)

    async def save_dashboard(self, request):
        body = await request.json()
        model = body["dashboard"]
        if body.get("folderUid") not in self.folders:
            return web.json_response({"message": "folder not found"}, status=400)
        old = self.dashboards.get(model["uid"])
        if old is not None and not body.get("overwrite"):
            return web.json_response({"message": "A dashboard with the same uid already exists",
                                      "status": "name-exists"}, status=412)
        version = old["version"] + 1 if old else 1
        self.dashboards[model["uid"]] = {"model": model, "version": version, "folderUid": body["folderUid"]}
        return web.json_response({"id": list(self.dashboards).index(model["uid"]) + 1, "uid": model["uid"],
                                  "url": f"/d/{model['uid']}/x", "status": "success", "version": version,
                                  "slug": "x"})

    def __enter__(self):
        app = web.Application(middlewares=[self.auth])
        app.router.add_get("/api/folders/{uid}", self.get_folder)
        app.router.add_post("/api/folders", self.create_folder)
        app.router.add_post("/api/dashboards/db", self.save_dashboard)
        self.loop = asyncio.new_event_loop()
        self.runner = web.AppRunner(app)
        self.loop.run_until_complete(self.runner.setup())
        self.loop.run_until_complete(web.TCPSite(self.runner, "127.0.0.1", self.port).start())
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc):
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture
def grafana():
    with FakeGrafana() as server:
        yield server


def run_push(*args):
    return CliRunner().invoke(dashboards, ["push", *args], catch_exceptions=False)


def committed():
    return {model["uid"]: model for model in (json.loads(p.read_text()) for p in sorted(JSON_DIR.glob("*.json")))}


def test_push_creates_folder_then_dashboards_with_overwrite(grafana):
    result = run_push("--url", grafana.url, "--token", TOKEN)
    assert result.exit_code == 0, result.output

    expected = committed()
    assert grafana.requests[:2] == [
        ("GET", f"/api/folders/{FOLDER_UID}", None),
        ("POST", "/api/folders", {"title": "Live-room monitor", "uid": FOLDER_UID}),
    ]
    saves = grafana.requests[2:]
    assert [(method, path) for method, path, _ in saves] == [("POST", "/api/dashboards/db")] * len(expected)
    for _, _, body in saves:
        assert set(body) == {"dashboard", "folderUid", "overwrite", "message"}
        assert body["folderUid"] == FOLDER_UID and body["overwrite"] is True
        sent = body["dashboard"]
        assert sent["id"] is None  # Grafana matches by uid, never by a numeric id from elsewhere
        assert {k: v for k, v in sent.items() if k != "id"} == expected[sent["uid"]]
    assert set(grafana.dashboards) == set(expected)
    for uid in expected:
        assert f"{uid} version 1" in result.output


def test_push_is_idempotent_same_uid_new_version(grafana):
    assert run_push("--url", grafana.url, "--token", TOKEN).exit_code == 0
    first = len(grafana.requests)
    result = run_push("--url", grafana.url + "/", "--token", TOKEN, "--folder", "Live-room monitor")
    assert result.exit_code == 0, result.output

    second = grafana.requests[first:]
    assert second[0] == ("GET", f"/api/folders/{FOLDER_UID}", None)
    assert ("POST", "/api/folders") not in [(m, p) for m, p, _ in second]  # the folder is reused
    assert len(grafana.folders) == 1
    assert {uid: d["version"] for uid, d in grafana.dashboards.items()} == {uid: 2 for uid in committed()}
    assert "version 2" in result.output


def test_push_into_another_folder(grafana):
    result = run_push("--url", grafana.url, "--token", TOKEN, "--folder", "Show 618 / war room")
    assert result.exit_code == 0, result.output
    assert list(grafana.folders) == ["livemon-show-618-war-room"]
    assert {d["folderUid"] for d in grafana.dashboards.values()} == {"livemon-show-618-war-room"}


def test_bad_token_is_a_clear_error(grafana):
    result = run_push("--url", grafana.url, "--token", "wrong")
    assert result.exit_code == 1
    assert "rejected the token (401 Unauthorized)" in result.output and "--token" in result.output
    assert "Traceback" not in result.output
    assert grafana.dashboards == {} and grafana.folders == {}


def test_unreachable_url_is_a_clear_error():
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there: connection refused
    result = run_push("--url", url, "--token", TOKEN, "--timeout", "3")
    assert result.exit_code == 1
    assert f"cannot reach Grafana at {url}" in result.output
    assert "Traceback" not in result.output


def test_malformed_url_is_a_clear_error():
    result = run_push("--url", "grafana:3000", "--token", TOKEN)
    assert result.exit_code == 1
    assert "--url must be an http(s) URL" in result.output
