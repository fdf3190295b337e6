"""Seeded random weights for models built from ComfyUI's classes (whose layers skip initialisation)."""

from __future__ import annotations

import torch
from torch import nn


@torch.no_grad()
def init_weights(module: nn.Module, seed: int = 0, std: float = 0.02) -> None:
    """Deterministic init: norms to identity, biases to zero, other weights N(0, std).

    Numbers are drawn on each weight's own device (one generator per device type), so a full-size
    model built on a GPU is initialised there; CPU models get the same weights as always.
    """
    gens: dict[str, torch.Generator] = {}
    for name, p in module.named_parameters():
        owner = module.get_submodule(name.rsplit(".", 1)[0]) if "." in name else module
        if isinstance(owner, (nn.GroupNorm, nn.LayerNorm)):
            p.fill_(1.0 if name.endswith("weight") else 0.0)
        elif name.endswith("bias"):
            p.zero_()
        else:
            gen = gens.setdefault(p.device.type, torch.Generator(device=p.device).manual_seed(seed))
            p.copy_(torch.randn(p.shape, generator=gen, device=p.device) * std)
