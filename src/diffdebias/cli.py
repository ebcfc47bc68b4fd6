"""The `diffdebias` command line."""

from __future__ import annotations

import os
import sys

import click

from ._version import __version__
from .cli_common import RegistryChoice, config_option, dataset_options, friendly_errors, log_with_option, parse_sets, settings_from
from .data.registry import dataset_names, get_entry, load_dataset, resolve_root


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(__version__, prog_name="diffdebias")
def main() -> None:
    """Diffusion models against dataset bias: DDB, DiffuBias, DDM and faithful baselines.

    Every training command also runs under `accelerate launch` / `torchrun` on several processes
    (README, "Several GPUs and clusters"); only the main process then prints and writes run files."""
    from .distributed import current, launched

    if launched() and not current().is_main:
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - for the life of the process


@main.group(invoke_without_command=True)
@click.pass_context
def datasets(ctx: click.Context) -> None:
    """List every registered dataset, whether its files were found, and where it looked."""
    if ctx.invoked_subcommand is not None:
        return
    rows = []
    for name in dataset_names():
        entry = get_entry(name)
        root = resolve_root(entry, None)
        missing = entry.missing_files(root)
        rows.append((name, "found" if not missing else "missing", str(root), entry.description))
    width = max(len(r[0]) for r in rows)
    for name, status, root, desc in rows:
        click.echo(f"{name:<{width}}  {status:<7}  {root}\n{'':<{width}}  {desc}")
    click.echo("\nUse --root DIR with any command to point at another folder; `diffdebias datasets show NAME` for details.")


@datasets.command("show")
@click.argument("name")
@dataset_options
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Dataset option, e.g. --set val_mode=uniform.")
@friendly_errors
def datasets_show(name: str, root: str | None, ratio: float | None, sets: tuple[str, ...]) -> None:
    """Split sizes and the y x b group-count table of dataset NAME."""
    entry = get_entry(name)
    options = {k.removeprefix("data."): v for k, v in parse_sets(sets).items()}
    ds = load_dataset(name, root=root, ratio=ratio, **options)
    click.echo(f"{name}: {entry.description}")
    click.echo(f"root: {ds.info.get('root')}   ratio: {ds.info.get('ratio')}   classes: {ds.num_classes}   bias values: {ds.num_bias or 'unknown'}")
    click.echo(f"images: {ds.spec.channels} x {ds.spec.size} x {ds.spec.size}")
    for split_name, split in ds.splits.items():
        frac = ds.conflicting_fraction(split_name)
        extra = f"   bias-conflicting: {100 * frac:.2f}%" if frac is not None else ""
        click.echo(f"\n[{split_name}] {len(split)} samples{extra}")
        click.echo(ds.group_counts(split_name).to_string())


@main.command("run")
@click.argument("method", type=RegistryChoice("diffdebias.recipes", "METHODS", "method"))
@click.option("--dataset", required=True, help="Registered dataset name (see `diffdebias datasets`).")
@dataset_options
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", type=click.Path(file_okay=False), default=None, help="Run directory (default runs/DATASET_rRATIO/METHOD/seedS).")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Hyperparameter override; data.KEY=VALUE sets a dataset option.")
@click.option("--ba-source", type=RegistryChoice("diffdebias.stages.bias_amplifier", "BA_SOURCES", "Bias Amplifier source"), default=None,
              help="DDB recipes: train the Bias Amplifier on synthetic images (default) or on the real data (ablation).")
@click.option("--captioner", type=RegistryChoice("diffdebias.diffubias.captioners", "CAPTIONERS", "captioner", ("auto",)), default=None,
              help="DiffuBias: captioner backend (auto: none for local-conditional, transformers for diffusers-t2i).")
@click.option("--generator", type=RegistryChoice("diffdebias.diffubias.generators", "GENERATORS", "generator"), default=None,
              help="DiffuBias: generator backend (default local-conditional: offline, no download).")
