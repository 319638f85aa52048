"""The alerting service configuration (`alerts/alerting.yml`): rule files, receivers, failover.

String values of receivers and failover may use `${VAR}` or `${VAR:-default}`; a receiver whose
URL expands to an empty string is disabled. Secrets come from the environment this way and are
never printed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from livemon.alerting.failover import FailoverConfig
from livemon.alerting import targets as targets_of
from livemon.alerting.rules import Rule, load_rules, parse_rules
from livemon.alerting.schema import ConfigError, Section, load_yaml

RECORD_KINDS = ("alert", "incident", "failover")


@dataclass(frozen=True)
class Receiver:
    name: str
    url: str
    secret: str | None = field(default=None, repr=False)
    kinds: tuple = ("alert", "failover")


@dataclass(frozen=True)
class ServiceConfig:
    rules: list[Rule]
    alertmanager_urls: tuple = ()
    resend_interval: float = 60.0
    resolved_retention: float = 900.0
    generator_url: str = ""
    webhooks: tuple = ()
    retry_initial: float = 0.5
    retry_max: float = 30.0
    timeout: float = 5.0
    failover: FailoverConfig | None = None
    failover_endpoint: Receiver | None = None
    silence_default: float = 3600.0
    targets: dict = field(default_factory=lambda: dict(targets_of.EMPTY))   # show targets (targets.toml)


def load_config(path: str | Path) -> ServiceConfig:
    path = Path(path)
    file = str(path)
    data = load_yaml(path)
    top = Section(data, file, "")
    top.check_keys({"rule_files", "rules", "delivery", "failover", "operator", "targets"})
    rules: list[Rule] = []
    for name, line, field_path in top.items("rule_files"):
        if not isinstance(name, str):
            raise ConfigError(file, line, field_path, "expected a file name")
        rule_path = path.parent / name
        if not rule_path.exists():
            raise ConfigError(file, line, field_path, f"no such rule file: {rule_path}")
        rules += load_rules(rule_path)
    if top.has("rules"):
        inline = parse_rules(data, file)
        clash = {r.name for r in rules} & {r.name for r in inline}
        if clash:
            top.fail("rules", f"rule(s) {', '.join(sorted(clash))} also defined in a rule file")
        rules += inline

    kw: dict = {}
    targets_file = top.string("targets", None, env=True)
    if targets_file:
        try:
            kw["targets"] = targets_of.load(targets_file)  # as the page reads it (LIVEMON_WEB_TARGETS)
        except ValueError as error:
            top.fail("targets", str(error))
    delivery = top.mapping("delivery", None)
    if delivery is not None:
        delivery.check_keys({"alertmanager", "webhooks", "retry"})
        am = delivery.mapping("alertmanager", None)
        if am is not None:
            am.check_keys({"urls", "resend_interval", "resolved_retention", "generator_url"})
            urls = []
            for url, line, field_path in am.items("urls"):
                urls.append(_url(Section({"url": url}, file, field_path.rsplit(".", 1)[0], line),
                                 "url", line))
            kw["alertmanager_urls"] = tuple(u for u in urls if u)
            kw["resend_interval"] = am.duration("resend_interval", 60.0)
            kw["resolved_retention"] = am.duration("resolved_retention", 900.0)
            kw["generator_url"] = am.string("generator_url", "", env=True)
        hooks = []
        for item, line, field_path in delivery.items("webhooks"):
            receiver = _receiver(Section(item, file, field_path, line), line)
            if receiver is not None:
                hooks.append(receiver)
        names = [h.name for h in hooks]
        if len(set(names)) != len(names):
            delivery.fail("webhooks", "webhook names must be unique")
        kw["webhooks"] = tuple(hooks)
        retry = delivery.mapping("retry", None)
        if retry is not None:
            retry.check_keys({"initial", "max", "timeout"})
            kw["retry_initial"] = retry.duration("initial", 0.5)
            kw["retry_max"] = retry.duration("max", 30.0)
            kw["timeout"] = retry.duration("timeout", 5.0)

    fo = top.mapping("failover", None)
    if fo is not None:
        fo.check_keys({"enabled", "cooldown", "failback_after", "allow_unknown", "pools", "endpoint"})
        if fo.boolean("enabled", True):
            if not any("failover" in r.actions for r in rules):
                fo.fail("enabled", "failover is enabled but no rule has the `failover` action")
            pools = {}
            pool_section = fo.mapping("pools", None)
            if pool_section is not None:
                for room in pool_section.data:
                    cdns = [c for c, _, _ in pool_section.items(room)]
                    if not cdns or not all(isinstance(c, str) for c in cdns):
                        pool_section.fail(room, "expected a list of CDN names")
                    pools[str(room)] = tuple(cdns)
            failback = fo.raw("failback_after", "10m")
            kw["failover"] = FailoverConfig(
                cooldown=fo.duration("cooldown", 300.0),
                failback_after=None if failback is False else fo.duration("failback_after", 600.0),
                allow_unknown=fo.boolean("allow_unknown", True), pools=pools)
            endpoint = fo.mapping("endpoint", None)
            if endpoint is not None:
                kw["failover_endpoint"] = _receiver(endpoint, endpoint.line, default_name="cdn-control",
                                                    kinds=("command",))
    operator = top.mapping("operator", None)
    if operator is not None:
        operator.check_keys({"silence_default"})
        kw["silence_default"] = operator.duration("silence_default", 3600.0)
    return ServiceConfig(rules=rules, **kw)


def _url(section: Section, key: str, line: int) -> str:
    url = section.string(key, env=True).strip()
    if url and not url.startswith(("http://", "https://")):
        section.fail(key, f"expected an http(s) URL, got {url!r}", line)
    return url


def _receiver(s: Section, line: int, default_name: str | None = None,
              kinds: tuple | None = None) -> Receiver | None:
    s.check_keys({"name", "url", "secret", "kinds"} - ({"kinds"} if kinds else set()))
    name = s.string("name", default_name) if default_name else s.string("name")
    url = _url(s, "url", line)
    if not url:
        return None
    secret = s.string("secret", None, env=True) or None
    if kinds is None:
        kinds = []
        for kind, kline, kpath in s.items("kinds"):
            if kind not in RECORD_KINDS:
                raise ConfigError(s.file, kline, kpath,
                                  f"unknown record kind {kind!r} (expected: {', '.join(RECORD_KINDS)})")
            kinds.append(kind)
        kinds = tuple(kinds) or ("alert", "failover")
    return Receiver(name, url, secret, kinds)
