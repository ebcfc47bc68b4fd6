"""Options and helpers shared by the command-line commands."""

from __future__ import annotations

import functools
import importlib
import sys
from typing import Any, Callable

import click

from .errors import DiffDebiasError


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
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)

    return wrapper
