"""The shared training loop: every trainer trains through `Engine.train_stage`.

A stage (e.g. 'main', or JTT's 'jtt_stage1') checkpoints its complete state at the end of each
epoch into one safetensors file, so `--resume` continues it exactly; a finished stage leaves a
`<stage>.done.json` and is reloaded, not retrained, when asked for again.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from .. import energy, tracking
from ..data.base import BiasedDataset, Split
from ..distributed import current, swapped
from ..errors import RunError
from ..records import Notes
from ..io import append_jsonl, check_output_dir, remove_stale_temps, write_json_atomic, write_text_atomic
from ..trainers.base import Trainer, TrainerContext, TrainerInputs
from ..runtime import all_finite, channels_last_input, derived_seed, seed_everything, speed_settings
from ..state import load_state, save_state, save_weights, stage_weights, weights_copy
from .augment import build_augment
from .metrics import classification_metrics, pseudo_group_metrics
from .selection import get_policy, select_epoch


@dataclass
class StageResult:
    stage: str
    trainer: Trainer
    history: list[dict]
    selected: dict
    wall_time_s: float


class Engine:
    """Trains and evaluates methods on one dataset inside one run directory."""

    def __init__(self, data: BiasedDataset, run_dir: Path, seed: int, device: torch.device, *, quiet: bool = False, resume: bool = False):
        self.data = data
        self.run_dir = Path(run_dir)
        self.seed = seed
        self.device = device
        self.quiet = quiet
        self.resume = resume
        self.notes = Notes()  # facts for results.json, set by the stages that make them
        self.stage_times: dict[str, float] = {}
        self.dist = current()
        train = data.split("train")
        self.train_counts = data.group_counts("train").to_numpy()[:, : data.num_bias] if train.has_bias_labels and data.num_bias else None

    # --- evaluation ------------------------------------------------------------
    @torch.no_grad()
    def predict(self, model: torch.nn.Module, split: Split, batch_size: int = 1024, num_workers: int = 0) -> np.ndarray:
        return self.logits(model, split, batch_size, num_workers).argmax(1).numpy()

    def logits(self, model: torch.nn.Module, split: Split, batch_size: int = 1024, num_workers: int = 0) -> torch.Tensor:
        """Logits of every sample of `split`, in order (sharded over processes and gathered)."""
        return split_logits(model, split, self.device, batch_size, num_workers)

    def evaluate(self, model: torch.nn.Module, hp: dict, pseudo_groups: dict[str, torch.Tensor] | None = None) -> dict[str, dict]:
        """Metrics of every non-training split; `pseudo_groups` adds the pseudo-group metrics."""
        result = {}
        for name, split in self.data.splits.items():
            if name == "train":
                continue
            logits = self.logits(model, split, hp["eval_batch_size"], hp["num_workers"])
            preds = logits.argmax(1).numpy()
            result[name] = classification_metrics(
                preds, split.y.numpy(), split.b.numpy(), self.data.num_classes, self.data.num_bias, self.train_counts,
                self.data.info.get("bias_factors"), torch.softmax(logits.float(), 1).numpy(),
            )
            if pseudo_groups and name in pseudo_groups:
                result[name].update(pseudo_group_metrics(preds, split.y.numpy(), pseudo_groups[name].numpy()))
        return result

    def autocast(self, enabled: bool):
        return autocast(self.device, enabled)

    # --- training --------------------------------------------------------------
    def train_stage(self, stage: str, trainer_cls: type[Trainer], hp: dict, *, inputs: TrainerInputs | None = None) -> StageResult:
        """Train `trainer_cls` with `hp` and a recipe's `inputs` as stage `stage`, resuming or
        reloading what exists."""
        ckpt = self.run_dir / f"{stage}.ckpt.safetensors"
        done = self.run_dir / f"{stage}.done.json"
        seed_everything(derived_seed(self.seed, stage))
        trainer = trainer_cls(TrainerContext(self.data, hp, self.device, inputs or TrainerInputs(), self.dist))
        gen = torch.Generator().manual_seed(derived_seed(self.seed, stage + "/data"))
        policy = get_policy(hp["selection"])
        state = {"epoch": 0, "history": [], "elapsed": 0.0, "best_score": None, "best_weights": None}
        info = _read_done(done)
        if info is not None or (ckpt.exists() and self.resume):
            state = self._restore(ckpt, trainer, gen)
            if info is not None:
                self.stage_times[stage] = info["wall_time_s"]
                return StageResult(stage, trainer, state["history"], info["selected"], info["wall_time_s"])
            if self.dist.is_main:
                remove_stale_temps(self.run_dir)
                write_text_atomic(self._log_path(stage), "".join(json.dumps(r, sort_keys=True) + "\n" for r in state["history"]))
        elif ckpt.exists():
            raise RunError(f"{ckpt}: an unfinished stage exists in this run directory; pass --resume to continue it or choose another --out")
        elif self.dist.is_main:
            self._log_path(stage).unlink(missing_ok=True)
        check_output_dir(self.run_dir, expected_bytes(trainer))
        with energy.stage(stage):
            self._fit(stage, trainer, hp, gen, policy, state, ckpt)
        selected = select_epoch(state["history"], policy.name)
        best = state["best_weights"] if policy.val_metric is not None else None
        weights = best if best is not None else trainer.eval_model().state_dict()
        self.stage_times[stage] = state["elapsed"]
        if self.dist.is_main:
            save_weights(stage_weights(self.run_dir, stage), weights, {"epoch": str(selected["epoch"])})
            write_json_atomic(done, {"selected": selected, "wall_time_s": state["elapsed"], "epochs": len(state["history"])})
        self.dist.barrier()  # the stage's files exist before any process goes on
        return StageResult(stage, trainer, state["history"], selected, state["elapsed"])

    def _log_path(self, stage: str) -> Path:
        return self.run_dir / f"{stage}.metrics.jsonl"

    def _fit(self, stage, trainer, hp, gen, policy, state, ckpt) -> None:
        train = trainer.train_split()
        modules, optimizers = trainer.modules(), trainer.optimizers()
        dist = self.dist
        cl = speed_settings(modules.values(), self.device, channels_last=hp["channels_last"], compile=hp["compile"])
        ddp = {k: w for k, w in ((k, dist.wrap(m)) for k, m in modules.items()) if w is not modules[k]}
        steps_per_epoch = -(-trainer.epoch_size() // hp["batch_size"])
        schedulers = self._schedulers(optimizers, hp, steps_per_epoch)
        if state.get("schedulers"):
            for name, sch in schedulers.items():
                sch.load_state_dict(state["schedulers"][name])
        augment = build_augment(hp, train.spec.size)
        for epoch in range(state["epoch"], hp["epochs"]):
            t0 = time.perf_counter()
            for m in modules.values():
                m.train()
            indices = trainer.epoch_indices(gen)
            bar = tqdm(total=len(indices), desc=f"{stage} {epoch + 1}/{hp['epochs']}", unit="img", disable=self.quiet or not dist.is_main, leave=False)
            loss_sum, n_seen, n_local = 0.0, 0, 0
            train_stats = tracking.Means()  # the trainer's statistics (weights), while tracking
            # global batches; with several processes each takes its block (a last batch smaller than
            # the number of processes is dropped, so that every process has samples)
            chunks = [c for c in torch.split(indices, hp["batch_size"]) if len(c) >= dist.size]
            for n_global, (x, y, _, idx) in zip((len(c) for c in chunks), iterate_chunks(train, [dist.block(c) for c in chunks], hp["num_workers"])):
                x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
                if augment is not None:
                    x = augment(x, gen, n_global, dist.block_slice(n_global))
                x = channels_last_input(x, cl)
                with self.autocast(hp["amp"]), swapped(trainer, ddp):
                    loss, stats = trainer.loss(x, y, idx)
                train_stats.add(stats, len(y))
                if not torch.isfinite(loss):
                    raise RunError(f"stage '{stage}' epoch {epoch + 1}: the loss became {float(loss.detach())}; {_numerical_advice(ckpt)}")
                for opt in optimizers.values():
                    opt.zero_grad(set_to_none=True)
                dist.weighted(loss, len(y), n_global).backward()
                if hp["grad_clip"] > 0:
                    for m in modules.values():
                        torch.nn.utils.clip_grad_norm_(m.parameters(), hp["grad_clip"])
                for opt in optimizers.values():
                    opt.step()
                for sch in schedulers.values():
                    sch.step()
                loss_sum += float(loss.detach()) * len(y)
                n_seen, n_local = n_seen + n_global, n_local + len(y)
                bar.update(n_global)
                bar.set_postfix(loss=f"{loss_sum / n_local:.4f}", refresh=False)
            bar.close()
            if dist.active:  # the global batches' mean loss, as one process would log it
                loss_sum = float(dist.sum(torch.tensor([loss_sum], dtype=torch.float64)))
            train_time = time.perf_counter() - t0
            metrics = self.evaluate(trainer.eval_model(), hp, trainer.eval_groups)
            state["elapsed"] += time.perf_counter() - t0
            row = {"stage": stage, "epoch": epoch + 1, "train_loss": loss_sum / max(n_seen, 1), "train_img_per_s": n_seen / max(train_time, 1e-9), **metrics}
            state["history"].append(row)
            score = row.get("val", {}).get(policy.val_metric) if policy.val_metric else None
            if score is not None and (state["best_score"] is None or score > state["best_score"]):
                state["best_score"] = score
                state["best_weights"] = weights_copy(trainer.eval_model())
            state["epoch"] = epoch + 1
            if state["epoch"] % hp["checkpoint_every"] == 0 or state["epoch"] == hp["epochs"]:
                self._checkpoint(ckpt, trainer, gen, schedulers, state)
            if dist.is_main:
                append_jsonl(self._log_path(stage), row)
            tracking.log_scalars({**{k: v for k, v in row.items() if k not in ("stage", "epoch")}, "train": train_stats.means()}, epoch + 1, prefix=stage)
            if not self.quiet and dist.is_main:
                val, test = row.get("val", {}), row.get("test", {})
                tqdm.write(
                    f"[{stage}] epoch {epoch + 1}/{hp['epochs']} loss {row['train_loss']:.4f} "
                    f"val avg {_fmt(val.get('avg_acc'))} unbiased {_fmt(val.get('unbiased_acc'))} | "
                    f"{row['train_img_per_s']:.0f} img/s"
                )

    def _schedulers(self, optimizers, hp, steps_per_epoch) -> dict:
        if hp["schedule"] == "none":
            return {}
        if hp["schedule"] == "cosine":
            total = max(1, hp["epochs"] * steps_per_epoch)
            return {k: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=total) for k, o in optimizers.items()}
        raise RunError(f"unknown schedule '{hp['schedule']}'; valid: none, cosine")

    def _checkpoint(self, path: Path, trainer: Trainer, gen: torch.Generator, schedulers: dict, state: dict) -> None:
        for name, module in trainer.modules().items():
            if not all_finite(module.state_dict().values()):
                raise RunError(f"epoch {state['epoch']}: model '{name}' holds non-finite weights; {_numerical_advice(path)}")
        if not self.dist.is_main:
            return
        save_state(
            path,
            {
                "epoch": state["epoch"],
                "elapsed": state["elapsed"],
                "history_json": json.dumps(state["history"]),
                "best_score": state["best_score"],
                "best_weights": state["best_weights"],
                "modules": {k: m.state_dict() for k, m in trainer.modules().items()},
                "optimizers": {k: o.state_dict() for k, o in trainer.optimizers().items()},
                "schedulers": {k: s.state_dict() for k, s in schedulers.items()},
                "extra": trainer.extra_state(),
                "gen": gen.get_state(),
                "torch_rng": torch.get_rng_state(),
            },
        )

    def _restore(self, path: Path, trainer: Trainer, gen: torch.Generator) -> dict:
        if not path.exists():
            raise RunError(f"{path}: the checkpoint of a finished stage is missing; delete {path.parent} to rerun")
        st = load_state(path)
        for k, m in trainer.modules().items():
            m.load_state_dict(st["modules"][k])
        for k, o in trainer.optimizers().items():
            o.load_state_dict(st["optimizers"][k])
        trainer.load_extra_state(st["extra"])
        gen.set_state(st["gen"])
        torch.set_rng_state(st["torch_rng"])
        return {
            "epoch": st["epoch"],
            "elapsed": st["elapsed"],
            "history": json.loads(st["history_json"]),
            "best_score": st["best_score"],
            "best_weights": st["best_weights"],
            "schedulers": st["schedulers"],
        }


def autocast(device: torch.device, enabled: bool = True):
    """bf16 autocast on CUDA (when `enabled`); full precision on the CPU."""
    on = enabled and device.type == "cuda"
    return torch.autocast("cuda", dtype=torch.bfloat16, enabled=on) if on else torch.autocast("cpu", enabled=False)


@torch.no_grad()
def split_logits(model: torch.nn.Module, split: Split, device: torch.device, batch_size: int = 1024, num_workers: int = 0) -> torch.Tensor:
    """Logits of every sample of `split`, in order (sharded over the processes of a launch and gathered)."""
    dist = current()
    was_training = model.training
    model.eval()
    out = []
    for x, _, _, _ in iterate_batches(split, dist.block(torch.arange(len(split))), batch_size, num_workers):
        with autocast(device):
            out.append(model(x.to(device, non_blocking=True)).float().cpu())
    model.train(was_training)
    return dist.gather(torch.cat(out))


def iterate_batches(split: Split, indices: torch.Tensor, batch_size: int, num_workers: int = 0) -> Iterator[tuple]:
    """(x, y, b, idx) batches in the order of `indices`; in-memory splits skip the DataLoader."""
    yield from iterate_chunks(split, list(torch.split(indices, batch_size)), num_workers)


def iterate_chunks(split: Split, chunks: list[torch.Tensor], num_workers: int = 0) -> Iterator[tuple]:
    """(x, y, b, idx) batches, one per chunk of indices; in-memory splits skip the DataLoader."""
    if split.in_memory:
        for chunk in chunks:
            yield split.batch(chunk)
        return
    loader = DataLoader(split, batch_sampler=[c.tolist() for c in chunks], num_workers=num_workers, persistent_workers=False)
    yield from loader


def _read_done(path: Path) -> dict | None:
    """A finished stage's record, or None; a damaged one is removed (the stage is then resumed from
    its final checkpoint, never taken from a record that does not parse)."""
    if not path.exists():
        return None
    try:
        info = json.loads(path.read_text())
        if isinstance(info, dict) and "selected" in info and "wall_time_s" in info:
            return info
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        pass
    path.unlink(missing_ok=True)
    return None


def expected_bytes(trainer: Trainer) -> int:
    """Disk space a stage needs: a checkpoint (weights, optimiser state, best weights) twice while
    it is replaced atomically, the final weights, and a margin."""
    weights = sum(t.numel() * t.element_size() for m in trainer.modules().values() for t in m.state_dict().values())
    return 9 * weights + 16 * 2**20


def _numerical_advice(ckpt: Path) -> str:
    last = f"the last good checkpoint {ckpt} is intact" if ckpt.exists() else "no checkpoint was written yet"
    return f"{last}. A non-finite value usually means too high a learning rate: start a new run (another --out) with a lower --set lr=... or --set grad_clip=1.0"


def _fmt(value) -> str:
    return "-" if value is None else f"{value:.2f}"
