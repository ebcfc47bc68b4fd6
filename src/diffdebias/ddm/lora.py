"""DDM as LoRA fine-tuning of a diffusers latent text-to-image model (Stable Diffusion family).

As in the official code: the UNet of a model loaded from a LOCAL folder (diffusers layout:
`unet/`, `vae/`, `text_encoder/`, `tokenizer/`, `scheduler/`) gets LoRA adapters through peft
(attention projections, as diffusers' text-to-image LoRA example); images are encoded by the VAE,
captioned with a prompt template per class, and the loss is (1 - alpha) * MSE + alpha *
CE(indicator(eps_pred), g) with the indicator on the flattened predicted latent noise (v-prediction
models: converted to epsilon as in `indicator.py`). One AdamW optimises the LoRA weights and the
indicator. Groups are given or inferred exactly as for `ddm train`. The result is a folder with
`pytorch_lora_weights.safetensors` (load it with `pipe.load_lora_weights(folder)`),
`indicator.safetensors`, `config.json`, `groups.json`, `train_log.jsonl` and `COMPLETE`.
Meant for GPUs; the tests run it on a tiny random model built from configs.
"""

from __future__ import annotations

import dataclasses
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from ..data.base import BiasedDataset, ImageSpec
from ..distributed import current
from ..errors import ConfigError, RunError
from ..config import Settings
from ..io import append_jsonl, write_json_atomic
from ..runtime import resolve_device, seed_everything
from ..state import save_weights
from .groups import resolve_groups
from .indicator import Indicator, ddm_loss, predicted_noise

COMPONENTS = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")


@dataclass
class LoraDDMConfig(Settings):
    """Settings of DDM's LoRA fine-tuning (defaults after diffusers' text-to-image LoRA example)."""

    what: ClassVar[str] = "DDM LoRA setting"

    alpha: float = 0.05
    groups: str = "given"
    num_groups: int = 0
    sign: str = "faithful"
    rank: int = 4
    lr: float = 1e-4
    max_steps: int = 1000
    batch_size: int = 1
    resolution: int = 0  # 0: the UNet's sample size times the VAE's scale factor
    prompt: str = "a photo of a {class_name}"
    grad_clip: float = 1.0
    seed: int = 0
    device: str = "auto"

    def check(self) -> None:
        if not 0.0 <= self.alpha <= 1.0:
            raise ConfigError(f"DDM LoRA setting 'alpha' must be in [0, 1], got {self.alpha}")


def load_components(model_dir: Path) -> dict[str, Any]:
    """UNet, VAE, text encoder, tokenizer and noise scheduler from a local diffusers folder (no downloads)."""
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    model_dir = Path(model_dir)
    missing = [c for c in COMPONENTS if not (model_dir / c).is_dir()]
    if missing:
        raise ConfigError(f"--model {model_dir}: missing sub-folder(s) {', '.join(missing)}; expected a diffusers text-to-image model folder ({', '.join(COMPONENTS)})")
    kw = {"local_files_only": True}
    return {
        "unet": UNet2DConditionModel.from_pretrained(model_dir, subfolder="unet", use_safetensors=True, **kw),
        "vae": AutoencoderKL.from_pretrained(model_dir, subfolder="vae", use_safetensors=True, **kw),
        "text_encoder": CLIPTextModel.from_pretrained(model_dir, subfolder="text_encoder", use_safetensors=True, **kw),
        "tokenizer": CLIPTokenizer.from_pretrained(model_dir, subfolder="tokenizer", **kw),
        "scheduler": DDPMScheduler.from_pretrained(model_dir, subfolder="scheduler", **kw),
    }


