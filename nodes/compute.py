"""Generation one photo at a time, so the progress bar moves and memory stays flat.

The core's `HyperLoRA.generate_id_lora` runs all photos as one batch; here the same three core
steps (per-photo tokens, weighted mean, normalisation + basis mix) are called in a loop. A test
checks the result equals the core's batched call.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from hyperlora_core.coefficients import normalize, photo_weights, weighted_mean
from hyperlora_core.errors import HyperLoRAError
from hyperlora_core.model import HyperLoRA


def _photos(t: torch.Tensor | None, b: int) -> torch.Tensor | None:
    return None if t is None else t[b : b + 1]


def _count(*tensors: torch.Tensor | None) -> int:
    for t in tensors:
        if t is not None:
            return int(t.shape[0])
    raise HyperLoRAError("the condition holds no photos; connect an Encode node that found at least one face.")


@torch.inference_mode()
def generate_id_lora(hl: HyperLoRA, cond, progress: Callable[[int], object]) -> dict[str, torch.Tensor]:
    clip, ids, weights = cond.clip_tokens, cond.id_embeds, getattr(cond, "weights", None)
    n = _count(clip, ids)
    bar = progress(n + 1)
    tokens = []
    for b in range(n):
        tokens.append(hl.id_tokens(_photos(clip, b), _photos(ids, b)).float())
        bar.step()
    w = photo_weights(weights, n) if weights is not None else None
    lora = hl.lora_state_dict(normalize(weighted_mean(torch.cat(tokens), w)), "id")
    bar.step()
    return lora


@torch.inference_mode()
def generate_base_lora(hl: HyperLoRA, cond, progress: Callable[[int], object]) -> dict[str, torch.Tensor]:
    clip, weights = cond.clip_tokens, getattr(cond, "weights", None)
    n = _count(clip)
    bar = progress(n + 1)
    tokens = []
    for b in range(n):
        tokens.append(hl.base_tokens(_photos(clip, b)).float())
        bar.step()
    w = photo_weights(weights, n) if weights is not None else None
    lora = hl.lora_state_dict(normalize(weighted_mean(torch.cat(tokens), w)), "base")
    bar.step()
    return lora
