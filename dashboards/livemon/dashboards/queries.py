"""Every PromQL expression the dashboards and the Prometheus rule files run, and the metric selectors
inside each, so a test can run them all against a real Prometheus.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[3]  # the repository: dashboards/livemon/dashboards/queries.py
DASHBOARD_DIR = Path(__file__).parent / "json"
RULE_DIR = ROOT / "alerts" / "prometheus"


@dataclass(frozen=True)
class Query:
    source: str   # where it was found, for the failure message
    expr: str
    kind: str     # "panel", "variable", "annotation", "record", "alert"
    instant: bool = True  # False: Grafana runs it as a range query over the dashboard's time range


def dashboard_queries(directory: Path = DASHBOARD_DIR) -> list[Query]:
    found = []
    for path in sorted(directory.glob("*.json")):
        model = json.loads(path.read_text())
        for panel in _panels(model.get("panels", [])):
            for target in panel.get("targets", []):
                if target.get("expr"):
                    found.append(Query(f"{path.name}: panel {panel.get('title')!r} {target.get('refId')}",
                                       target["expr"], "panel", bool(target.get("instant"))))
        for variable in model.get("templating", {}).get("list", []):
            if variable.get("type") == "query":
                query = variable["query"]
                query = query.get("query", "") if isinstance(query, dict) else query
                found.append(Query(f"{path.name}: variable ${variable['name']}", query, "variable"))
        for annotation in model.get("annotations", {}).get("list", []):
            if annotation.get("expr"):
                found.append(Query(f"{path.name}: annotation {annotation['name']!r}", annotation["expr"],
                                   "annotation", instant=False))
    return found


def _panels(panels):
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))  # collapsed rows hold their panels


def rule_files(directory: Path = RULE_DIR) -> list[Path]:
    return sorted(directory.glob("*.yml"))


def rule_queries(paths=None) -> list[Query]:
    found = []
    for path in paths if paths is not None else rule_files():
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                kind, name = ("record", rule["record"]) if "record" in rule else ("alert", rule["alert"])
                found.append(Query(f"{path.name}: {group['name']} / {name}", rule["expr"], kind))
    return found


def recorded_names(paths=None) -> set[str]:
    return {query.source.rsplit(" / ", 1)[1] for query in rule_queries(paths) if query.kind == "record"}


# --- Grafana template syntax -> plain PromQL -----------------------------------------------------

LABEL_VALUES = re.compile(r"^\s*label_values\(\s*(.+?)\s*,\s*([a-zA-Z_]\w*)\s*\)\s*$")


def to_promql(expr: str, variables: dict[str, str]) -> str:
    """Substitute Grafana variables ($room, ${room}, $__rate_interval...) and turn a
    `label_values(selector, label)` variable query into the selector it reads."""
    match = LABEL_VALUES.match(expr)
    if match:
        expr = match.group(1)
    builtins = {"__rate_interval": "1m", "__interval": "15s", "__range": "5m"}
    values = {**builtins, **variables}
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: values[m.group(1) or m.group(2)], expr)


# --- selectors -------------------------------------------------------------------------------------

_TOKEN = re.compile(r"""
    (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)
  | (?P<range>\[[^\]]*\])
  | (?P<braces>\{)
  | (?P<number>(?:\d+(?:ms|s|m|h|d|w|y))+|0x[0-9a-fA-F]+|\d*\.?\d+(?:[eE][+-]?\d+)?)
  | (?P<ident>[a-zA-Z_:][a-zA-Z0-9_:]*)
  | (?P<other>\S)
""", re.VERBOSE)
_KEYWORDS = {
    "and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right", "bool",
    "offset", "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values",
    "bottomk", "topk", "quantile", "inf", "nan", "atan2",
}
_LABEL_LISTS = {"by", "without", "on", "ignoring", "group_left", "group_right"}


def selectors(expr: str) -> list[str]:
    """The vector selectors of a PromQL expression (`name{matchers}`, without range or offset),
    in order: what must exist in Prometheus for the expression to mean anything."""
    tokens = []
    position = 0
    while position < len(expr):
        match = _TOKEN.match(expr, position)
        if match is None:  # whitespace
            position += 1
            continue
        if match.lastgroup == "braces":
            end = _closing_brace(expr, match.start())
            tokens.append(("braces", expr[match.start():end]))
            position = end
            continue
        tokens.append((match.lastgroup, match.group()))
        position = match.end()

    found = []
    index = 0
    while index < len(tokens):
        kind, text = tokens[index]
        following = tokens[index + 1] if index + 1 < len(tokens) else (None, None)
        if kind == "ident" and text in _LABEL_LISTS and following[1] == "(":
            index = _skip_parens(tokens, index + 1)
            continue
        if kind == "ident" and following[1] == "(":  # a function call or aggregation
            index += 1
            continue
        if kind == "ident" and text.lower() not in _KEYWORDS:
            if following[0] == "braces":
                found.append(text + following[1])
                index += 2
                continue
            found.append(text)
        elif kind == "braces":  # {__name__=...} without a metric name
            found.append(text)
        index += 1
    return found


def _closing_brace(expr: str, start: int) -> int:
    position = start + 1
    while position < len(expr) and expr[position] != "}":
        if expr[position] in "\"'`":
            quote = expr[position]
            position += 1
            while position < len(expr) and expr[position] != quote:
                position += 2 if expr[position] == "\\" else 1
        position += 1
    return position + 1


def _skip_parens(tokens, index) -> int:
    depth = 0
    while index < len(tokens):
        if tokens[index][1] == "(":
            depth += 1
        elif tokens[index][1] == ")":
            depth -= 1
            if depth == 0:
                return index + 1
        index += 1
    return index
