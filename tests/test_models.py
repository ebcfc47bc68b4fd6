import pickle

import pytest
import torch
from safetensors.torch import save_file

from diffdebias.data.base import ImageSpec
from diffdebias.diffusion.models import build_unet
from diffdebias.errors import ConfigError, RunError
from diffdebias.models import build_model

SPEC32 = ImageSpec(32, 3, (0.5,) * 3, (0.5,) * 3)


@pytest.mark.parametrize("name", ["mlp", "cnn", "resnet18"])
def test_models_forward(name):
    model = build_model(name, 7, SPEC32).eval()
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 7)


def test_pretrained_weights_only_from_a_local_safe_file(tmp_path):
    source = build_model("resnet18", 10, SPEC32)
    path = tmp_path / "backbone.safetensors"
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(path))
    model = build_model("resnet18", 3, SPEC32, pretrained=str(path))
    assert torch.equal(model.layer1[0].conv1.weight, source.layer1[0].conv1.weight)
    assert model.fc.out_features == 3
    # a plain torch file of tensors loads with weights_only=True ...
    torch.save(source.state_dict(), tmp_path / "plain.pt")
    build_model("resnet18", 3, SPEC32, pretrained=str(tmp_path / "plain.pt"))
    # ... but a pickle that would run code is never executed

    class Evil:
        def __reduce__(self):
            return (exec, ("raise SystemExit('pickle executed')",))

    (tmp_path / "evil.pt").write_bytes(pickle.dumps({"conv1.weight": Evil()}))
    with pytest.raises(RunError, match="cannot load weights"):
        build_model("resnet18", 3, SPEC32, pretrained=str(tmp_path / "evil.pt"))
    with pytest.raises(ConfigError, match="pretrained"):
        build_model("mlp", 3, SPEC32, pretrained=str(path))


def test_diffusion_presets_build_and_run():
    tiny = build_unet("cpu-tiny", 10, 3, 28)
    assert 0.9e6 < sum(p.numel() for p in tiny.parameters()) < 1.2e6
    paper = build_unet("paper", 2, 3, 64).eval()
    with torch.no_grad():
        out = paper(torch.zeros(1, 3, 64, 64), 10, class_labels=torch.tensor([2])).sample  # 2 = the null class
    assert out.shape == (1, 3, 64, 64)
    with pytest.raises(ConfigError, match="valid"):
        build_unet("huge", 2, 3, 64)
