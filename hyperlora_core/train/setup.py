"""Building the hypernetwork a config describes, and choosing what each stage trains."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ..config import (
    DEFAULT_DIM_HEAD,
    TOKENS_PER_LAYER,
    HyperLoRAConfig,
    IDProjectorConfig,
    ResamplerConfig,
    parse_module_list,
)
from ..errors import HyperLoRAError
from ..model import HyperLoRA
from .config import PARTS, STAGE, FitConfig, ResamplerSettings


def _resampler(s: ResamplerSettings, queries: int, basis: int, inputs: tuple[int, ...]) -> ResamplerConfig:
    return ResamplerConfig(
        dim=s.dim, depth=s.depth, num_queries=queries, output_dim=basis, ff_mult=s.ff_mult,
        heads=s.heads, dim_head=s.dim_head or DEFAULT_DIM_HEAD, input_dims=inputs,
    )


def hyper_config(cfg: FitConfig, module_specs, clip_dim: int, base: str = "") -> HyperLoRAConfig:
    """The architecture from the config's sizes and the UNet's module table (or a JSON one), for the base
    model `base` (a profile name, recorded in the checkpoint)."""
    h = cfg.hypernetwork
    if h.modules != "from_model":
        path = Path(h.modules)
        if not path.is_file():
            raise HyperLoRAError(f"hypernetwork.modules: '{path}' does not exist (use from_model or a JSON file).")
        module_specs = parse_module_list(json.loads(path.read_text(encoding="utf-8")), str(path))
    modules = tuple(module_specs)
    queries = TOKENS_PER_LAYER * sum(len(m.layers) for m in modules)
    rs = _resampler(h.resampler, queries, h.basis_size, (h.resampler.dim, clip_dim))
    base_rs = _resampler(h.base_resampler, queries, h.basis_size, (clip_dim,)) if h.base_rank else None
    return HyperLoRAConfig(
        modules=modules, basis_size=h.basis_size, rank=h.rank, resampler=rs,
        id_projector=IDProjectorConfig(embed_dim=h.face_embed_dim, num_tokens=h.id_tokens, token_dim=h.resampler.dim),
        base_rank=h.base_rank, base_resampler=base_rs, base=base,
    )


def new_hyperlora(config: HyperLoRAConfig, seed: int) -> HyperLoRA:
    """Random start: torch's default init for the resampler and projector, LoRA-style bases."""
    torch.manual_seed(seed)
    model = HyperLoRA(config)
    gen = torch.Generator().manual_seed(seed)
    model.id_basis.reset_for_training(gen)
    if model.base_basis is not None:
        model.base_basis.reset_for_training(gen)
    return model


def load_into(model: HyperLoRA, path: str | Path) -> None:
    """Copy weights from a HyperLoRA checkpoint (either format) into `model`, checking the architecture."""
    src = HyperLoRA.from_pretrained(path, dtype=torch.float32, dim_head=model.config.resampler.dim_head)
    mine, theirs = model.state_dict(), src.state_dict()
    missing = sorted(k for k in mine if k not in theirs)
    unexpected = sorted(k for k in theirs if k not in mine)
    bad = [k for k in mine if k in theirs and mine[k].shape != theirs[k].shape]
    if missing and all(k.startswith(("base_", "id_projector")) for k in missing) and not bad and not unexpected:
        # e.g. a published checkpoint (no Base-LoRA) as the start of a run that adds one
        model.load_state_dict(theirs, strict=False)
        return
    if missing or unexpected or bad:
        raise HyperLoRAError(
            f"{path}: its architecture does not match the config's hypernetwork section (missing {missing[:4]}, "
            f"unexpected {unexpected[:4]}, other shapes {bad[:4]}). Make the sizes in the config match the checkpoint."
        )
    model.load_state_dict(theirs, strict=True)


def part_of(name: str) -> str:
    """Which trainable part a HyperLoRA parameter name belongs to."""
    head = name.split(".", 1)[0]
    return {"resampler": "id_resampler", "id_projector": "id_projector", "id_basis": "id_basis",
            "base_resampler": "base_resampler", "base_basis": "base_basis"}[head]


def face_stream(name: str) -> bool:
    """Parameters of the resampler's face-token stream (`proj_in`, `attn2`), unused without ArcFace."""
    return name.startswith("resampler.") and (
        name.startswith("resampler.proj_in.") or ".attn2." in name or ".norm_attn2_" in name
    )


def set_trainable(model: HyperLoRA, stage: str, parts: tuple[str, ...]) -> list[str]:
    """requires_grad per the stage's parts; returns the trainable parameter names."""
    for p in parts:
        if p not in PARTS:
            raise HyperLoRAError(f"unknown trainable part '{p}'; allowed: {', '.join(PARTS)}.")
    names = []
    face_stream_off = not STAGE[stage].face_embedding
    for name, p in model.named_parameters():
        on = part_of(name) in parts and not (face_stream_off and face_stream(name))
        p.requires_grad_(on)
        if on:
            names.append(name)
    if not names:
        raise HyperLoRAError(f"stage '{stage}' has nothing to train (trainable: {list(parts)} is empty for this model).")
    return names


@torch.no_grad()
def zero_face_stream_output(model: HyperLoRA) -> None:
    """Zero each block's face cross-attention output, so adding the face stream starts as a no-op."""
    for block in model.resampler.layers:
        block.attn2.to_out[0].weight.zero_()