@click.option("--captioner-model", default=None, help="DiffuBias: image-to-text model folder or repository id in the local HF cache.")
@click.option("--t2i-model", default=None, help="DiffuBias: text-to-image pipeline folder or repository id in the local HF cache.")
@click.option("--resume", is_flag=True, help="Continue an interrupted run from its last checkpoint.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars (for logs).")
@log_with_option
@config_option
@click.pass_context
@friendly_errors
def run_cmd(ctx, method, dataset, root, ratio, seed, out, sets, ba_source, captioner, generator, captioner_model, t2i_model, resume, quiet, log_with) -> None:
    """Train METHOD (erm, gce, lff, jtt, groupdro, ddb1, ddb1_errset, ddb2, diffubias) on a dataset; writes results.json
    and config.yaml (rerun it with --config)."""
    from .cli_common import split_data_options
    from .run import run_method
    from .report_text import results_line

    data_opts, overrides = split_data_options(settings_from(ctx, sets))
    if ba_source:
        overrides["ba_source"] = ba_source
    backend = {"captioner": captioner, "generator": generator, "captioner_model": captioner_model, "t2i_model": t2i_model}
    overrides.update({k: v for k, v in backend.items() if v is not None})
    results = run_method(
        method, dataset, root=root, ratio=ratio, seed=seed, out=out, overrides=overrides,
        data_options=data_opts, resume=resume, quiet=quiet, log_with=log_with,
    )  # fmt: skip
    click.echo(results_line(results))


