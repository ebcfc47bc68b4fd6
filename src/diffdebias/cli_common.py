"""Options and helpers shared by the command-line commands."""

from __future__ import annotations

import functools
import importlib
import re
import sys
from typing import Any, Callable

import click

from . import tracking
from .errors import ConfigError, DiffDebiasError
from .runfile import RunFile, read_run_file


class RegistryChoice(click.ParamType):
    """One of the names of a registry (`module.attr`), read from it when a value is checked, so that
    the choices are never copied by hand and the CLI imports a heavy module only when a command runs."""

    name = "choice"

    def __init__(self, module: str, attr: str, what: str, extra: tuple[str, ...] = ()):
        self.module, self.attr, self.what, self.extra = module, attr, what, extra

    def choices(self) -> list[str]:
        return [*self.extra, *getattr(importlib.import_module(self.module), self.attr)]

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        names = self.choices()
        if value not in names:
            self.fail(f"unknown {self.what} {value!r}; valid: {', '.join(names)}", param, ctx)
        return value


def parse_sets(pairs: tuple[str, ...]) -> dict[str, str]:
    """`--set key=value` pairs -> dict (values stay strings; the consumer coerces them)."""
    out: dict[str, str] = {}
    for pair in pairs:
        if "=" not in pair:
            raise click.BadParameter(f"{pair!r} is not key=value", param_hint="--set")
        key, value = pair.split("=", 1)
        out[key.strip()] = value.strip()
    return out


def config_option(fn: Callable) -> Callable:
    """--config FILE.yaml: the command's options and `--set` keys from a run file (runfile.py);
    the command line overrides the file."""
    return click.option("--config", "config_file", type=click.Path(exists=True, dir_okay=False), default=None, is_eager=True,
                        expose_value=False, callback=_load_config, metavar="FILE.yaml",
                        help="Run file (YAML) with this command's options and --set keys; the command line overrides it.")(fn)  # fmt: skip


def _load_config(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    if value is None:
        return
    params = {p.name: p for p in ctx.command.params if p.name not in ("sets", None) and p is not param}
    try:
        run_file = read_run_file(value, set(params))
    except ConfigError as exc:
        raise click.BadParameter(str(exc), ctx, param) from None
    defaults = {}
    for name, raw in run_file.options.items():
        p = params[name]
        raw = raw if not getattr(p, "multiple", False) or isinstance(raw, list) else [raw]
        try:
            defaults[name] = p.type_cast_value(ctx, raw)
        except click.BadParameter as exc:
            raise click.BadParameter(f"{value}: key '{name}': {exc.message}", ctx, param) from None
    ctx.default_map = {**(ctx.default_map or {}), **defaults}
    ctx.meta["run_file"] = run_file


def log_with_option(fn: Callable) -> Callable:
    """--log-with tensorboard|wandb|mlflow (repeatable): live curves through Accelerate's trackers, offline by default."""
    return click.option("--log-with", "log_with", multiple=True, metavar="TRACKER", callback=_check_trackers,
                        help=f"Log curves, images and settings to {' | '.join(tracking.TRACKERS)} (repeatable; offline, under RUN/tracking/).")(fn)  # fmt: skip


def _check_trackers(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> tuple[str, ...]:
    try:
        return tracking.check(value)
    except ConfigError as exc:
        raise click.BadParameter(str(exc), ctx, param) from None


def settings_from(ctx: click.Context, sets: tuple[str, ...]) -> dict[str, Any]:
    """The `--set` pairs of the run file (if any) with the command line's on top."""
    run_file: RunFile | None = ctx.meta.get("run_file")
    return {**(run_file.sets if run_file else {}), **parse_sets(sets)}


def split_data_options(sets: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Separate `data.KEY=...` dataset options from hyperparameters."""
    data = {k[5:]: v for k, v in sets.items() if k.startswith("data.")}
    rest = {k: v for k, v in sets.items() if not k.startswith("data.")}
    return data, rest


def dataset_options(fn: Callable) -> Callable:
    """--dataset / --root / --ratio, shared by every command that loads a dataset."""
    fn = click.option("--ratio", type=float, default=None, help="Percent of bias-conflicting training samples (datasets with ratios).")(fn)
    fn = click.option("--root", type=click.Path(file_okay=False), default=None, help="Folder holding the dataset's files.")(fn)
    return fn


def friendly_errors(fn: Callable) -> Callable:
    """Turn the project's own errors into a one-paragraph message and exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except DiffDebiasError as exc:
            click.echo(f"error: {_from_run_file(exc)}{exc}", err=True)
            sys.exit(2)

    return wrapper


def _from_run_file(exc: DiffDebiasError) -> str:
    """'FILE: ' when a configuration error quotes a key that the --config run file set."""
    ctx = click.get_current_context(silent=True)
    run_file: RunFile | None = ctx.meta.get("run_file") if ctx else None
    if run_file is None or not isinstance(exc, ConfigError):
        return ""
    quoted = set(re.findall(r"'([^']+)'", str(exc)))
    return f"{run_file.path}: " if quoted & {*run_file.sets, *run_file.options} else ""
