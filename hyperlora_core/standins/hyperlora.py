"""Small random HyperLoRAs of any module table (tests, benchmarks, the stand-in demo)."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ..config import (
    DEFAULT_DIM_HEAD,
    TOKENS_PER_MODULE,
    HyperLoRAConfig,
    IDProjectorConfig,
    ModuleSpec,
    ResamplerConfig,
)
from ..model import HyperLoRA

SDXL_MODULES_JSON = Path(__file__).resolve().parents[2] / "models" / "sdxl_hyper_lora_modules.json"
"""SDXL's module table as the published checkpoints list it."""


def sdxl_modules() -> tuple[ModuleSpec, ...]:
    raw = json.loads(SDXL_MODULES_JSON.read_text())
    return tuple(ModuleSpec(name=k, **v) for k, v in raw.items())


def small_config(
    modules: tuple[ModuleSpec, ...] | None = None,
    basis_size: int = 8,
    rank: int = 4,
    dim: int = 64,
    depth: int = 2,
    heads: int = 2,
    clip_dim: int = 1024,
    embed_dim: int = 512,
    id_tokens: int = 4,
    base_rank: int | None = None,
    ff_mult: int = 2,
) -> HyperLoRAConfig:
    """A narrow, shallow HyperLoRA for `modules` (default: every SDXL attention module)."""
    modules = modules or sdxl_modules()
    q = TOKENS_PER_MODULE * len(modules)
    rs = ResamplerConfig(dim=dim, depth=depth, num_queries=q, output_dim=basis_size, ff_mult=ff_mult,
                         heads=heads, dim_head=DEFAULT_DIM_HEAD, input_dims=(dim, clip_dim))
    base = (ResamplerConfig(dim=dim, depth=1, num_queries=q, output_dim=basis_size, ff_mult=ff_mult, heads=heads,
                            dim_head=DEFAULT_DIM_HEAD, input_dims=(clip_dim,)) if base_rank else None)
    return HyperLoRAConfig(
        modules=modules, basis_size=basis_size, rank=rank, resampler=rs,
        id_projector=IDProjectorConfig(embed_dim=embed_dim, num_tokens=id_tokens, token_dim=dim),
        base_rank=base_rank, base_resampler=base,
    )


def random_hyperlora(config: HyperLoRAConfig, seed: int = 0, dtype: torch.dtype = torch.float32) -> HyperLoRA:
    """Every parameter random (both bases non-zero, so generated LoRAs are non-trivial)."""
    torch.manual_seed(seed)
    model = HyperLoRA(config, dtype=dtype)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("latents"):
                p.copy_(torch.randn(p.shape, generator=gen))
            elif "norm" in name or name.startswith("id_projector.2"):
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=gen) if name.endswith("weight")
                        else 0.1 * torch.randn(p.shape, generator=gen))
            else:
                fan_in = p.shape[-1] if p.ndim > 1 else 1
                p.copy_(torch.randn(p.shape, generator=gen) / fan_in**0.5)
    return model.eval()
