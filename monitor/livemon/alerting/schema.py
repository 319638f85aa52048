"""YAML loading that remembers where every value came from, and small typed readers on top of it.

A configuration error must name the file, the line and the field, so the loader keeps the mark of
every mapping value and list item. The readers (`Section`) pull typed values out of a mapping and
raise `ConfigError` pointing at the offending node.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import yaml


class ConfigError(ValueError):
    def __init__(self, file: str, line: int | None, field: str, message: str):
        self.file, self.line, self.field, self.message = file, line, field, message
        where = f"{file}:{line}" if line else file
        super().__init__(f"{where}: {field}: {message}" if field else f"{where}: {message}")


class MarkedDict(dict):
    """A mapping that knows its own line and the line of each of its values."""

    line: int = 0
    lines: dict


class MarkedList(list):
    line: int = 0
    lines: list


class _Loader(yaml.SafeLoader):
    pass


def _mapping(loader, node):
    loader.flatten_mapping(node)
    out = MarkedDict()
    out.line, out.lines = node.start_mark.line + 1, {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in out:
            raise ConfigError(loader.name, key_node.start_mark.line + 1, str(key), "duplicate key")
        out[key] = loader.construct_object(value_node, deep=True)
        out.lines[key] = value_node.start_mark.line + 1
    return out


def _sequence(loader, node):
    out = MarkedList(loader.construct_object(child, deep=True) for child in node.value)
    out.line, out.lines = node.start_mark.line + 1, [c.start_mark.line + 1 for c in node.value]
    return out


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)
_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _sequence)


def load_yaml(path: str | Path) -> Any:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(str(path), None, "", f"cannot read: {error.strerror}") from None
    loader = _Loader(text)
    loader.name = str(path)
    try:
        return loader.get_single_data()
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        raise ConfigError(str(path), mark.line + 1 if mark else None, "",
                          f"invalid YAML: {error.problem or error}") from None
    finally:
        loader.dispose()


_DURATION = re.compile(r"^(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m(?!s))?(?:(\d+(?:\.\d+)?)s)?(?:(\d+)ms)?$")
_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def parse_duration(value: Any) -> float:
    """Seconds from a number or a Prometheus-style duration (`90s`, `5m`, `1h30m`, `500ms`)."""
    if isinstance(value, bool):
        raise ValueError("expected a duration like 30s or 5m")
    if isinstance(value, (int, float)):
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return float(value)
    match = _DURATION.match(str(value).strip()) if value is not None else None
    if not match or not any(match.groups()):
        raise ValueError(f"expected a duration like 30s or 5m, got {value!r}")
    h, m, s, ms = (float(g) if g else 0.0 for g in match.groups())
    return h * 3600 + m * 60 + s + ms / 1000


def expand_env(text: str) -> str:
    """`${VAR}` and `${VAR:-default}`, so one file serves a laptop and a compose stack."""
    def sub(match):
        value = os.environ.get(match.group(1))
        if value is None:
            if match.group(2) is None:
                raise KeyError(match.group(1))
            return match.group(2)
        return value
    return _ENV.sub(sub, text)


_MISSING = object()


class Section:
    """Typed access to one mapping of a config file; every error names file, line and field path."""

    def __init__(self, data: Any, file: str, path: str, line: int = 0):
        self.file, self.path = file, path
        self.line = getattr(data, "line", line)
        if not isinstance(data, dict):
            self.fail("", f"expected a mapping, got {_kind(data)}")
        self.data = data

    def field(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def line_of(self, key: str) -> int:
        return getattr(self.data, "lines", {}).get(key, self.line)

    def fail(self, key: str, message: str, line: int | None = None):
        raise ConfigError(self.file, line or (self.line_of(key) if key else self.line),
                          self.field(key) if key else self.path, message)

    def check_keys(self, allowed: set[str]):
        for key in self.data:
            if key not in allowed:
                self.fail(key, f"unknown field (expected one of: {', '.join(sorted(allowed))})")

    def has(self, key: str) -> bool:
        return key in self.data and self.data[key] is not None

    def raw(self, key: str, default: Any = _MISSING) -> Any:
        if key not in self.data or self.data[key] is None:
            if default is _MISSING:
                self.fail("", f"missing required field `{key}`")
            return default
        return self.data[key]

    def string(self, key: str, default: Any = _MISSING, choices=None, env: bool = False) -> Any:
        value = self.raw(key, default)
        if value is default and default is not _MISSING:
            return value
        if not isinstance(value, str):
            self.fail(key, f"expected a string, got {_kind(value)}")
        if env:
            try:
                value = expand_env(value)
            except KeyError as missing:
                self.fail(key, f"environment variable {missing.args[0]} is not set")
        if choices is not None and value not in choices:
            self.fail(key, f"expected one of {', '.join(map(str, choices))}, got {value!r}")
        return value

    def number(self, key: str, default: Any = _MISSING, minimum: float | None = None,
               maximum: float | None = None) -> Any:
        value = self.raw(key, default)
        if value is default and default is not _MISSING:
            return value
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self.fail(key, f"expected a number, got {_kind(value)}")
        if minimum is not None and value < minimum:
            self.fail(key, f"must be >= {minimum}, got {value}")
        if maximum is not None and value > maximum:
            self.fail(key, f"must be <= {maximum}, got {value}")
        return float(value)

    def boolean(self, key: str, default: Any = _MISSING) -> Any:
        value = self.raw(key, default)
        if not isinstance(value, bool):
            self.fail(key, f"expected true or false, got {_kind(value)}")
        return value

    def duration(self, key: str, default: Any = _MISSING) -> Any:
        value = self.raw(key, default)
        if value is default and default is not _MISSING:
            return value
        try:
            return parse_duration(value)
        except ValueError as error:
            self.fail(key, str(error))

    def mapping(self, key: str, default: Any = _MISSING) -> Section | None:
        value = self.raw(key, default)
        if value is default and default is not _MISSING:
            return value
        if not isinstance(value, dict):
            self.fail(key, f"expected a mapping, got {_kind(value)}")
        return Section(value, self.file, self.field(key))

    def items(self, key: str) -> list[tuple[Any, int, str]]:
        """(item, line, field path) of a list field; an absent field is an empty list."""
        value = self.raw(key, None)
        if value is None:
            return []
        if not isinstance(value, list):
            self.fail(key, f"expected a list, got {_kind(value)}")
        lines = getattr(value, "lines", [self.line_of(key)] * len(value))
        return [(item, lines[i], f"{self.field(key)}[{i}]") for i, item in enumerate(value)]

    def string_map(self, key: str) -> dict[str, str]:
        section = self.mapping(key, None)
        if section is None:
            return {}
        out = {}
        for name, value in section.data.items():
            if not isinstance(name, str) or not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", name):
                section.fail(str(name), "label names must match [A-Za-z_][A-Za-z0-9_]*")
            if isinstance(value, (dict, list)) or value is None:
                section.fail(name, f"expected a string, got {_kind(value)}")
            out[name] = str(value)
        return out


def _kind(value: Any) -> str:
    if value is None:
        return "nothing"
    return {dict: "a mapping", MarkedDict: "a mapping", list: "a list", MarkedList: "a list",
            str: f"the string {value!r}", bool: f"the boolean {value}"}.get(
        type(value), f"{type(value).__name__} {value!r}")