@main.command("quickstart")
@click.option("--out", type=click.Path(file_okay=False), default="runs/quickstart", show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--quiet", "-q", is_flag=True)
@friendly_errors
def quickstart_cmd(out: str, seed: int, quiet: bool) -> None:
    """The main job: debiasing methods side by side on Colored Fashion-MNIST at rho = 1%."""
    from pathlib import Path

    from .quickstart import quickstart

    quickstart(Path(out), seed=seed, quiet=quiet, echo=click.echo)


@main.group()
def diffusion() -> None:
    """Class-conditional diffusion with classifier-free guidance (DDB step A)."""


@diffusion.command("train")
@click.option("--dataset", required=True)
@dataset_options
@click.option("--out", type=click.Path(file_okay=False), default=None, help="Run directory (default: the cache, keyed by data + config).")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Diffusion setting (see DiffusionConfig); data.KEY=VALUE for dataset options.")
@click.option("--resume/--no-resume", default=True, show_default=True, help="Continue an interrupted run in the same directory.")
@click.option("--quiet", "-q", is_flag=True)
@log_with_option
@config_option
@click.pass_context
@friendly_errors
def diffusion_train(ctx, dataset, root, ratio, out, sets, resume, quiet, log_with) -> None:
    """Train a class-conditional diffusion model on a dataset's training split."""
    from .cli_common import split_data_options
    from .diffusion.train import DiffusionConfig, LossHook, train_diffusion

    data_opts, overrides = split_data_options(settings_from(ctx, sets))
    DiffusionConfig.from_overrides(overrides)  # unknown keys fail before the data loads
    data = load_dataset(dataset, root=root, ratio=ratio, **data_opts)
    cfg = DiffusionConfig.resolve(data, overrides)
    hook = LossHook()
    with _generator_tracking(log_with, out or hook.cache_dir(data, cfg), "diffusion", data, cfg.to_dict()):
        run_dir = train_diffusion(data, cfg, out, resume=resume, quiet=quiet, hook=hook)
    _write_generator_run_file(run_dir, "diffusion train", data, cfg.to_dict())
    click.echo(f"diffusion model: {run_dir}")


def _generator_tracking(log_with: tuple[str, ...], run_dir, kind: str, data, settings: dict):
    """The tracking session of a generator's training (its folder: `run_dir`)."""
    from pathlib import Path

    from .tracking import session

    return session(log_with, Path(run_dir), f"{kind}-{data.name}", {"dataset": data.name, "ratio": data.info.get("ratio"), "settings": settings})


def _write_generator_run_file(run_dir, command: str, data, settings: dict) -> None:
    """config.yaml of a generator run: `diffdebias COMMAND --config` on it gives the same generator."""
    from .diffusion.train import SPEED_SETTINGS
    from .distributed import current
    from .runfile import write_run_file

    if current().is_main:
        config = {"dataset": data.name, "root": data.info.get("root"), "ratio": data.info.get("ratio"),
                  "data_options": data.info.get("options", {}), "hparams": {k: v for k, v in settings.items() if k not in SPEED_SETTINGS}}  # fmt: skip
        write_run_file(run_dir / "config.yaml", config, command)


@diffusion.command("sample")
@click.option("--run", "run_dir", required=True, type=click.Path(exists=True, file_okay=False), help="A trained diffusion run directory.")
@click.option("--per-class", type=int, required=True)
@click.option("--sampler", type=RegistryChoice("diffdebias.diffusion.schedulers", "SAMPLERS", "sampler"), default="dpmpp", show_default=True)
@click.option("--steps", type=int, default=10, show_default=True)
@click.option("--w", type=float, default=1.0, show_default=True, help="Guidance weight (DDB convention; diffusers guidance_scale = 1 + w).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--snapshot", type=int, default=None, help="Sample from the snapshot saved at this step.")
@click.option("--out", type=click.Path(file_okay=False), default=None, help="Output folder (default: the cache, keyed by all of the above).")
@click.option("--batch-size", type=int, default=64, show_default=True)
@click.option("--quiet", "-q", is_flag=True)
@friendly_errors
def diffusion_sample(run_dir, per_class, sampler, steps, w, seed, snapshot, out, batch_size, quiet) -> None:
    """Generate PER_CLASS images of every class into a synthetic dataset folder."""
    from pathlib import Path

    from .diffusion.synthetic import generate_synthetic

    folder = generate_synthetic(Path(run_dir), per_class, sampler=sampler, steps=steps, w=w, seed=seed, snapshot=snapshot,
                                out=Path(out) if out else None, batch_size=batch_size, quiet=quiet)  # fmt: skip
    click.echo(f"synthetic set: {folder}")


@diffusion.command("export")
@click.argument("run_dir", metavar="RUN", type=click.Path(exists=True, file_okay=False))
@click.argument("out_dir", metavar="DIR", type=click.Path(file_okay=False))
@click.option("--audit", "audit_json", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Audit figures for the model card: the JSON of `diffdebias diffusion audit --json-out`.")
@click.option("--dataset", default=None, help="Or measure them now: the real dataset (with bias labels) the generator was trained on.")
@dataset_options
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="data.KEY=VALUE dataset options (with --dataset).")
@click.option("--per-class", type=int, default=100, show_default=True, help="Images per class sampled for the audit (with --dataset).")
@click.option("--quiet", "-q", is_flag=True)
@friendly_errors
def diffusion_export(run_dir, out_dir, audit_json, dataset, root, ratio, sets, per_class, quiet) -> None:
    """Export the trained generator RUN as a diffusers-style folder DIR (UNet in safetensors, scheduler, model card);
    DDB and DiffuBias runs use it with --set gen.from=DIR, the Python API with Generator.from_pretrained(DIR)."""
    import json
    from pathlib import Path

    from .cli_common import split_data_options
    from .diffusion.export import export_generator

    if audit_json and dataset:
        raise click.UsageError("give --audit FILE or --dataset NAME, not both")
    audit = json.loads(Path(audit_json).read_text()) if audit_json else None
    if dataset:
        from .audit import audit_synthetic
        from .diffusion.synthetic import generate_synthetic

        data_opts, _ = split_data_options(parse_sets(sets))
        data = load_dataset(dataset, root=root, ratio=ratio, **data_opts)
        sampling = {"sampler": "dpmpp", "steps": 10, "w": 1.0}
        folder = generate_synthetic(Path(run_dir), per_class, **sampling, quiet=quiet)
        audit = {**audit_synthetic(load_dataset("synthetic", root=folder), data), "sampling": {"per_class": per_class, **sampling}}
    folder = export_generator(Path(run_dir), Path(out_dir), audit=audit)
    click.echo(f"exported generator: {folder}  (use it with --set gen.from={folder}, or Generator.from_pretrained('{folder}'))")


@diffusion.command("audit")
@click.option("--synthetic", "synth_dir", required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--dataset", required=True, help="The real dataset (with bias labels) the generator was trained on.")
@dataset_options
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="data.KEY=VALUE dataset options.")
@click.option("--json-out", type=click.Path(dir_okay=False), default=None)
@friendly_errors
def diffusion_audit(synth_dir, dataset, root, ratio, sets, json_out) -> None:
    """Conditional accuracy and bias alignment rate of a synthetic set (bias labels for evaluation only)."""
    from .cli_common import split_data_options
    from .audit import audit_summary, audit_synthetic
    from .io import write_json_atomic

    data_opts, _ = split_data_options(parse_sets(sets))
    data = load_dataset(dataset, root=root, ratio=ratio, **data_opts)
    synth = load_dataset("synthetic", root=synth_dir)
    report = audit_synthetic(synth, data)
    click.echo(audit_summary(report))
    if json_out:
        write_json_atomic(json_out, report)


@main.command("collect")
@click.argument("directory", type=click.Path(exists=True, file_okay=False))
@click.option("--split", type=click.Choice(["test", "val"]), default="test", show_default=True)
@click.option("--policy", type=RegistryChoice("diffdebias.engine.selection", "POLICIES", "selection policy"), default=None,
              help="Report non-oracle runs at the epoch this policy selects (default: each run's own selection).")
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False), default=None, help="Also write the table as CSV.")
@click.option("--by-ratio", "by_ratio", multiple=True, metavar="METRIC",
              help="Also one table per dataset of METRIC: methods x ratios, plus the no-bias control (e.g. unbiased_acc); repeatable.")
