"""Upload the generated dashboards to a Grafana server through its HTTP API (grafana-client)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import niquests
from grafana_client import GrafanaApi
from grafana_client.client import GrafanaClientError, GrafanaException, GrafanaUnauthorizedError

JSON_DIR = Path(__file__).parent / "json"


class PushError(Exception):
    """A failure worth one clear line to the user."""


def folder_uid(title: str) -> str:
    """A stable folder UID from its title, so every push lands in the same folder."""
    slug = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")
    return ("livemon-" + slug)[:40].rstrip("-")


def load_dashboards(directory: Path = JSON_DIR) -> list[dict]:
    return [json.loads(path.read_text()) for path in sorted(directory.glob("*.json"))]


def _call(url: str, what: str, fn, *args):
    try:
        return fn(*args)
    except GrafanaUnauthorizedError as error:
        raise PushError(f"Grafana at {url} rejected the token (401 Unauthorized) while {what}: "
                        "check --token (a service-account token with Editor rights)") from error
    except GrafanaClientError as error:
        raise PushError(f"Grafana at {url} refused {what}: HTTP {error.status_code} {error.response}") from error
    except GrafanaException as error:
        raise PushError(f"Grafana at {url} failed while {what}: {error.message}") from error
    except niquests.RequestException as error:
        raise PushError(f"cannot reach Grafana at {url} ({type(error).__name__}): {error}") from error
    except ValueError as error:  # a 200 answer that is not JSON: not Grafana's API
        raise PushError(f"{url} does not answer like Grafana's HTTP API while {what}") from error


def ensure_folder(api: GrafanaApi, url: str, title: str) -> str:
    """Look the folder up by its stable UID; create it on a 404."""
    uid = folder_uid(title)
    try:
        _call(url, "looking up the folder", api.folder.get_folder, uid)
    except PushError as error:
        cause = error.__cause__
        if not (isinstance(cause, GrafanaClientError) and cause.status_code == 404):
            raise
        _call(url, f"creating folder {title!r}", api.folder.create_folder, title, uid)
    return uid


def push(url: str, token: str, folder: str, dashboards: list[dict] | None = None, timeout: float = 10.0) -> list[dict]:
    """Create or overwrite each dashboard (same UID, Grafana bumps its version) in `folder`.
    Returns Grafana's answers: uid, url, version, status."""
    if not re.match(r"^https?://[^/]+", url):
        raise PushError(f"--url must be an http(s) URL of Grafana, got {url!r}")
    api = GrafanaApi.from_url(url.rstrip("/"), credential=token, timeout=timeout)
    uid = ensure_folder(api, url, folder)
    results = []
    for model in dashboards if dashboards is not None else load_dashboards():
        model = {**model, "id": None}  # Grafana matches by UID; a stale numeric id would conflict
        body = {"dashboard": model, "folderUid": uid, "overwrite": True,
                "message": "livemon dashboards push"}
        results.append(_call(url, f"saving dashboard {model['uid']}", api.dashboard.update_dashboard, body))
    return results
