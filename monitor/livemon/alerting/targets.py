"""Show targets: which target a room's show is measured against, and its GMV pace.

The targets are the control room's (docs/WEB.md): the targets.toml named by LIVEMON_WEB_TARGETS,
read and checked by the page's own loader, with `[shows]` over `[rooms]` over `[default]`. The
page colours its tiles (web/hub.py) and the alert rules read `DERIVED` with these functions. The
figures are derived from a snapshot and its target, not by the engine, so they are rule metrics
of their own beside the catalogue's.
"""

from __future__ import annotations

from livemon import catalogue

# Rule metrics computed from the snapshot and the show's target (room scope).
DERIVED = ("gmv_pace", "show_elapsed")
EMPTY = {"default": {}, "rooms": {}, "shows": {}}


def load(path: str | None) -> dict:
    """The targets of `path` (targets.toml), or none without a path; a bad file raises ValueError."""
    if not path:
        return EMPTY
    from livemon.web.server import load_targets  # the page's loader: one format, checked once

    return load_targets(path)


def target_of(targets: dict, snapshot: dict) -> dict:
    """The targets a room's current show is measured against: the show's over the room's over the
    default ones."""
    show = snapshot.get("show") or {}
    merged = {**targets.get("default", {}), **(targets.get("rooms", {}).get(snapshot["room_id"]) or {})}
    if show.get("id"):
        merged.update(targets.get("shows", {}).get(f"{snapshot['room_id']}.{show['id']}") or {})
    return merged


def _gmv_metric() -> str:
    return next(metric.name for metric in catalogue.ROOM if metric.target == "gmv")


def pace(snapshot: dict, target: dict) -> tuple[float | None, float | None]:
    """(share of the planned show length gone by, GMV pace): the pace is the show's GMV as a share
    of its target, divided by the share of the show gone by (1: on target; 0.5: half of what is
    due by now). (None, None) without a GMV target, a planned length (`minutes`) or a show start.
    The control room colours its GMV tile by the same pace."""
    goal, minutes = target.get("gmv"), target.get("minutes")
    start = (snapshot.get("show") or {}).get("start")
    gmv = (snapshot.get("metrics") or {}).get(_gmv_metric())
    if not goal or not minutes or start is None or gmv is None:
        return None, None
    elapsed = min(1.0, max(0.0, (float(snapshot["ts"]) - start) / (minutes * 60)))
    return elapsed, (gmv / goal) / max(1e-6, elapsed)


def derived(targets: dict, snapshot: dict) -> dict:
    """The DERIVED figures of a snapshot."""
    elapsed, gmv_pace = pace(snapshot, target_of(targets, snapshot))
    return {"gmv_pace": gmv_pace, "show_elapsed": elapsed}