@click.option("--targets", "targets_of", default=None, metavar="METHOD",
              help="Instead, check METHOD's goals (ahead of the best label-free baseline by more than the larger std; within 1.5 points "
                   "of ERM on the controls) and name the failing stage where one is missed.")
@click.option("--stage-checks", "stage_checks", type=click.Path(exists=True, file_okay=False), default=None, metavar="DIR",
              help="With --targets: runs of METHOD with ba_source=real on some of the grid's seeds, which tell the generator from the "
                   "BA's ranking where the grid's own real-data BA has another architecture.")
@friendly_errors
def collect_cmd(directory: str, split: str, policy: str | None, csv_path: str | None, by_ratio: tuple[str, ...], targets_of: str | None,
                stage_checks: str | None) -> None:  # fmt: skip
    """Mean +- std over seeds of every complete run under DIRECTORY (markdown, optional CSV)."""
    from pathlib import Path

    from .collect import find_results, runs_frame, summary_table, tables_markdown
    from .targets import check_targets, verdicts_markdown

    results = find_results(Path(directory))
    if not results:
        raise click.ClickException(f"no complete run (results.json + COMPLETE) under {directory}")
    if stage_checks and not targets_of:
        raise click.UsageError("--stage-checks goes with --targets METHOD")
    if targets_of:
        checks = find_results(Path(stage_checks)) if stage_checks else []
        click.echo(verdicts_markdown(check_targets(results, targets_of, checks), targets_of), nl=False)
        return
    frame = runs_frame(results, split, policy)
    table = summary_table(frame)
    click.echo(tables_markdown(table, frame, by_ratio, split), nl=False)
    if csv_path:
        from .io import atomic_path

        with atomic_path(csv_path) as tmp:
            table.to_csv(tmp, index=False)


