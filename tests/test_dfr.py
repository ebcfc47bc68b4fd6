"""DFR: ERM, then the last layer alone retrained on the validation split with group-balanced
resampling, its weight decay chosen on held-out halves of the validation split."""

import json

from safetensors.torch import load_file

from diffdebias.recipes.dfr import DFR_WEIGHT_DECAYS
from diffdebias.run import run_method

from .tiny_data import make_folder_csv, one_thread  # noqa: F401 - fixture

TINY = {"epochs": 2, "batch_size": 16, "device": "cpu", "dfr_epochs": 3}


def _run(tmp_path, model: str):
    root = make_folder_csv(tmp_path / "data", n_train=64, n_eval=32)
    out = tmp_path / model
    run_method("dfr_oracle", "folder_csv", root=str(root), out=out, overrides={**TINY, "model": model}, data_options={"image_size": 8}, quiet=True)
    return out, json.loads((out / "results.json").read_text())


def test_dfr_retrains_only_the_last_layer_and_chooses_its_weight_decay_on_heldout_validation(tmp_path, one_thread):  # noqa: F811
    for model, head in (("mlp", "net.7."), ("cnn", "fc.")):
        out, r = _run(tmp_path, model)
        base, main = load_file(out / "base.model.safetensors"), load_file(out / "main.model.safetensors")
        assert set(base) == set(main)
        for key in base:  # frozen features, BatchNorm statistics included; a new head
            assert base[key].equal(main[key]) != key.startswith(head), key
        dfr = r["notes"]["dfr"]
        assert [c["weight_decay"] for c in dfr["candidates"]] == list(DFR_WEIGHT_DECAYS)
        best = max(c["heldout_group_balanced_acc"] for c in dfr["candidates"])
        assert dfr["chosen"] == next(c["weight_decay"] for c in dfr["candidates"] if c["heldout_group_balanced_acc"] == best)
        assert r["hparams"]["weight_decay"] == 0.0 and dfr["groups"] == "bias labels (oracle)"  # the base's; the head's is chosen
        assert r["oracle"] and r["bias_labels_used"]["training"] and r["selection"] == "last"
        log = [json.loads(line) for line in (out / "main.metrics.jsonl").read_text().splitlines()]
        assert len(log) == TINY["dfr_epochs"]
