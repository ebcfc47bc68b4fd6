"""DFR (Kirichenko et al. 2023, "Last layer re-training is sufficient for robustness to spurious
correlations"), its DFR^Tr_Val form: ERM on the training set (stage `base`), then the last layer
re-initialised and retrained on the VALIDATION split with group-balanced resampling (LastLayer).
The head's weight decay is chosen among DFR_WEIGHT_DECAYS by the group-balanced accuracy (mean over
non-empty groups) on one half of the validation split after retraining on the other half; the
paper's worst-group accuracy is undefined where groups are empty or hold a single sample, as at a
1% ratio. The main stage then retrains the head on the whole validation split and keeps its last
epoch (the validation metrics of a DFR run are on its own training data).

`dfr_oracle` takes the validation groups from the true (class, bias) labels: an oracle. `ddb1_dfr`
takes them from DDB's Bias Amplifier (class x BA-predicted class, no bias labels); with the
safeguard and no bias found they are one group per class (the head is refit class-balanced)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..engine.metrics import pseudo_group_metrics
from ..errors import ConfigError
from ..records import DFRNote
from ..runtime import derived_seed
from ..stages.bias_amplifier import ba_sources, bias_amplifier_groups, no_bias_found
from ..state import weights_copy
from ..trainers import ERM, LastLayer, TrainerInputs
from .base import Recipe

DFR_WEIGHT_DECAYS = (0.0, 1e-4, 1e-3, 1e-2, 1e-1)
GROUP_SOURCES = ("labels", "bias_amplifier")


@dataclass(frozen=True)
class DFR(Recipe):
    name: str = "dfr_oracle"
    trainer: type = LastLayer
    groups_from: str = "labels"

    def uses_bias_labels(self, hp):
        return self.groups_from == "labels"

    def trains_generator(self, hp):
        return self.groups_from == "bias_amplifier" and "synthetic" in ba_sources(hp)

    def inputs(self, engine, hp):
        val = engine.data.split("val")
        groups = self.val_groups(engine, hp)
        head_hp = {**hp, "epochs": hp["dfr_epochs"], "selection": "last"}
        base = engine.train_stage("base", ERM, {**hp, "selection": "last"})
        weights = weights_copy(base.trainer.eval_model())
        halves = torch.randperm(len(val), generator=torch.Generator().manual_seed(derived_seed(engine.seed, "dfr/halves")))
        fit, score = halves[: len(val) // 2], halves[len(val) // 2 :]
        rows = []
        for wd in DFR_WEIGHT_DECAYS:
            stage = engine.train_stage(f"dfr_wd{wd:g}", LastLayer, {**head_hp, "weight_decay": wd},
                                       inputs=TrainerInputs(train_split=val.subset(fit), groups=groups[fit], init_weights=weights))  # fmt: skip
            preds = engine.logits(stage.trainer.eval_model(), val.subset(score), hp["eval_batch_size"], hp["num_workers"]).argmax(1)
            acc = pseudo_group_metrics(preds.numpy(), val.y[score].numpy(), groups[score].numpy())["pseudo_unbiased_acc"]
            rows.append({"weight_decay": wd, "heldout_group_balanced_acc": acc})
        chosen = max(rows, key=lambda r: r["heldout_group_balanced_acc"])["weight_decay"]  # the first (weakest) on ties
        source = "bias labels (oracle)" if self.groups_from == "labels" else "Bias Amplifier"
        engine.notes.dfr = DFRNote(source, rows, chosen)
        return TrainerInputs(train_split=val, groups=groups, init_weights=weights, eval_groups={"val": groups},
                             hparams={"epochs": hp["dfr_epochs"], "selection": "last", "weight_decay": chosen})  # fmt: skip

    def val_groups(self, engine, hp) -> torch.Tensor:
        """A group id per validation sample: (class, bias) cells, or the BA's pseudo-groups."""
        data, val = engine.data, engine.data.split("val")
        if self.groups_from == "labels":
            if not val.has_bias_labels or not data.num_bias:
                raise ConfigError(f"{self.name} needs bias labels on every validation sample; this dataset has none (use ddb1_dfr)")
            return val.y * data.num_bias + val.b
        if self.groups_from != "bias_amplifier":
            raise ConfigError(f"DFR groups_from {self.groups_from!r}: valid {', '.join(GROUP_SOURCES)}")
        inferred = bias_amplifier_groups(engine, hp)["val"]
        return val.y.clone() if no_bias_found(engine, hp) else inferred.groups(val.y)