@main.group()
def ddm() -> None:
    """Debiasing Diffusion Model (fair generation) and fairness metrics for any generator."""


@ddm.command("train")
@click.option("--dataset", required=True)
@dataset_options
@click.option("--out", type=click.Path(file_okay=False), default=None, help="Run directory (default: the cache, keyed by data + config).")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="DDM setting: alpha, groups=given|inferred, num_groups, sign, balanced, init=RUN_DIR, or any diffusion setting; data.KEY=VALUE for dataset options.")
@click.option("--resume/--no-resume", default=True, show_default=True, help="Continue an interrupted run in the same directory.")
@click.option("--quiet", "-q", is_flag=True)
@log_with_option
@config_option
@click.pass_context
@friendly_errors
def ddm_train(ctx, dataset, root, ratio, out, sets, resume, quiet, log_with) -> None:
    """Train a class-conditional generator with the DDM objective (pixel space)."""
    from .cli_common import split_data_options
    from .ddm.train import DDMConfig, DDMHook, train_ddm

    data_opts, overrides = split_data_options(settings_from(ctx, sets))
    DDMConfig.from_overrides(overrides)  # unknown keys fail before the data loads
    data = load_dataset(dataset, root=root, ratio=ratio, **data_opts)
    cfg = DDMConfig.resolve(data, overrides)
    with _generator_tracking(log_with, out or DDMHook().cache_dir(data, cfg), "ddm", data, cfg.to_dict()):
        run_dir = train_ddm(data, cfg, out, resume=resume, quiet=quiet)
    _write_generator_run_file(run_dir, "ddm train", data, cfg.to_dict())
    click.echo(f"DDM generator: {run_dir}  (sample it with `diffdebias diffusion sample --run {run_dir} ...`)")


@ddm.command("eval")
@click.option("--samples", "samples", required=True, type=click.Path(exists=True, file_okay=False),
              help="images.npy [+ labels.npy], image files, or sub-folders named by condition id.")
@click.option("--dataset", required=True, help="The real dataset whose bias b is the attribute (labels used for evaluation only).")
@dataset_options
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="data.KEY=VALUE dataset options.")
@click.option("--fid-inception", type=click.Path(dir_okay=False), default=None, help="Local Inception-v3 FID weights file; without it no FID is computed.")
@click.option("--n-boot", type=int, default=1000, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--json-out", type=click.Path(dir_okay=False), default=None)
@friendly_errors
def ddm_eval(samples, dataset, root, ratio, sets, fid_inception, n_boot, seed, json_out) -> None:
    """FD and per-group proportions (bootstrap CIs), SPD across conditions, in-domain Frechet distance, FID."""
    from pathlib import Path

    from .cli_common import split_data_options
    from .ddm.evaluate import evaluate_folder
    from .io import write_json_atomic

    data_opts, _ = split_data_options(parse_sets(sets))
    data = load_dataset(dataset, root=root, ratio=ratio, **data_opts)
    r = evaluate_folder(Path(samples), data, n_boot=n_boot, seed=seed, fid_weights=Path(fid_inception) if fid_inception else None)
    names = r["group_names"] or [str(i) for i in range(r["num_groups"])]
    ov = r["overall"]
    props = ", ".join(f"{n} {p:.3f} [{lo:.3f}, {hi:.3f}]" for n, p, (lo, hi) in zip(names, ov["proportions"], ov["proportions_ci"]))
    click.echo(f"{r['num_samples']} samples; attribute classifier test acc {r['attribute_classifier_test_acc']:.1f}%")
    click.echo(f"FD {ov['fd']:.4f} [{ov['fd_ci'][0]:.4f}, {ov['fd_ci'][1]:.4f}]   proportions: {props}")
    for c, pc in r.get("per_condition", {}).items():
        click.echo(f"  condition {c}: FD {pc['fd']:.4f} [{pc['fd_ci'][0]:.4f}, {pc['fd_ci'][1]:.4f}]   proportions {pc['proportions']}")
    if "spd" in r:
        click.echo(f"SPD {r['spd']:.4f}   mean per-condition FD {r['fd_cond_mean']:.4f}")
    click.echo(f"in-domain Frechet distance (fd_inclf) {r['fd_inclf']:.4f}   (in-domain classifier test acc {r['inclf']['test_acc']:.1f}%)")
    if "fid" in r:
        click.echo(f"FID {r['fid']:.3f}")
    if json_out:
        write_json_atomic(json_out, r)


@ddm.command("lora")
@click.option("--model", "model_dir", required=True, type=click.Path(exists=True, file_okay=False),
              help="Local diffusers text-to-image model folder (unet/, vae/, text_encoder/, tokenizer/, scheduler/).")
@click.option("--dataset", required=True)
@dataset_options
@click.option("--out", required=True, type=click.Path(file_okay=False))
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="alpha, groups, num_groups, sign, rank, lr, max_steps, batch_size, resolution, prompt, seed, device; data.KEY=VALUE for dataset options.")
@click.option("--quiet", "-q", is_flag=True)
@friendly_errors
def ddm_lora(model_dir, dataset, root, ratio, out, sets, quiet) -> None:
    """DDM as LoRA fine-tuning (peft) of a local Stable-Diffusion-family model (for GPUs)."""
    from pathlib import Path

    from .cli_common import split_data_options
    from .ddm.lora import LoraDDMConfig, train_ddm_lora

    data_opts, overrides = split_data_options(parse_sets(sets))
    cfg = LoraDDMConfig.from_overrides(overrides)
    data = load_dataset(dataset, root=root, ratio=ratio, **data_opts)
    folder = train_ddm_lora(Path(model_dir), data, cfg, Path(out), quiet=quiet)
    click.echo(f"DDM LoRA weights: {folder}  (pipe.load_lora_weights('{folder}'))")


