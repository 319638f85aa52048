"""`livemon shows` and `livemon review`."""

from __future__ import annotations

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


@click.command()
@click.argument("show")
@click.option("--compare", "other", default=None, metavar="OTHER", help="A second show to put side by side.")
@click.option("--room", default=None, help="With a timeline file: the room to review (default: the first).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Report file (default: review-SHOW.html in the current directory).")
@click.option("--shows", "shows_path", type=click.Path(dir_okay=False, exists=True, path_type=Path), default=None,
              help="With a timeline file: the show summaries `livemon replay --shows` wrote; the report then "
                   "shows their exact figures and tables.")
@click.option("--export", "export_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Also write the show summary's tables into this directory: one CSV each (UTF-8 with BOM) "
                   "and one XLSX with a sheet per table.")
@data_dir_option
def review(show, other, room, out, shows_path, export_dir, data_dir):
    """Write the post-show review of SHOW as one self-contained HTML file.

    SHOW is a key from `livemon shows`, a room id (its newest show) or a unique key prefix. It may
    also be a timeline file written by `livemon replay` (.jsonl); each room in it is one show, named
    by its room id.
    """
    from livemon.recording.review import ReviewError, build_review

    with tempfile.TemporaryDirectory() as scratch:
        stores, recorded = [], []

        def source(name, index):
            # A replay timeline is reviewed through a throwaway store, exactly like a recorded show.
            if name.endswith(".jsonl") and Path(name).is_file():
                store = RecordingStore(Path(scratch) / str(index))
                stores.append(store)
                keys = import_timeline(store, Path(name))
                if shows_path is not None:
                    import_summaries(store, shows_path)
                if not keys:
                    raise click.ClickException(f"{name} holds no timeline line")
                chosen = store.find_show(room) if room else None
                return store, chosen["key"] if chosen else keys[0]
            if not recorded:
                recorded.append(_open_store(data_dir))
                stores.append(recorded[0])
            return recorded[0], name

        try:
            store, key = source(show, 0)
            other_store, other_key = source(other, 1) if other else (None, None)
            html, _ = build_review(store, key, other_key, other_store)
            if export_dir is not None:
                from livemon.recording.export import export

                found = store.find_show(key)
                summary = store.summary(found["key"]) if found else None
                if summary is None:
                    raise click.ClickException(f"no show summary for {key!r}: --export needs one "
                                               "(pass --shows SHOWS.jsonl with a timeline file)")
                written = export(summary, export_dir, re.sub(r"[^A-Za-z0-9_.-]", "_", found["key"]))
                click.echo(f"Exported {len(written)} files to {export_dir}"
                           + ("" if any(p.suffix == ".xlsx" for p in written) else " (no XLSX: openpyxl is not installed)"))
        except ReviewError as error:
            raise click.ClickException(str(error))
        finally:
            for store in stores:
                store.close()
    out = out or Path(f"review-{re.sub(r'[^A-Za-z0-9_.-]', '_', Path(show).stem if show.endswith('.jsonl') else show)}.html")
    out.write_text(html, encoding="utf-8")
    click.echo(f"Wrote {out} ({len(html) // 1024} KiB); open it in a browser.")


def import_summaries(store: RecordingStore, path: Path) -> int:
    """Attach the show summaries of a `livemon replay --shows` file to the imported shows (same room
    and start); returns how many were attached."""
    attached = 0
    with path.open("rb") as lines:
        for line in lines:
            if line.strip() and store.write_summary(orjson.loads(line), open_show=False) is not None:
                attached += 1
    return attached


def import_timeline(store: RecordingStore, path: Path) -> list[str]:
    """Record a `livemon replay` timeline; returns the keys of the shows it made."""
    batch = []
    with path.open("rb") as lines:
        for line in lines:
            if line.strip():
                batch.append(orjson.loads(line))
            if len(batch) >= 5000:
                store.write(snapshots=batch)
                batch = []
    store.write(snapshots=batch)
    return sorted(s["key"] for s in store.shows())
