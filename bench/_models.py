"""Random models at the published shapes (or tiny ones) for the benchmark scripts.

No weights are downloaded: every model is built from its architecture with seeded random weights,
which is all a speed or memory measurement needs.
"""

from __future__ import annotations

import copy

import torch

from hyperlora_core.coefficients import normalize
from hyperlora_core.config import HyperLoRAConfig
from hyperlora_core.model import HyperLoRA
from hyperlora_core.standins import hyperlora_config

__all__ = ["PerLayerReference", "hyperlora_config", "random_hyperlora"]

@torch.no_grad()
def random_hyperlora(
    config: HyperLoRAConfig, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float16, seed: int = 0
) -> HyperLoRA:
    """Every weight N(0, 0.02), built directly on `device`, in eval mode as `from_pretrained` leaves it."""
    hl = HyperLoRA(config, device=device, dtype=dtype)
    gen = torch.Generator(device=device).manual_seed(seed)
    for p in hl.parameters():
        p.normal_(0.0, 0.02, generator=gen)
    return hl.eval().requires_grad_(False)


class PerLayerReference:
    """The published code's structure: the resampler in the storage dtype, one einsum per layer on
    contiguous per-layer bases (1,120 for SDXL), results left on the model's device."""

    def __init__(self, hl: HyperLoRA, dtype: torch.dtype = torch.float16) -> None:
        self.dtype = dtype
        self.projector = copy.deepcopy(hl.id_projector).to(dtype)
        self.resampler = copy.deepcopy(hl.resampler).to(dtype)
        self.names = hl.config.layer_names()
        self.down = [hl.id_basis.published_down(i).to(dtype).contiguous() for i in range(len(self.names))]
        self.up = [hl.id_basis.published_up(i).to(dtype).contiguous() for i in range(len(self.names))]
        self.rank = hl.config.rank
        self.device = hl.device

    @torch.no_grad()
    def tokens(self, clip: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        t = self.resampler(self.projector(ids.to(self.device, self.dtype)), clip.to(self.device, self.dtype))
        return normalize(t.mean(0, keepdim=True))

    @torch.no_grad()
    def mix(self, tokens: torch.Tensor) -> dict[str, torch.Tensor]:
        out = {}
        for i, name in enumerate(self.names):
            down = torch.einsum("bi,ijk->bjk", tokens[:, 2 * i], self.down[i])
            up = torch.einsum("bi,ijk->bjk", tokens[:, 2 * i + 1], self.up[i])
            out[f"{name}.lora_down.weight"] = down[0].t().contiguous()
            out[f"{name}.lora_up.weight"] = up[0].t().contiguous()
            out[f"{name}.alpha"] = torch.tensor(self.rank * 0.5)
        return out
