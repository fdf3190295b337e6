"""Generation with ComfyUI's progress bar: one step per photo and one for the basis mix."""

from __future__ import annotations

from collections.abc import Callable

import torch

from hyperlora_core.model import HyperLoRA


def _bar_callback(progress: Callable[[int], object], total: int) -> Callable[[int, int], None]:
    bar = progress(total)
    return lambda done, _total: bar.step()


@torch.inference_mode()
def generate_id_lora(hl: HyperLoRA, cond, progress: Callable[[int], object]) -> dict[str, torch.Tensor]:
    n = int((cond.clip_tokens if cond.clip_tokens is not None else cond.id_embeds).shape[0])
    return hl.generate_id_lora(cond.clip_tokens, cond.id_embeds, getattr(cond, "weights", None),
                               progress=_bar_callback(progress, n + 1))


@torch.inference_mode()
def generate_base_lora(hl: HyperLoRA, cond, progress: Callable[[int], object]) -> dict[str, torch.Tensor]:
    n = int(cond.clip_tokens.shape[0])
    return hl.generate_base_lora(cond.clip_tokens, getattr(cond, "weights", None), progress=_bar_callback(progress, n + 1))
