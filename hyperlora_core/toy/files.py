"""Where the toy world's weights live and how they are read back (fp16 safetensors only)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from torch import nn

from .. import temporaries
from ..errors import HyperLoRAError
from ..safetensors_io import load_tensors, save_tensors_atomic
from ..walk import list_dir

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DIR = ROOT / "models" / "toy"

FILES = {
    "judge": "toy_judge.safetensors",
    "base_judge": "toy_base_judge.safetensors",
    "arcface": "toy_arcface.safetensors",
    "clip_vision": "toy_clip_vision.safetensors",
    "vae": "toy_vae.safetensors",
    "unet": "toy_unet.safetensors",
    "caption_encoder": "toy_caption_encoder.safetensors",
    "hyperlora": "hyper_lora/toy_hyperlora.safetensors",
}
"""Part name -> file name in the toy model folder (the UNet world and the parts both bases share). The HyperLoRA
sits in its own sub-folder so that folder can be ComfyUI's `hyper_lora` model path (extra_model_paths.yaml)
without listing the rest."""

DIT_FILES = {
    "dit": "toy_dit.safetensors",
    "dit_caption_encoder": "toy_dit_caption_encoder.safetensors",
    "dit_hyperlora": "hyper_lora/toy_dit_hyperlora.safetensors",
}
"""The DiT base's own parts (`models.DIT`), beside the UNet's: its transformer, caption encoder and HyperLoRA;
the judges, analogues and VAE are the UNet world's."""

STATS_FILE = "toy_world.json"


def world_dir(path: str | os.PathLike | None = None) -> Path:
    return Path(path) if path else Path(os.environ.get("HYPERLORA_TOY_DIR", DEFAULT_DIR))


def part_path(part: str, folder: str | os.PathLike | None = None) -> Path:
    return world_dir(folder) / {**FILES, **DIT_FILES}[part]


def save_module(module: nn.Module | dict, part: str, folder: str | os.PathLike | None = None,
                metadata: dict | None = None) -> Path:
    """Floating tensors in fp16 (BatchNorm counters dropped), atomically, with string metadata."""
    sd = module.state_dict() if isinstance(module, nn.Module) else module
    tensors = {k: (v.detach().to(torch.float16) if v.is_floating_point() else v.detach()).contiguous().cpu()
               for k, v in sd.items() if not k.endswith("num_batches_tracked")}
    meta = {k: (v if isinstance(v, str) else json.dumps(v)) for k, v in (metadata or {}).items()}
    path = part_path(part, folder)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_tensors_atomic(tensors, path, metadata={"hyperlora.toy_part": part, **meta})
    return path


def load_part(part: str, folder: str | os.PathLike | None = None) -> dict[str, torch.Tensor]:
    path = part_path(part, folder)
    if not path.is_file():
        raise HyperLoRAError(
            f"{path}: the toy world's {part} is missing. It ships in models/toy/ with the repository; "
            "rebuild it with `make toy-world` if you deleted it."
        )
    return {k: v.float() if v.is_floating_point() else v for k, v in load_tensors(path).items()}


def load_module(module: nn.Module, part: str, folder: str | os.PathLike | None = None) -> nn.Module:
    sd = load_part(part, folder)
    missing, unexpected = module.load_state_dict(sd, strict=False)
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise HyperLoRAError(
            f"{part_path(part, folder)}: keys do not fit {type(module).__name__} (missing {missing[:4]}, "
            f"unexpected {unexpected[:4]}); rebuild with `make toy-world`."
        )
    return module.eval()


def read_stats(folder: str | os.PathLike | None = None) -> dict:
    path = world_dir(folder) / STATS_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


def write_stats(stats: dict, folder: str | os.PathLike | None = None) -> None:
    path = world_dir(folder) / STATS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    with temporaries.replacing(path) as tmp:
        tmp.write_text(json.dumps(stats, indent=1, sort_keys=True) + "\n")


# -- toy worlds ComfyUI can see ---------------------------------------------------------------------
BUILTIN_WORLD = "(built-in) models/toy"
"""The Toy World Loader's name for the pack's own copy."""


def has_world(folder: Path) -> bool:
    """Whether `folder` holds a toy world: the model of one of its bases (the UNet or the DiT)."""
    return any((folder / name).is_file() for name in (FILES["unet"], DIT_FILES["dit"]))


def world_choices() -> dict[str, Path]:
    """Display name -> folder of every toy world ComfyUI can see (the pack's own copy first, then
    `models/toy_world` and its sub-folders, extra_model_paths.yaml included)."""
    from ..comfy_bridge.folders import TOY_WORLD, toy_world_roots

    found: dict[str, Path] = {}
    if has_world(DEFAULT_DIR):
        found[BUILTIN_WORLD] = DEFAULT_DIR
    for root in toy_world_roots():
        for folder in [root, *(Path(e.path) for e in list_dir(root) if e.is_dir())] if os.path.isdir(root) else []:
            if has_world(folder):
                found.setdefault(f"{TOY_WORLD}/{folder.relative_to(root).as_posix()}".rstrip("/."), folder)
    return found


def resolve_world(name: str) -> Path:
    choices = world_choices()
    if name not in choices:
        raise HyperLoRAError(
            f"toy world '{name}' not found (found: {', '.join(choices) or 'none'}). The pack ships one in "
            "models/toy; rebuild it with `make toy-world` if it is missing."
        )
    return choices[name]
