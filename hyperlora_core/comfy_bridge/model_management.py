"""Let ComfyUI's model management own the hypernetwork (and see the CLIP encoder), so it can offload them.

ComfyUI frees VRAM for sampling by unloading ModelPatchers it knows about. A bare `HyperLoRA`
module moved to the GPU by hand would stay there; wrapped in a ModelPatcher (load device =
ComfyUI's torch device, offload device = CPU) it is loaded before use and offloaded when
ComfyUI needs the memory. CLIP vision already is a ModelPatcher (`clip_vision.patcher`).

    patcher = hyperlora_patcher(model)            # once, at load time (the node's output)
    model = load_for_use(patcher)                 # before each generation: on the GPU now
    lora = model.generate_id_lora(...)

ModelPatcher assigns `model.device` as it moves weights; `HyperLoRA.device` is a read-only
property, so the patcher holds a thin container module (`HyperLoRAHolder`) instead.
"""

from __future__ import annotations

from typing import Any

import comfy.model_management
import comfy.model_patcher
import torch

from ..errors import HyperLoRAError
from ..model import HyperLoRA


class HyperLoRAHolder(torch.nn.Module):
    """Container ModelPatcher can manage: the HyperLoRA plus a writable `device` attribute."""

    def __init__(self, hyperlora: HyperLoRA) -> None:
        super().__init__()
        self.hyperlora = hyperlora
        self.device = hyperlora.device


def hyperlora_patcher(
    model: HyperLoRA, load_device: torch.device | None = None, offload_device: torch.device | None = None
) -> comfy.model_patcher.ModelPatcher:
    """Wrap a HyperLoRA in a ModelPatcher (load: ComfyUI's device; offload: CPU by default)."""
    if not isinstance(model, HyperLoRA):
        raise HyperLoRAError(f"expected a HyperLoRA model, got {type(model).__name__}.")
    load_device = load_device or comfy.model_management.get_torch_device()
    offload_device = offload_device or torch.device("cpu")
    return comfy.model_patcher.ModelPatcher(HyperLoRAHolder(model), load_device=load_device, offload_device=offload_device)


def unwrap(patcher: Any) -> HyperLoRA:
    """The HyperLoRA inside a patcher from :func:`hyperlora_patcher` (or a bare HyperLoRA)."""
    if isinstance(patcher, HyperLoRA):
        return patcher
    holder = getattr(patcher, "model", None)
    if not isinstance(holder, HyperLoRAHolder):
        raise HyperLoRAError(f"expected a HyperLoRA model patcher, got {type(patcher).__name__}.")
    return holder.hyperlora


def load_for_use(patcher: Any, *others: Any, memory_required: int = 0) -> HyperLoRA:
    """Load the hypernetwork (and e.g. `clip_vision.patcher`) on ComfyUI's device; return the model.

    The hypernetwork is loaded whole (`force_full_load`): its layers are plain torch modules that
    cannot stream weights in as ComfyUI's own do, so a partial load would leave some of them on the
    CPU. ComfyUI evicts other models (the UNet) to make room instead; on a GPU, after sampling had
    partially offloaded it, this brings every part back.
    """
    comfy.model_management.load_models_gpu([patcher], memory_required=memory_required, force_full_load=True)
    rest = [getattr(o, "patcher", o) for o in others]
    if rest:
        comfy.model_management.load_models_gpu(rest, memory_required=memory_required)
    return unwrap(patcher)
