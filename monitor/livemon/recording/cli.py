"""`livemon shows` and `livemon review`."""

from __future__ import annotations

import os
import re
import tempfile
from datetime import datetime
from pathlib import Path

import click
import orjson

from livemon.recording.store import RecordingStore, default_data_dir

data_dir_option = click.option(
    "--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
    help="Where the recording lives (default: $LIVEMON_DATA_DIR or ~/.local/share/livemon).")


def _open_store(data_dir: Path | None) -> RecordingStore:
    path = data_dir or default_data_dir()
    if not (path / "recording.sqlite3").exists():
        raise click.ClickException(f"no recording in {path} (run `livemon demo` or a worker first, or pass --data-dir)")
    return RecordingStore(path)


@click.command()
@data_dir_option
@click.option("--room", default=None, help="Only this room's shows.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per show.")
def shows(data_dir, room, as_json):
    """List recorded shows, newest first. Review one with `livemon review SHOW`."""
    store = _open_store(data_dir)
    rows = store.shows(room)
    store.close()
    if as_json:
        for row in rows:
            click.echo(orjson.dumps(row).decode())
        return
    if not rows:
        click.echo("No show recorded yet.")
        return
    click.echo(f"{'SHOW':<44} {'ROOM':<20} {'START':<19} {'MINUTES':>7} {'ALERTS':>6} {'FAILOVERS':>9}  STATUS")
    for row in rows:
        minutes = ((row["ended"] or row["last_ts"]) - row["start"]) / 60
        start = datetime.fromtimestamp(row["start"]).strftime("%Y-%m-%d %H:%M:%S")
        click.echo(f"{row['key']:<44} {row['room_id']:<20} {start:<19} {minutes:>7.1f} {row['alerts']:>6} "
                   f"{row['failovers']:>9}  {'ended' if row['ended'] else 'live'}")


class ReviewInputError(click.ClickException):
    """A review that cannot be made from what was given: one line, exit code 2."""

    exit_code = 2


def _names(keys) -> str:
    keys = list(keys)
    return ", ".join(keys[:20]) + (f" (and {len(keys) - 20} more)" if len(keys) > 20 else "")


def _is_file_argument(name: str) -> bool:
    return name.endswith(".jsonl") or os.sep in name or Path(name).is_file()


@click.command()
@click.argument("show")
@click.option("--compare", "other", default=None, metavar="OTHER",
              help="A second show to put side by side: a recorded show, another timeline file, or another show "
                   "or room of the same timeline file.")
@click.option("--room", default=None, help="With a timeline file: the room to review (default: the first).")
@click.option("--show", "show_key", default=None, metavar="KEY",
              help="With a timeline file: which show of the room (its key or show id; default: the last one).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Report file (default: review-SHOW.html in the current directory).")
@click.option("--shows", "shows_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="With a timeline file: the show summaries `livemon replay --shows` wrote; the report then "
                   "shows their exact figures and tables.")
