"""`livemon dashboards`: generate the dashboard JSON, check it is up to date, push it to Grafana."""

from __future__ import annotations

from pathlib import Path

import click

JSON_DIR = Path(__file__).parent / "json"


def stale_files(directory: Path = JSON_DIR) -> list[str]:
    """Files whose committed JSON differs from what the code generates (or that the code no longer makes)."""
    from livemon.dashboards.build import render_all

    expected = render_all()
    stale = [name for name, text in expected.items()
             if not (directory / name).exists() or (directory / name).read_text() != text]
    stale += [path.name for path in directory.glob("*.json") if path.name not in expected]
    return sorted(stale)


@click.group()
def dashboards():
    """Grafana dashboards as code: generate, check and push."""


@dashboards.command()
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=JSON_DIR, show_default=True,
              help="Folder to write the dashboard JSON files into.")
def generate(out: Path):
    """Write the dashboard JSON generated from the code."""
    from livemon.dashboards.build import render_all

    out.mkdir(parents=True, exist_ok=True)
    rendered = render_all()
    for name, text in rendered.items():
        (out / name).write_text(text)
        click.echo(f"wrote {out / name}")
    for path in out.glob("*.json"):
        if path.name not in rendered:
            path.unlink()
            click.echo(f"removed {path}")


@dashboards.command()
@click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path), default=JSON_DIR,
              show_default=True, help="Folder of the committed dashboard JSON.")
def check(directory: Path):
    """Fail when the committed JSON is not what the code generates."""
    stale = stale_files(directory)
    if stale:
        raise click.ClickException(
            f"dashboard JSON out of date: {', '.join(stale)}; run `livemon dashboards generate`")
    click.echo("dashboard JSON is up to date")


@dashboards.command()
@click.option("--url", required=True, envvar="GRAFANA_URL", help="Grafana base URL, e.g. http://grafana:3000")
@click.option("--token", required=True, envvar="GRAFANA_TOKEN", help="Service-account token (Editor).")
@click.option("--folder", default="Live-room monitor", show_default=True, help="Folder title to push into.")
@click.option("--timeout", default=10.0, show_default=True, help="HTTP timeout in seconds.")
def push(url: str, token: str, folder: str, timeout: float):
    """Create or update the dashboards in Grafana (same UIDs; Grafana keeps the version history)."""
    from livemon.dashboards.push import PushError, push as do_push

    try:
        results = do_push(url, token, folder, timeout=timeout)
    except PushError as error:
        raise click.ClickException(str(error)) from None
    for result in results:
        click.echo(f"{result.get('status', 'success')}: {result.get('uid')} version {result.get('version')} "
                   f"{url.rstrip('/')}{result.get('url', '')}")
