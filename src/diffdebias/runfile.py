"""YAML run files: an experiment written down once (`--config FILE.yaml`) and the `config.yaml`
every run writes, which reruns it exactly.

A run file is a mapping. A key naming an option of the command (method, dataset, root, ratio,
seed, out, ...) gives that option; every other key is a `--set` key, with the same names and
meanings: `lr: 0.001`, `data.val_mode: uniform` or `gen.max_steps: 200`. A nested mapping stands
for dotted keys (`gen: {max_steps: 200}` is `gen.max_steps: 200`). Values are read as a `--set`
string would be (by the type of the setting's default); the command line overrides the file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError
from .io import write_text_atomic

HEADER = "# diffdebias run file: rerun with `diffdebias {command} --config {path} --out NEW_DIR` (README, \"Run files\")\n"


@dataclass
class RunFile:
    """A parsed run file: the command's options and the `--set` pairs (values as strings or lists)."""

    path: Path
    options: dict[str, Any] = field(default_factory=dict)
    sets: dict[str, Any] = field(default_factory=dict)


def read_run_file(path: str | Path, option_names: set[str]) -> RunFile:
    """Parse `path`; keys in `option_names` are options, the others `--set` keys."""
    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the run file ({exc.strerror}); check the --config path") from None
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" at line {where.line + 1}" if where is not None else ""
        raise ConfigError(f"{path}: not valid YAML{line} ({getattr(exc, 'problem', exc)}); a run file is a mapping of key: value lines") from None
    if doc is None:
        doc = {}
    if not isinstance(doc, dict):
        raise ConfigError(f"{path}: a run file is a mapping of key: value lines, not a {type(doc).__name__}")
    out = RunFile(path)
    for key, value in doc.items():
        key = str(key)
        if key in option_names:
            if isinstance(value, dict):
                raise ConfigError(f"{path}: key '{key}' is an option and takes one value, not a mapping")
            out.options[key] = value
        else:
            out.sets.update(_flatten(path, key, value))
    return out


def _flatten(path: Path, key: str, value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        if not value:
            return {}
        return {k: v for sub, item in value.items() for k, v in _flatten(path, f"{key}.{sub}", item).items()}
    if value is None:
        raise ConfigError(f"{path}: key '{key}' has no value; give one, or remove the line to keep the default")
    if isinstance(value, list):
        if not all(isinstance(v, (int, float, str)) for v in value):
            raise ConfigError(f"{path}: key '{key}': a list may hold only numbers or strings")
        return {key: list(value)}
    if isinstance(value, bool):
        return {key: "true" if value else "false"}
    return {key: str(value)}  # read as a --set string is: by the type of the setting's default


def write_run_file(path: str | Path, config: dict[str, Any], command: str = "run") -> None:
    """`config.yaml` of a run of `command`: its options, its dataset options (`data.`) and every
    resolved setting (`hparams`), so that `--config` on it reruns the same configuration."""
    path = Path(path)
    doc = {k: config[k] for k in ("method", "dataset", "root", "ratio", "seed") if config.get(k) is not None}
    if config.get("data_options"):
        doc["data"] = dict(config["data_options"])
    doc.update(config.get("hparams", {}))
    write_text_atomic(path, HEADER.format(command=command, path=path) + yaml.safe_dump(doc, sort_keys=False, default_flow_style=False))
