"""Small random HyperLoRAs of any module table (tests, benchmarks, the stand-in demo)."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ..config import (
    DEFAULT_DIM_HEAD,
    TOKENS_PER_LAYER,
    HyperLoRAConfig,
    IDProjectorConfig,
    ModuleSpec,
    ResamplerConfig,
    parse_module_list,
)
from ..model import HyperLoRA

SDXL_MODULES_JSON = Path(__file__).resolve().parents[2] / "models" / "sdxl_hyper_lora_modules.json"
"""SDXL's module table as the published checkpoints list it."""


def sdxl_modules() -> tuple[ModuleSpec, ...]:
    raw = json.loads(SDXL_MODULES_JSON.read_text())
    return parse_module_list(raw, str(SDXL_MODULES_JSON))


def hyperlora_config(
    modules: tuple[ModuleSpec, ...] | None = None,
    *,
    basis_size: int = 128,
    rank: int = 8,
    dim: int = 1024,
    depth: int = 4,
    heads: int = 12,
    dim_head: int | None = None,
    ff_mult: int = 4,
    clip_dim: int = 1024,
    embed_dim: int = 512,
    id_tokens: int = 16,
    base_rank: int | None = None,
    base_depth: int | None = None,
) -> HyperLoRAConfig:
    """The published architecture by default (K 128, rank 8, resampler 1024 x 4, 12 x 64 heads, 16 ID tokens
    over every SDXL attention module); any size for tests and benchmarks. `dim_head` defaults to the
    published 64 (narrower resamplers split `dim` over the heads); the Base resampler is `base_depth` deep
    (default: as deep as the ID one)."""
    modules = modules or sdxl_modules()
    queries = TOKENS_PER_LAYER * sum(len(m.layers) for m in modules)
    dim_head = dim_head or (DEFAULT_DIM_HEAD if dim >= DEFAULT_DIM_HEAD else dim // heads)

    def resampler(inputs: tuple[int, ...], layers: int) -> ResamplerConfig:
        return ResamplerConfig(dim=dim, depth=layers, num_queries=queries, output_dim=basis_size, ff_mult=ff_mult,
                               heads=heads, dim_head=dim_head, input_dims=inputs)

    return HyperLoRAConfig(
        modules=modules, basis_size=basis_size, rank=rank, resampler=resampler((dim, clip_dim), depth),
        id_projector=IDProjectorConfig(embed_dim=embed_dim, num_tokens=id_tokens, token_dim=dim),
        base_rank=base_rank, base_resampler=resampler((clip_dim,), base_depth or depth) if base_rank else None,
    )


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
    return hyperlora_config(modules, basis_size=basis_size, rank=rank, dim=dim, depth=depth, heads=heads,
                            dim_head=DEFAULT_DIM_HEAD, ff_mult=ff_mult, clip_dim=clip_dim, embed_dim=embed_dim,
                            id_tokens=id_tokens, base_rank=base_rank, base_depth=1)


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
