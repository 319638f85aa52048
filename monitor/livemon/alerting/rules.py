"""Alert rules: the model and the YAML rule-file format (see docs/ALERTING.md)."""

from __future__ import annotations

import operator
import re
import string
from dataclasses import dataclass, field
from pathlib import Path

from livemon import catalogue
from livemon.alerting.schema import ConfigError, Section, load_yaml
from livemon.alerting.targets import DERIVED

# What a rule may watch: the catalogue's rule metrics, and per room the figures of the show target.
ROOM_METRICS = (*catalogue.RULE_NAMES, *DERIVED)
CDN_METRICS = catalogue.CDN_RULE_NAMES
# scope `pinned`: the figures of the product pinned (讲解中) in the room, from the snapshot's products
PINNED_METRICS = tuple(metric.name for metric in catalogue.scoped("product"))
SCOPES = {"room": ROOM_METRICS, "cdn": CDN_METRICS, "pinned": PINNED_METRICS}

OPS = {">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le}
SEVERITIES = ("critical", "warning", "info")
ACTIONS = ("notify", "failover")
TEMPLATE_FIELDS = {"rule", "room", "cdn", "product", "value", "threshold", "baseline", "severity"}
_RULE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class Anomaly:
    """A rolling EWMA baseline of the metric; the rule fires when a sample leaves it.

    `direction` drop: value < mean * (1 - min_change) and z < -z; spike: the mirror image.
    """

    direction: str
    min_change: float
    halflife: float
    warmup: float
    z: float = 3.0
    min_baseline: float = 0.0      # a baseline mean below this never alerts (e.g. 0 orders/min)
    relearn_after: float | None = None   # accept a sustained new level after this long


@dataclass(frozen=True)
class Rule:
    name: str
    metric: str
    scope: str = "room"                  # room | cdn | pinned
    op: str = ">"
    threshold: float | None = None       # fire threshold (threshold rules)
    clear: float | None = None           # clear threshold; None = same as threshold
    anomaly: Anomaly | None = None
    short: str | None = None             # the same figure over a short window (threshold rules)
    short_volume_metric: str | None = None   # the short window's own minimum volume, if any
    short_volume_min: float = 0.0
    for_: float = 0.0
    keep_firing_for: float = 0.0
    volume_metric: str | None = None
    volume_min: float = 0.0
    severity: str = "warning"
    labels: dict = field(default_factory=dict)
    annotations: dict = field(default_factory=dict)
    actions: tuple = ("notify",)
    source: str = ""                     # file:line, for messages

    def worst(self, values: dict):
        """The rule's value in `values`: its metric's, or with `short` the worse of the two windows'
        (the condition holds when either window breaches); None when neither has one."""
        value = values.get(self.metric)
        if self.short is None:
            return value
        other = values.get(self.short)
        if other is not None and self.short_volume_metric is not None:
            volume = values.get(self.short_volume_metric)
            if volume is None or volume < self.short_volume_min:
                other = None  # too few samples in the short window: no data there
        if value is None or other is None:
            return other if value is None else value
        return max(value, other) if self.op in (">", ">=") else min(value, other)

    def breaches(self, value: float, *, firing: bool) -> bool:
        """Whether a threshold rule's condition holds; a firing alert holds until the clear line."""
        limit = self.clear if firing and self.clear is not None else self.threshold
        return OPS[self.op](value, limit)

    def render(self, text: str, **values) -> str:
        return string.Formatter().vformat(text, (), _Lenient(values))


class _Lenient(dict):
    def __missing__(self, key):
        return ""


def _check_template(section: Section, key: str, text: str):
    try:
        fields = {f for _, f, _, _ in string.Formatter().parse(text) if f is not None}
    except ValueError as error:
        section.fail(key, f"bad template: {error}")
    unknown = {f.split(".")[0].split("[")[0] for f in fields} - TEMPLATE_FIELDS - {""}
    if unknown:
        section.fail(key, f"unknown template field(s) {', '.join(sorted(unknown))} "
                          f"(known: {', '.join(sorted(TEMPLATE_FIELDS))})")
    try:
        Rule("x", "x").render(text, rule="r", room="r", cdn="c", product="p", value=0.5, threshold=0.5,
                              baseline=0.5, severity="s")
    except (ValueError, TypeError, KeyError, IndexError) as error:
        section.fail(key, f"bad template: {error}")


def parse_rule(item, file: str, line: int, path: str) -> Rule:
    s = Section(item, file, path, line)
    s.check_keys({"name", "metric", "short", "scope", "op", "threshold", "clear", "anomaly", "for",
                  "keep_firing_for", "min_volume", "severity", "labels", "annotations", "actions"})
    name = s.string("name")
    if not _RULE_NAME.match(name):
        s.fail("name", "must match [A-Za-z_][A-Za-z0-9_]* (it becomes the alertname label)")
    scope = s.string("scope", "room", choices=tuple(SCOPES))
    names = SCOPES[scope]
    metric = s.string("metric")
    if metric not in names:
        s.fail("metric", f"unknown {scope} metric {metric!r} (known: {', '.join(names)})")
    op = s.string("op", ">", choices=tuple(OPS))
    short, short_volume = None, (None, 0.0)
    if s.has("short"):
        if isinstance(s.raw("short", None), dict):
            m = s.mapping("short")
            m.check_keys({"metric", "min_volume"})
            short = m.string("metric")
            if m.has("min_volume"):
                v = m.mapping("min_volume")
                v.check_keys({"metric", "value"})
                short_volume = (v.string("metric"), v.number("value", minimum=0.0))
                if short_volume[0] not in names:
                    v.fail("metric", f"unknown {scope} metric {short_volume[0]!r} (known: {', '.join(names)})")
        else:
            short = s.string("short")
    if short is not None:
        if short not in names:
            s.fail("short", f"unknown {scope} metric {short!r} (known: {', '.join(names)})")
        declared = {m.name: m for m in catalogue.scoped({"pinned": "product"}.get(scope, scope))}
        if short == metric or declared[short].format != declared[metric].format:
            s.fail("short", f"the short window's metric must be another window of {metric!r} "
                            f"(the same unit), not {short!r}")
        if s.has("anomaly"):
            s.fail("short", "a short window goes with a threshold, not with `anomaly`")

    anomaly = None
    threshold = clear = None
    if s.has("anomaly"):
        if s.has("threshold") or s.has("clear"):
            s.fail("anomaly", "a rule has either `threshold` or `anomaly`, not both")
        a = s.mapping("anomaly")
        a.check_keys({"direction", "min_change", "halflife", "warmup", "z", "min_baseline",
                      "relearn_after"})
        anomaly = Anomaly(
            direction=a.string("direction", choices=("drop", "spike")),
            min_change=a.number("min_change", minimum=0.0),
            halflife=a.duration("halflife", 120.0),
            warmup=a.duration("warmup", 120.0),
            z=a.number("z", 3.0, minimum=0.0),
            min_baseline=a.number("min_baseline", 0.0),
            relearn_after=a.duration("relearn_after", None),
        )
        if anomaly.halflife <= 0:
            a.fail("halflife", "must be > 0")
        if anomaly.direction == "drop" and anomaly.min_change >= 1:
            a.fail("min_change", "a drop is a fraction of the baseline, below 1")
    else:
        threshold = s.number("threshold")
        clear = s.number("clear", None)
        if clear is not None and OPS[op](clear, threshold) and clear != threshold:
            s.fail("clear", f"the clear threshold must be on the healthy side of the threshold "
                            f"(for `{op} {threshold:g}` it must not be {op} {threshold:g})")

    volume_metric, volume_min = None, 0.0
    if s.has("min_volume"):
        v = s.mapping("min_volume")
        v.check_keys({"metric", "value"})
        volume_metric = v.string("metric", "viewers")
        if volume_metric not in names:
            v.fail("metric", f"unknown {scope} metric {volume_metric!r} (known: {', '.join(names)})")
        volume_min = v.number("value", minimum=0.0)

    annotations = s.string_map("annotations")
    ann_section = s.mapping("annotations", None)
    for key, text in annotations.items():
        _check_template(ann_section, key, text)
    labels = s.string_map("labels")
    for reserved in ("alertname", "room", "cdn", "product", "severity"):
        if reserved in labels:
            s.mapping("labels").fail(reserved, "is set by the evaluator; choose another label name")

    actions = []
    for action, aline, apath in s.items("actions"):
        if action not in ACTIONS:
            raise ConfigError(file, aline, apath, f"unknown action {action!r} "
                                                  f"(expected one of: {', '.join(ACTIONS)})")
        actions.append(action)
    if "failover" in actions and scope != "cdn":
        s.fail("actions", "failover needs a per-CDN rule (scope: cdn)")

    return Rule(
        name=name, metric=metric, scope=scope, op=op, threshold=threshold, clear=clear,
        anomaly=anomaly, short=short, short_volume_metric=short_volume[0], short_volume_min=short_volume[1], for_=s.duration("for", 0.0), keep_firing_for=s.duration("keep_firing_for", 0.0),
        volume_metric=volume_metric, volume_min=volume_min,
        severity=s.string("severity", "warning", choices=SEVERITIES), labels=labels,
        annotations=annotations, actions=tuple(actions) if s.has("actions") else ("notify",),
        source=f"{file}:{line}",
    )


def parse_rules(data, file: str) -> list[Rule]:
    top = Section(data, file, "")
    rules, seen = [], {}
    for item, line, path in top.items("rules"):
        rule = parse_rule(item, file, line, path)
        if rule.name in seen:
            raise ConfigError(file, line, f"{path}.name",
                              f"duplicate rule name {rule.name!r} (first at line {seen[rule.name]})")
        seen[rule.name] = line
        rules.append(rule)
    return rules


def load_rules(*paths: str | Path) -> list[Rule]:
    """Rules of one or more rule files (each a mapping with a `rules:` list)."""
    rules: list[Rule] = []
    names: dict[str, str] = {}
    for path in paths:
        data = load_yaml(path)
        top = Section(data, str(path), "")
        top.check_keys({"rules"})
        for rule in parse_rules(data, str(path)):
            if rule.name in names:
                file, line = rule.source.rsplit(":", 1)
                raise ConfigError(file, int(line), "name",
                                  f"rule {rule.name!r} is also defined at {names[rule.name]}")
            names[rule.name] = rule.source
            rules.append(rule)
    return rules
