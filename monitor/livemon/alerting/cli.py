"""`livemon rules`: check alert rule files and the alerting configuration, list rules, report incidents."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import click

from livemon.alerting.schema import ConfigError, Section, load_yaml



def default_config() -> Path | None:
    """The shipped alerting.yml: the repository's alerts/ folder, installed as package data
    (`livemon.alerts`), so it is found from any directory, in a checkout or from a wheel."""
    from importlib.resources import files

    try:
        path = Path(str(files("livemon.alerts") / "alerting.yml"))
    except ModuleNotFoundError:  # an install that predates the mapping: reinstall
        return None
    return path if path.is_file() else None


def _check_one(path: Path) -> str:
    from livemon.alerting.config import load_config
    from livemon.alerting.rules import load_rules

    data = load_yaml(path)
    if isinstance(data, dict) and ("route" in data or "receivers" in data):
        return _check_alertmanager(path)
    section = Section(data, str(path), "")
    if set(section.data) <= {"rules"}:
        rules = load_rules(path)
        return f"{path}: {len(rules)} rules OK"
    config = load_config(path)
    receivers = len(config.webhooks) + bool(config.alertmanager_urls) + bool(config.failover_endpoint)
    return (f"{path}: {len(config.rules)} rules, {receivers} receivers enabled, "
            f"failover {'on' if config.failover else 'off'} OK")


def _check_alertmanager(path: Path) -> str:
    amtool = shutil.which("amtool")
    if amtool is None:
        return f"{path}: Alertmanager configuration (amtool not installed, not checked)"
    result = subprocess.run([amtool, "check-config", str(path)], capture_output=True, text=True)
    if result.returncode != 0:
        raise click.ClickException(f"{path}: amtool check-config failed:\n{result.stdout}{result.stderr}")
    return f"{path}: Alertmanager configuration OK (amtool)"


def _default_or_fail() -> Path:
    path = default_config()
    if path is None:
        raise click.ClickException("the shipped alerts (package livemon.alerts) are missing: reinstall livemon")
    return path


@click.group()
def rules():
    """Check alert rule files and the alerting configuration."""


@rules.command()
@click.argument("files", nargs=-1, type=click.Path(path_type=Path))
def check(files):
    """Validate rule files, alerting.yml and alertmanager.yml (default: the shipped alerting.yml)."""
    errors = 0
    for path in files or [_default_or_fail()]:
        try:
            click.echo(_check_one(path))
        except ConfigError as error:
            errors += 1
            click.echo(f"error: {error}", err=True)
    if errors:
        raise click.ClickException(f"{errors} file(s) with errors")


@rules.command("list")
@click.argument("files", nargs=-1, type=click.Path(path_type=Path))
def list_rules(files):
    """Print the rules with their conditions."""
    from livemon.alerting.config import load_config

    try:
        config = load_config(files[0] if files else _default_or_fail())
    except ConfigError as error:
        raise click.ClickException(str(error))
    for r in config.rules:
        if r.anomaly:
            cond = (f"{r.anomaly.direction} > {r.anomaly.min_change:.0%} from EWMA "
                    f"(half-life {r.anomaly.halflife:g}s)")
        else:
            cond = f"{r.op} {r.threshold:g}" + (f" (clear {r.clear:g})" if r.clear is not None else "")
        volume = f", {r.volume_metric} >= {r.volume_min:g}" if r.volume_metric else ""
        metric = r.metric if r.short is None else f"{r.metric}|{r.short}"
        click.echo(f"{r.name:22} {r.scope:4} {metric} {cond}, for {r.for_:g}s{volume}; "
                   f"{r.severity}; {', '.join(r.actions)}")


@rules.command()
@click.option("--data-dir", type=click.Path(path_type=Path, exists=True), required=True,
              help="The worker's data dir (holds incidents.jsonl).")
@click.option("--by", type=click.Choice(["show", "period"]), default="show")
@click.option("--period", type=float, default=86400.0, help="Seconds per period with --by period.")
def incidents(data_dir, by, period):
    """Time to detect, acknowledge and resolve, per show or per period (JSON lines)."""
    from livemon.alerting.incidents import IncidentBook, report

    for row in report(IncidentBook(data_dir / "incidents.jsonl").all(), by=by, period=period):
        click.echo(json.dumps(row))