def train_ddm_lora(model_dir: Path, data: BiasedDataset, cfg: LoraDDMConfig, out: Path, *, quiet: bool = False) -> Path:
    """LoRA fine-tuning with the DDM loss; returns the output folder."""
    from diffusers import StableDiffusionPipeline
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    out = Path(out)
    dist = current()
    if (out / "COMPLETE").exists():
        return out
    if out.exists() and any(out.iterdir()):
        raise RunError(f"{out}: folder is not empty and holds no finished DDM LoRA run; choose another --out")
    device = resolve_device(cfg.device)
    seed_everything(cfg.seed)
    parts = load_components(model_dir)
    unet, vae, text_encoder, tokenizer, sched = (parts[c] for c in COMPONENTS)
    for m in (unet, vae, text_encoder):
        m.requires_grad_(False).to(device)
    vae.eval()
    text_encoder.eval()
    unet.add_adapter(LoraConfig(r=cfg.rank, lora_alpha=cfg.rank, init_lora_weights="gaussian", target_modules=["to_k", "to_q", "to_v", "to_out.0"]))
    lora_params = [p for p in unet.parameters() if p.requires_grad]
    scale = 2 ** (len(vae.config.block_out_channels) - 1)
    resolution = cfg.resolution or unet.config.sample_size * scale
    latent = (unet.config.in_channels, resolution // scale, resolution // scale)
    groups, report = resolve_groups(data, cfg.groups, cfg.num_groups, cfg.seed)
    indicator = Indicator(latent[0] * latent[1] * latent[2], report["num_groups"]).to(device)
    opt = torch.optim.AdamW(lora_params + list(indicator.parameters()), lr=cfg.lr)
    prediction = sched.config.prediction_type
    alphas = sched.alphas_cumprod.to(device)
    train = data.split("train").with_spec(ImageSpec(resolution, 3, (0.5,) * 3, (0.5,) * 3))
    names = data.class_names or [str(c) for c in range(data.num_classes)]
    try:
        prompts = [cfg.prompt.format(class_name=n, y=c) for c, n in enumerate(names)]
    except (KeyError, IndexError):
        raise ConfigError(f"DDM LoRA setting 'prompt' {cfg.prompt!r}: only the fields {{class_name}} and {{y}} are available") from None
    with torch.no_grad():
        ids = tokenizer(prompts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True, return_tensors="pt").input_ids
        prompt_embeds = text_encoder(ids.to(device))[0]
    gen = torch.Generator().manual_seed(cfg.seed)
    tmp = out.with_name(out.name + ".tmp")
    if dist.is_main:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    unet.train()
    model, indicator_model = dist.wrap(unet), dist.wrap(indicator)  # DDP under several processes
    t0 = time.perf_counter()
    for step in range(1, cfg.max_steps + 1):
        idx = torch.randint(0, len(train), (cfg.batch_size,), generator=gen)
        rows = dist.block_slice(len(idx))  # this process's block of the global batch
        x, y, _, _ = train.batch(idx[rows])
        with torch.no_grad():
            latent_gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step + dist.rank * 2**40)
            z = vae.encode(x.to(device)).latent_dist.sample(latent_gen) * vae.config.scaling_factor
        noise = torch.randn((len(idx), *z.shape[1:]), generator=gen)[rows].to(device)
        t = torch.randint(0, sched.config.num_train_timesteps, (len(idx),), generator=gen)[rows].to(device)
        zt = sched.add_noise(z, noise, t)
        target = noise if prediction == "epsilon" else sched.get_velocity(z, noise, t)
        pred = model(zt, t, encoder_hidden_states=prompt_embeds[y.to(device)]).sample.float()
        loss, parts_ = ddm_loss(F.mse_loss(pred, target.float()), predicted_noise(pred, zt, alphas, t, prediction), groups[idx[rows]].to(device),
                                indicator_model, cfg.alpha, cfg.sign)  # fmt: skip
        if not torch.isfinite(loss):
            raise RunError(f"DDM LoRA step {step}: the loss became {float(loss.detach())}; lower --set lr=...")
        opt.zero_grad(set_to_none=True)
        dist.weighted(loss, len(y), len(idx)).backward()
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(lora_params + list(indicator.parameters()), cfg.grad_clip)
        opt.step()
        logged = dist.batch_mean({"loss": loss.detach(), **parts_}, len(y), len(idx))
        if not dist.is_main:
            continue
        append_jsonl(tmp / "train_log.jsonl", {"step": step, **{k: float(v) for k, v in logged.items()}, "elapsed_s": round(time.perf_counter() - t0, 3)})
        if not quiet and step % 50 == 0:
            print(f"step {step}/{cfg.max_steps} loss {float(logged['loss']):.4f}", flush=True)
    if not dist.is_main:
        dist.barrier()  # the main process writes the output folder
        return out
    lora_state = convert_state_dict_to_diffusers(get_peft_model_state_dict(unet))
    StableDiffusionPipeline.save_lora_weights(tmp, unet_lora_layers=lora_state, safe_serialization=True)
    save_weights(tmp / "indicator.safetensors", indicator.state_dict())
    write_json_atomic(tmp / "config.json", {"model": str(model_dir), "config": dataclasses.asdict(cfg), "resolution": resolution, "latent_shape": list(latent), "prediction": prediction})
    write_json_atomic(tmp / "groups.json", report)
    (tmp / "COMPLETE").write_text(time.strftime("%Y-%m-%dT%H:%M:%S") + "\n")
    if out.exists():
        out.rmdir()
    tmp.rename(out)
    dist.barrier()
    return out
