"""Generation with ComfyUI's progress bar: one step per photo and one for the basis mix."""

from __future__ import annotations

from collections.abc import Callable

import torch

from hyperlora_core.model import HyperLoRA


@torch.inference_mode()
def generate_id_lora(hl: HyperLoRA, cond, progress: Callable[[int, int], None] | None = None) -> dict[str, torch.Tensor]:
    return hl.generate_id_lora(cond.clip_tokens, cond.id_embeds, getattr(cond, "weights", None), progress=progress)


@torch.inference_mode()
def generate_base_lora(hl: HyperLoRA, cond, progress: Callable[[int, int], None] | None = None) -> dict[str, torch.Tensor]:
    return hl.generate_base_lora(cond.clip_tokens, getattr(cond, "weights", None), progress=progress)