@main.command("bench")
@click.option("--preset", required=True, type=RegistryChoice("diffdebias.bench.presets", "PRESETS", "preset"),
              help="A preset of src/diffdebias/bench/presets.py (smoke, cpu, paper).")
@click.option("--out", type=click.Path(file_okay=False), default=None, help="Output folder (default runs/bench/PRESET).")
@click.option("--jobs", type=int, default=1, show_default=True, help="Runs in parallel (local launcher; the CPUs of a local Ray instance).")
@click.option("--launcher", default="local", show_default=True, type=RegistryChoice("diffdebias.bench.launch", "LAUNCHERS", "launcher"),
              help="How runs are dispatched: local | ray (bench/launch.py LAUNCHERS).")
@click.option("--address", default=None, metavar="ADDR", help="Ray cluster for --launcher ray: auto, HOST:6379 or ray://HOST:10001 "
              "(default $RAY_ADDRESS, else a local Ray instance with --jobs CPUs).")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Extra override for every method that declares KEY (e.g. device=cuda).")
@click.option("--only", "only", multiple=True, metavar="GLOB", help="Keep only the runs whose directory (CELL/METHOD/seedS) matches GLOB, e.g. 'colored_fmnist_*'; repeatable.")
@click.option("--dry-run", is_flag=True, help="List the runs and which are complete; run nothing.")
@click.option("--quiet/--verbose", "-q", default=True, show_default=True)
@log_with_option
@config_option
@click.pass_context
@friendly_errors
def bench_cmd(ctx: click.Context, preset: str, out: str | None, jobs: int, launcher: str, address: str | None, sets: tuple[str, ...], only: tuple[str, ...],
              dry_run: bool, quiet: bool, log_with: tuple[str, ...]) -> None:  # fmt: skip
    """Run a preset grid of methods x datasets x ratios x seeds; complete runs are skipped, so rerun to resume."""
    import dataclasses
    import fnmatch
    from pathlib import Path

    from .bench import expand, get_preset, launch
    from .bench.launch import check_launcher
    from .run import is_complete
    from .io import write_json_atomic

    p = get_preset(preset)
    check_launcher(launcher, address)
    out_dir = Path(out or f"runs/bench/{preset}")
    notes: list[str] = []
    specs = [dataclasses.replace(s, log_with=log_with) for s in expand(p, notes, settings_from(ctx, sets))]
    if only:
        specs = [s for s in specs if any(fnmatch.fnmatchcase(s.run_dir, pat) for pat in only)]
        if not specs:
            raise click.UsageError(f"--only {' '.join(only)}: no run of preset {p.name} matches; see --dry-run for the run directories")
    done = sum(is_complete(out_dir / s.run_dir) for s in specs)
    click.echo(f"preset {p.name}: {len(specs)} runs, {done} already complete, under {out_dir}")
    for n in notes:
        click.echo(f"note: {n}")
    if dry_run:
        click.echo(f"the whole preset: {p.cost}")
        for s in specs:
            click.echo(f"  {'complete' if is_complete(out_dir / s.run_dir) else 'to run':<8}  {s.run_dir}")
        return
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out_dir / "bench.json", {"preset": p.name, "description": p.description, "cost": p.cost, "notes": notes,
                                               "runs": [dataclasses.asdict(s) for s in specs]})  # fmt: skip
    outcomes = launch(specs, out_dir, launcher=launcher, jobs=jobs, quiet=quiet, echo=click.echo, address=address)
    counts = {k: sum(o.status == k for o in outcomes) for k in ("done", "skipped", "busy", "failed")}
    busy = f", {counts['busy']} running in another process (rerun once it is done)" if counts["busy"] else ""
    click.echo(f"ran {counts['done']}, skipped {counts['skipped']} complete{busy}, failed {counts['failed']}")
    _write_summary(out_dir)
    if counts["failed"]:
        raise click.ClickException(f"{counts['failed']} run(s) failed; fix the cause and rerun the same command to resume")


