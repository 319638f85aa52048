"""`livemon alert-relay`: Alertmanager webhooks re-sent to DingTalk and Feishu robots, signed.

Alertmanager cannot sign a request the way these robots require (a timestamp and an HMAC in the
query or the body), so its receivers post to this relay instead:

    webhook_configs: [{url: http://alert-relay:9097/alertmanager/field-control}]

and the relay sends one robot message per notification to the robot named in the path, as
configured in `alerts/relay.yml` (URLs and secrets from the environment). The relay answers as the
robot did: 200 delivered, 503 when the robot is unreachable or rate limits (Alertmanager retries),
400 when the robot refuses (bad secret, keyword setting: retrying would not help), 404 for an
unknown robot. It keeps no queue: Alertmanager's retries and repeat_interval are the durability.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import click
import yarl
from aiohttp import web

from livemon.alerting import robots
from livemon.alerting.delivery import safe_url
from livemon.alerting.schema import ConfigError, Section, load_yaml

log = logging.getLogger("livemon.alerting.relay")
SESSION = web.AppKey("session", aiohttp.ClientSession)


@dataclass(frozen=True)
class Robot:
    name: str
    kind: str
    url: str
    secret: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class RelayConfig:
    robots: dict
    runbook_base_url: str = ""
    timeout: float = 5.0

    @classmethod
    def load(cls, path: str | Path) -> "RelayConfig":
        file = str(path)
        top = Section(load_yaml(path), file, "")
        top.check_keys({"robots", "runbook_base_url", "timeout"})
        found = {}
        section = top.mapping("robots")
        for name in section.data:
            s = section.mapping(name)
            s.check_keys({"kind", "url", "secret"})
            url = s.string("url", env=True).strip()
            if not url:
                continue                      # an empty URL disables the robot
            if not url.startswith(("http://", "https://")):
                s.fail("url", "expected an http(s) URL")
            found[str(name)] = Robot(str(name), s.string("kind", choices=robots.FORMATS), url,
                                     s.string("secret", None, env=True) or None)
        if not found:
            raise ConfigError(file, section.line, "robots", "no robot has a URL (set their environment variables)")
        return cls(found, top.string("runbook_base_url", "", env=True), top.duration("timeout", 5.0))


def message(payload: dict, runbook_base: str) -> tuple[str, str, bool]:
    """(title, markdown, firing) of one Alertmanager notification (a group of alerts)."""
    alerts = payload.get("alerts") or []
    common = payload.get("commonLabels") or {}
    status = payload.get("status", "firing")
    name = common.get("alertname") or ", ".join(sorted({a["labels"].get("alertname", "") for a in alerts}))
    title = f"[{status.upper()}] {name}" + (f" {common['room']}" if common.get("room") else "")
    if len(alerts) > 1:
        title += f" ({len(alerts)})"
    parts = [robots.alert_message(a.get("status", status), a["labels"].get("alertname", name), a.get("labels", {}),
                                  a.get("annotations", {}), runbook_base)[1] for a in alerts[:20]]
    if len(alerts) > 20:
        parts.append(f"… {len(alerts) - 20} more")
    return title, "\n\n".join(parts), status == "firing"


def make_app(config: RelayConfig) -> web.Application:
    async def session_ctx(app):
        app[SESSION] = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=config.timeout))
        yield
        await app[SESSION].close()

    async def relay(request: web.Request) -> web.Response:
        robot = config.robots.get(request.match_info["name"])
        if robot is None:
            return web.Response(status=404, text="no such robot\n")
        try:
            payload = await request.json()
        except ValueError:
            return web.Response(status=400, text="expected an Alertmanager webhook (JSON)\n")
        title, text, firing = message(payload, config.runbook_base_url)
        url, body = robots.request(robot.kind, robot.url, robot.secret, title, text, firing=firing)
        try:
            async with request.app[SESSION].post(
                    yarl.URL(url, encoded=True), data=body, headers={"Content-Type": "application/json; charset=utf-8"}) as response:
                status = robots.outcome(response.status, await response.read())
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as error:
            log.warning("%s: %s unreachable (%s)", robot.name, safe_url(robot.url), type(error).__name__)
            return web.Response(status=503, text="robot unreachable\n")
        if status == 200:
            return web.Response(text="ok\n")
        if status == 400 or 400 <= status < 500 and status not in (408, 429):
            log.error("%s: %s refused the message (HTTP %d)", robot.name, safe_url(robot.url), status)
            return web.Response(status=400, text="refused by the robot\n")
        return web.Response(status=503, text="robot busy, retry\n")

    app = web.Application(client_max_size=4 << 20)
    app.cleanup_ctx.append(session_ctx)
    app.router.add_post("/alertmanager/{name}", relay)
    async def healthy(request):
        return web.Response(text="ok\n")

    app.router.add_get("/-/healthy", healthy)
    return app


@click.command("alert-relay")
@click.option("--config", "config_path", type=click.Path(path_type=Path), default=Path("alerts/relay.yml"),
              show_default=True, help="Robots: name -> kind, url, secret (${VAR} from the environment).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Listen address (0.0.0.0 in a container).")
@click.option("--port", default=9097, show_default=True, type=int)
def alert_relay(config_path, host, port):
    """Re-send Alertmanager webhooks to DingTalk and Feishu robots, signed."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = RelayConfig.load(config_path)
    except ConfigError as error:
        raise click.ClickException(str(error))
    click.echo(f"alert-relay on http://{host}:{port}/alertmanager/<robot>: "
               + ", ".join(f"{r.name} ({r.kind})" for r in config.robots.values()))
    web.run_app(make_app(config), host=host, port=port, print=None)