@click.option("--compare-shows", "compare_shows_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="With --compare OTHER.jsonl: OTHER's show summaries (default: those of --shows).")
@click.option("--export", "export_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Also write the show summary's tables into this directory: one CSV each (UTF-8 with BOM) "
                   "and one XLSX with a sheet per table; with --compare, the comparison and both shows' tables.")
@data_dir_option
def review(show, other, room, show_key, out, shows_path, compare_shows_path, export_dir, data_dir):
    """Write the post-show review of SHOW as one self-contained HTML file.

    SHOW is a key from `livemon shows`, a room id (its newest show) or a unique key prefix. It may
    also be a timeline file written by `livemon replay` (.jsonl): --room picks the room (default the
    first), --show the room's show (default its last one); --shows adds the summaries `livemon replay
    --shows` wrote.
    """
    from livemon.recording.review import ReviewError, build_review, review_tables

    for path in (shows_path, compare_shows_path):
        if path is not None and not path.is_file():
            raise ReviewInputError(f"no such file: {path}")
    with tempfile.TemporaryDirectory() as scratch:
        stores, recorded, notes = [], [], []

        def from_file(path: Path, summaries: Path | None, index: int):
            store = RecordingStore(Path(scratch) / str(index))
            stores.append(store)
            import_timeline(store, path)
            if summaries is not None and not import_summaries(store, summaries):
                raise ReviewInputError(f"no summary in {summaries} is of a show in {path} (same room and start): "
                                       "pass the SHOWS file `livemon replay --shows` wrote with this timeline")
            return store

        def pick(store: RecordingStore, path: Path, wanted_room: str | None, wanted_show: str | None) -> str:
            shows = sorted(store.shows(), key=lambda s: (s["room_id"], s["start"]))
            rooms = list(dict.fromkeys(s["room_id"] for s in shows))
            chosen_room = wanted_room or rooms[0]
            if chosen_room not in rooms:
                raise ReviewInputError(f"no room {chosen_room!r} in {path}; its rooms: {_names(rooms)}")
            of_room = [s for s in shows if s["room_id"] == chosen_room]
            if wanted_show is None:
                chosen = of_room[-1]
            else:
                chosen = next((s for s in of_room if wanted_show in (s["key"], s["show_id"])), None)
                if chosen is None:
                    raise ReviewInputError(f"no show {wanted_show!r} of room {chosen_room} in {path}; its shows: "
                                           f"{_names(s['key'] for s in of_room)}")
            place = of_room.index(chosen) + 1
            notes.append((f"{path.name}:直播间 {chosen_room} 的第 {place} 场(共 {len(of_room)} 场)"
                          + (f",文件中共 {len(rooms)} 个直播间" if len(rooms) > 1 else ""),
                          f"{path.name}: show {place} of {len(of_room)} of room {chosen_room}"
                          + (f"; the file holds {len(rooms)} rooms" if len(rooms) > 1 else "")))
            return chosen["key"]

        def recording():
            if not recorded:
                try:
                    recorded.append(_open_store(data_dir))
                except click.ClickException as error:
                    raise ReviewInputError(error.message) from None
                stores.append(recorded[0])
            return recorded[0]

        try:
            if _is_file_argument(show):
                if not Path(show).is_file():
                    raise ReviewInputError(f"no such file: {show}")
                store = from_file(Path(show), shows_path, 0)
                key = pick(store, Path(show), room, show_key)
            else:
                if room is not None or show_key is not None or shows_path is not None:
                    raise ReviewInputError("--room, --show and --shows go with a timeline file; a recorded show "
                                           f"is named by SHOW itself (see `livemon shows`), not {show!r}")
                store, key = recording(), show
            other_store, other_key = None, None
            if other is not None:
                if _is_file_argument(other):
                    if not Path(other).is_file():
                        raise ReviewInputError(f"no such file: {other}")
                    other_store = from_file(Path(other), compare_shows_path or shows_path, 1)
                    rooms = {s["room_id"] for s in other_store.shows()}
                    other_key = pick(other_store, Path(other), room if room in rooms else None, None)
                elif _is_file_argument(show):      # another show or room of the same file
                    found = store.find_show(other)
                    if found is None:
                        raise ReviewInputError(f"no show or room {other!r} in {show}; its shows: "
                                               f"{_names(s['key'] for s in store.shows())}")
                    other_store, other_key = store, found["key"]
                else:
                    other_store, other_key = recording(), other
            note = None
            if notes:
                note = tuple("; ".join(n[i] for n in notes) for i in (0, 1))
            html, _ = build_review(store, key, other_key, other_store, note=note)
            if export_dir is not None:
                from livemon.recording.export import export

                try:
                    tables, stem = review_tables(store, key, other_key, other_store)
                except ReviewError as error:
                    raise ReviewInputError(f"{error}; --export needs the show summary "
                                           "(pass --shows SHOWS.jsonl with a timeline file)") from None
                written = export({}, export_dir, re.sub(r"[^A-Za-z0-9_.-]", "_", stem), tables=tables)
                click.echo(f"Exported {len(written)} files to {export_dir}"
                           + ("" if any(p.suffix == ".xlsx" for p in written) else " (no XLSX: openpyxl is not installed)"))
        except ReviewError as error:
            raise ReviewInputError(str(error)) from None
        finally:
            for store in stores:
                store.close()
    out = out or Path(f"review-{re.sub(r'[^A-Za-z0-9_.-]', '_', Path(show).stem if _is_file_argument(show) else show)}.html")
    out.write_text(html, encoding="utf-8")
    for line in notes:
        click.echo(f"Reviewed {line[1]}")
    click.echo(f"Wrote {out} ({len(html) // 1024} KiB); open it in a browser.")


def _lines(path: Path, what: str):
    """(line number, object) of a JSON-lines file; a line that is not a JSON object stops it, saying
    what it looks like."""
    with path.open("rb") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                value = orjson.loads(line)
            except orjson.JSONDecodeError:
                raise ReviewInputError(f"{path} is not {what}: line {number} is not JSON") from None
            if isinstance(value, list) and value and all(isinstance(v, dict) and "type" in v for v in value):
                raise ReviewInputError(f"{path} is not {what}: line {number} is a batch of events{_replay_hint(path)}")
            if not isinstance(value, dict):
                raise ReviewInputError(f"{path} is not {what}: line {number} is not a JSON object")
            yield number, value


def _replay_hint(path: Path) -> str:
    return f"; compute its timeline first: livemon replay {path} --out TIMELINE.jsonl --shows SHOWS.jsonl"


def import_summaries(store: RecordingStore, path: Path) -> int:
    """Attach the show summaries of a `livemon replay --shows` file to the imported shows (same room
    and start); returns how many were attached. A file that is not summaries: ReviewInputError."""
    attached = 0
    what = "show summaries (one per line, as `livemon replay --shows` writes them)"
    for number, summary in _lines(path, what):
        if not (isinstance(summary.get("room_id"), str) and isinstance(summary.get("start"), (int, float))
                and isinstance(summary.get("totals"), dict)):
            hint = " (it looks like a timeline: pass it as SHOW)" if isinstance(summary.get("metrics"), dict) else (
                " (it looks like an event file)" if "type" in summary else "")
            raise ReviewInputError(f"{path} is not {what}: line {number} has no room_id, start and totals{hint}")
        if store.write_summary(summary, open_show=False) is not None:
            attached += 1
    return attached


def import_timeline(store: RecordingStore, path: Path) -> list[str]:
    """Record a `livemon replay` timeline; returns the keys of the shows it made. A file that is not
    a timeline (an event file, say): ReviewInputError."""
    what = "a timeline (one line per room and instant, as `livemon replay --out` writes it)"
    batch = []
    for number, line in _lines(path, what):
        if not (isinstance(line.get("ts"), (int, float)) and isinstance(line.get("room_id"), str)
                and isinstance(line.get("metrics"), dict)):
            if "type" in line:
                raise ReviewInputError(f"{path} is not {what}: line {number} is an event "
                                       f"({line.get('type')!r}){_replay_hint(path)}")
            if isinstance(line.get("totals"), dict):
                raise ReviewInputError(f"{path} is not {what}: line {number} is a show summary (pass it with --shows)")
            raise ReviewInputError(f"{path} is not {what}: line {number} has no ts, room_id and metrics")
        batch.append(line)
        if len(batch) >= 5000:
            store.write(snapshots=batch)
            batch = []
    store.write(snapshots=batch)
    keys = sorted(s["key"] for s in store.shows())
    if not keys:
        raise ReviewInputError(f"{path} holds no timeline line")
    return keys