def _write_summary(directory) -> None:
    """summary.md and summary.csv (mean +- std per metric) next to the runs."""
    from .collect import SUMMARY_PIVOTS, find_results, runs_frame, summary_table, tables_markdown
    from .io import write_text_atomic

    results = find_results(directory)
    if results:
        frame = runs_frame(results)
        table = summary_table(frame)
        write_text_atomic(directory / "summary.md", tables_markdown(table, frame, SUMMARY_PIVOTS))
        write_text_atomic(directory / "summary.csv", table.to_csv(index=False))
        click.echo(f"tables: {directory / 'summary.md'}, {directory / 'summary.csv'}")


@main.command("report")
@click.argument("directory", type=click.Path(exists=True, file_okay=False))
@click.option("--out", "out_path", type=click.Path(dir_okay=False), default=None, help="HTML file (default DIRECTORY/report.html).")
@click.option("--audit-epochs", type=int, default=10, show_default=True, help="Epochs of the audit judges (cached per dataset).")
@click.option("--no-audit", is_flag=True, help="Skip the diffusion audit (no judge training).")
@click.option("--stage-checks", "stage_checks", type=click.Path(exists=True, file_okay=False), default=None, metavar="DIR",
              help="Runs of the recommended recipe with ba_source=real for its failing stages (as collect --targets --stage-checks).")
@friendly_errors
def report_cmd(directory: str, out_path: str | None, audit_epochs: int, no_audit: bool, stage_checks: str | None) -> None:
    """One self-contained HTML report (tables, charts, images, audit, attributions, energy) of the runs under DIRECTORY."""
    from pathlib import Path

    from .report.html import write_report

    path = write_report(Path(directory), Path(out_path) if out_path else None, audit_epochs=None if no_audit else audit_epochs, echo=click.echo,
                        stage_checks=Path(stage_checks) if stage_checks else None)  # fmt: skip
    click.echo(f"report: {path}")


if __name__ == "__main__":
    main()
