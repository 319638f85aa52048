"""Settings, declared once. A command family's settings are one frozen dataclass whose fields carry
their default, range and help text; `options(...)` turns them into the command's options.

Every option is read, first found wins, from: the command line; the environment variable
`LIVEMON_<NAME>` (shown in `--help`); the command's table of a TOML file given with
`--config livemon.toml` (e.g. `[worker]` with `web_port = 6070`); the field's default.
A nested settings dataclass (the engine's inside the worker's) contributes its fields as options
of the same command.
"""

from __future__ import annotations

import dataclasses
import functools
import tomllib
import types
import typing
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import click

ENV_PREFIX = "LIVEMON_"


def setting(default: Any = dataclasses.MISSING, help: str = "", *, flag: str | None = None,
            minimum: float | None = None, above: float | None = None, maximum: float | None = None,
            choices: tuple[str, ...] | None = None, path: str | None = None, envvar: str | None = None,
            cli: bool = True, default_factory=dataclasses.MISSING):
    """A settings field. `minimum`/`maximum` are inclusive bounds, `above` an exclusive lower one;
    `path` is "file" or "dir"; `flag` overrides the option's name; `cli=False` keeps the field
    out of the command line (set by code)."""
    meta = dict(help=help, flag=flag, minimum=minimum, above=above, maximum=maximum, choices=choices,
                path=path, envvar=envvar, cli=cli)
    if default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def _base_type(annotation):
    """int, float, str or bool of a field annotation such as `float | None`."""
    if isinstance(annotation, str):
        annotation = eval(annotation, {"typing": typing})  # noqa: S307 - our own annotations
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        args = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        return args[0]
    return annotation


def _fields(cls) -> list[tuple[dataclasses.Field, type]]:
    hints = typing.get_type_hints(cls)
    return [(f, hints[f.name]) for f in dataclasses.fields(cls)]


def _nested(kind) -> bool:
    return dataclasses.is_dataclass(kind) and isinstance(kind, type)


def _option(field: dataclasses.Field, kind, rename: dict[str, str]) -> click.Option:
    import click  # the command line's, not the settings' own: the engine declares its settings here too

    meta = field.metadata
    name = rename.get(field.name, field.name)
    flag = meta.get("flag") or "--" + name.replace("_", "-")
    envvar = meta.get("envvar") or ENV_PREFIX + name.upper()
    base = _base_type(kind)
    default = field.default if field.default is not dataclasses.MISSING else None
    if field.default is dataclasses.MISSING and field.default_factory is not dataclasses.MISSING:
        default = None  # computed at run time (e.g. the worker id)
    common: dict[str, Any] = dict(envvar=envvar, show_envvar=True, help=meta.get("help") or None,
                                  expose_value=True)
    if base is bool:
        positive = flag.removeprefix("--")
        return click.Option([f"--{positive}/--no-{positive}", field.name], default=default, show_default=True,
                            **common)
    click_type: click.ParamType
    if meta.get("choices"):
        click_type = click.Choice(meta["choices"], case_sensitive=False)
    elif meta.get("path"):
        click_type = click.Path(dir_okay=meta["path"] == "dir", file_okay=meta["path"] == "file")
    elif base in (int, float):
        low, open_low = (meta["above"], True) if meta.get("above") is not None else (meta.get("minimum"), False)
        high = meta.get("maximum")
        if low is None and high is None:
            click_type = click.INT if base is int else click.FLOAT
        elif base is int:
            click_type = click.IntRange(min=low, max=high)
        else:
            click_type = click.FloatRange(min=low, min_open=open_low, max=high)
    else:
        click_type = click.STRING
    required = field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING
    return click.Option([flag, field.name], type=click_type, default=default, required=required,
                        show_default=default is not None, **common)


def options(*classes, only: tuple[str, ...] | None = None, exclude: tuple[str, ...] = (),
            rename: dict[str, str] | None = None):
    """Decorate a click command with the options of the settings `classes` (nested ones flattened),
    restricted to `only` field names if given, without those in `exclude`; `rename` gives a field
    another option name."""
    rename = rename or {}

    def collect(cls):
        for field, kind in _fields(cls):
            if _nested(kind):
                yield from collect(kind)
            elif (field.metadata.get("cli", True) and (only is None or field.name in only)
                  and field.name not in exclude):
                yield field, kind

    def decorate(command):
        for cls in classes:
            for field, kind in reversed(list(collect(cls))):
                command = _attach(command, _option(field, kind, rename))
        return command
    return decorate


def _attach(command, option: click.Option):
    """Add an option to a command function not yet made a command (as click's decorators do)."""
    command.__click_params__ = getattr(command, "__click_params__", [])
    command.__click_params__.append(option)
    return command


def config_option(section: str):
    """`--config FILE`: the values of the TOML file's `[section]` table become the defaults."""
    import click

    def load(ctx: click.Context, param, value):
        if value is None:
            return None
        try:
            table = tomllib.loads(Path(value).read_text()).get(section, {})
        except (OSError, tomllib.TOMLDecodeError) as error:
            raise click.BadParameter(f"cannot read {value}: {error}") from None
        if not isinstance(table, dict):
            raise click.BadParameter(f"[{section}] in {value} is not a table")
        known = {p.name for p in ctx.command.params}
        unknown = sorted(set(table) - known)
        if unknown:
            raise click.BadParameter(f"unknown settings in [{section}] of {value}: {', '.join(unknown)}")
        ctx.default_map = {**(ctx.default_map or {}), **table}
        return value

    return click.option("--config", type=click.Path(exists=True, dir_okay=False), is_eager=True,
                        expose_value=False, callback=load, envvar=ENV_PREFIX + "CONFIG", show_envvar=True,
                        help=f"TOML file whose [{section}] table sets defaults for these options.")


def build(cls, values: dict[str, Any]):
    """An instance of settings class `cls` from option values (nested classes filled the same way);
    values that are None keep the field's default. Raises ValueError for invalid combinations."""
    kwargs = {}
    for field, kind in _fields(cls):
        if _nested(kind):
            kwargs[field.name] = build(kind, values)
        elif values.get(field.name) is not None:
            kwargs[field.name] = values[field.name]
    return cls(**kwargs)


@functools.cache
def names(cls) -> frozenset[str]:
    """Every field name of `cls`, nested ones included."""
    out: set[str] = set()
    for field, kind in _fields(cls):
        out |= names(kind) if _nested(kind) else {field.name}
    return frozenset(out)
