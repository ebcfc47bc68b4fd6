"""Pretrained models from a local folder or the local Hugging Face cache; never downloaded."""

from __future__ import annotations

from pathlib import Path

from ..errors import ConfigError


def resolve_local_model(name: str, *, what: str, option: str, key: str, example: str) -> Path:
    """The folder of model `name`: a local path, else a repository id already in the local
    Hugging Face cache. Anything else raises a ConfigError saying where it looked and how to fix it."""
    from huggingface_hub import constants, snapshot_download

    if not name:
        raise ConfigError(f"no {what} model given: pass {option} PATH (or --set {key}=PATH), e.g. a folder written by save_pretrained")
    path = Path(name).expanduser()
    if path.is_dir():
        return path
    try:
        return Path(snapshot_download(name, local_files_only=True))
    except Exception:  # noqa: BLE001 - any hub failure (not cached, invalid id) means: not available offline
        pass
    raise ConfigError(
        f"{what} model '{name}' not found: looked for a local folder {path.resolve()} and for the repository '{name}' in the "
        f"Hugging Face cache {constants.HF_HUB_CACHE} (nothing is downloaded at run time). Provide it with {option} PATH "
        f"(or --set {key}=PATH) pointing at a folder written by save_pretrained, or fetch it on a machine with internet "
        f"(`hf download {example}`) and copy the cache folder there (or set HF_HOME)."
    )
