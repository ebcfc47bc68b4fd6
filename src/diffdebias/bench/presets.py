"""Benchmark presets, declared in one place: grids of datasets x methods x seeds.

A preset is a list of grids; a grid is the product of its dataset cells, methods and seeds.
Overrides are `--set`-style hyperparameters applied to every method that declares the key (so a
DDB generator budget reaches the DDB recipes and any later method with the same settings).
Methods marked optional (e.g. `diffubias`, being added in parallel) join the grid once they are
registered and are skipped with a note until then.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..data.registry import get_entry
from ..errors import ConfigError
from ..hparams import declared_keys, declares
from ..recipes import METHODS

RATIOS = (0.5, 1.0, 2.0, 5.0)
# No-bias control: the attribute is drawn independently of the class (dataset option).
CONTROL = {"bias_mode": "independent"}


@dataclass(frozen=True)
class Cell:
    """One dataset configuration: a dataset at a ratio with dataset options."""

    dataset: str
    ratio: float | None = None
    data_options: dict[str, Any] = field(default_factory=dict)

    @property
    def tag(self) -> str:
        if self.data_options.get("bias_mode") == "independent":
            return f"{self.dataset}_control"
        extra = "".join(f"_{k}{v}" for k, v in sorted(self.data_options.items()))
        return (self.dataset if self.ratio is None else f"{self.dataset}_r{self.ratio:g}") + extra


@dataclass(frozen=True)
class MethodEntry:
    name: str
    overrides: dict[str, Any] = field(default_factory=dict)
    optional: bool = False  # skipped (with a note) while the method is not registered


# What a grid's seed varies: "run" (the training seed only; the seeds of a cell share one data split
# and one generator / synthetic set, so their spread leaves out those sources of variance) or "all"
# (the seed is also the data split's seed, data.seed, and the generator's, gen.seed).
SEED_SCOPES = ("run", "all")


@dataclass(frozen=True)
class Grid:
    cells: tuple[Cell, ...]
    methods: tuple[MethodEntry, ...]
    seeds: tuple[int, ...]
    seed_scope: str = "run"


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    grids: tuple[Grid, ...]
    overrides: dict[str, Any] = field(default_factory=dict)  # applied where a method declares the key
    cost: str = ""  # the whole grid's size and run time, printed by `bench --dry-run`


@dataclass(frozen=True)
class RunSpec:
    """One run of the grid; `run_dir` is relative to the benchmark's output folder."""

    method: str
    dataset: str
    ratio: float | None
    seed: int
    overrides: dict[str, Any]
    data_options: dict[str, Any]
    run_dir: str
    log_with: tuple[str, ...] = ()  # trackers (tracking.py): bench --log-with


def _methods(*names: str, optional: tuple[str, ...] = ()) -> tuple[MethodEntry, ...]:
    return tuple(MethodEntry(n) for n in names) + tuple(MethodEntry(n, optional=True) for n in optional)


CPU_METHODS = _methods("erm", "gce", "lff", "jtt", "jtt_weighted", "groupdro", "resample_oracle", "dfr_oracle", "ddb1", "ddb1_errset", "ddb2", "ddb",
                       optional=("diffubias",))  # fmt: skip
CPU_DATASETS = ("colored_fmnist", "corrupted_fmnist", "background_fmnist")
CPU_CELLS = tuple(Cell(d, r) for d in CPU_DATASETS for r in RATIOS) + tuple(Cell(d, None, CONTROL) for d in CPU_DATASETS)
# Data and generator seeds of the final grid: never used while choosing defaults (development runs used
# data seed 1; the first cpu preset of 2026-11-29 used data seed 0 for every run).
CPU_SEEDS = (2, 3, 4)

# Tiny budgets: the plumbing of every stage (generator, sampler, BA, DiffuBias's candidates and
# generation, recipe), not accuracy. DiffuBias shares DDB's 40-step generator.
SMOKE_OVERRIDES = {"epochs": 2, "batch_size": 512, "gen.max_steps": 40, "syn_per_class": 16, "sampler_steps": 3, "ba_epochs": 2,
                   "bias_epochs": 2, "num_candidates": 8, "audit": False}

PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset(
            "smoke",
            "Colored Fashion-MNIST at rho = 1%: ERM, the Group DRO oracle and DDB-II with a 40-step generator, 2 epochs, "
            "2 seeds, and DiffuBias on the same generator, 1 seed; plus the no-bias control with ERM. Checks every stage end to end.",
            (
                Grid((Cell("colored_fmnist", 1.0),), _methods("erm", "groupdro", "ddb2"), (0, 1)),
                Grid((Cell("colored_fmnist", 1.0),), _methods("diffubias"), (0,)),
                Grid((Cell("colored_fmnist", None, CONTROL),), _methods("erm"), (0,)),
            ),
            SMOKE_OVERRIDES,
            "8 runs with tiny budgets (the test suite runs this preset: tests/test_bench_report.py)",
        ),
        Preset(
            "cpu",
            "Colored, Corrupted and Background Fashion-MNIST at rho in {0.5, 1, 2, 5}% and their no-bias controls (attribute "
            "independent of the class), every classifier-debiasing method at its CPU defaults (groupdro and resample_oracle "
            "are oracles), 3 seeds; each seed is also the data split's and the generator's seed.",
            (Grid(CPU_CELLS, CPU_METHODS, CPU_SEEDS, seed_scope="all"),),
            {},
            "15 cells x 13 methods x 3 seeds = 585 runs and 45 generators (one per cell and seed); on 2 CPU cores, one "
            "thread per run and two runs side by side, several days of run time: run it in parts (bench --only) and "
            "archive each finished run (BENCHMARKS.md)",
        ),
        Preset(
            "paper",
            "The DDB paper's datasets at paper-scale settings (64 px generator with DDB's reference UNet and 100k steps, "
            "ResNet classifiers, dataset defaults from hparams.py), 3 seeds. For GPU machines; needs the datasets' files.",
            (
                Grid(
                    (Cell("waterbirds"), Cell("bar", 1.0), Cell("bffhq", 0.5), Cell("imagenet9")),
                    _methods("erm", "lff", "jtt", "groupdro", "ddb1", "ddb1_errset", "ddb2", optional=("diffubias",)),
                    (0, 1, 2),
                ),
            ),
            {"syn_per_class": 1000, "sampler": "ddpm", "sampler_steps": 1000, "device": "auto"},
            "GPU days: 4 generators at 100k steps plus 96 runs with ResNet classifiers (12 of them DiffuBias)",
        ),
    )
}


def get_preset(name: str) -> Preset:
    if name not in PRESETS:
        raise ConfigError(f"unknown preset '{name}'; valid: {', '.join(PRESETS)}")
    return PRESETS[name]


def expand(preset: Preset, notes: list[str] | None = None, extra: dict[str, Any] | None = None) -> list[RunSpec]:
    """Every run of `preset`, in grid order; unregistered optional methods are noted and skipped.

    `extra` overrides (e.g. device=cuda) apply on top of the preset's, where a method declares the key."""
    specs: list[RunSpec] = []
    for grid in preset.grids:
        for cell in grid.cells:
            for entry in grid.methods:
                if entry.name not in METHODS:
                    if not entry.optional:
                        raise ConfigError(f"preset '{preset.name}': method '{entry.name}' is not registered")
                    if notes is not None and f"{entry.name}: not registered, skipped" not in notes:
                        notes.append(f"{entry.name}: not registered, skipped")
                    continue
                keys = declared_keys(entry.name)
                overrides = {k: v for k, v in {**preset.overrides, **(extra or {})}.items() if declares(keys, k)} | entry.overrides
                for seed in grid.seeds:
                    seeded, data_options = _seeded(grid, cell, keys, seed)
                    specs.append(RunSpec(entry.name, cell.dataset, cell.ratio, seed, overrides | seeded, data_options,
                                         f"{cell.tag}/{entry.name}/seed{seed}"))  # fmt: skip
    return specs


def _seeded(grid: Grid, cell: Cell, keys: dict[str, Any], seed: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """The overrides and data options that `grid.seed_scope` ties to the run's seed."""
    if grid.seed_scope not in SEED_SCOPES:
        raise ConfigError(f"grid seed_scope {grid.seed_scope!r}: valid {', '.join(SEED_SCOPES)}")
    if grid.seed_scope == "run":
        return {}, dict(cell.data_options)
    if "seed" not in get_entry(cell.dataset).options:
        raise ConfigError(f"seed_scope 'all': dataset '{cell.dataset}' has no 'seed' option to vary its split with")
    return ({"gen.seed": seed} if "gen" in keys else {}), {**cell.data_options, "seed": seed}
