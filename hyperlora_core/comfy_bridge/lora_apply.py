"""Applying a generated LoRA to a ComfyUI model through ComfyUI's own key map and patches.

The LoRA names modules the kohya way (diffusers-style `lora_unet_down_blocks_...` or LDM-style
`lora_unet_input_blocks_...`); `comfy.lora.model_lora_keys_unet` knows both, so no hand-written
renaming table is needed. The caller's model is never modified: patches go onto a clone.
"""

from __future__ import annotations

import comfy.lora
import comfy.lora_convert
import torch

from ..errors import HyperLoRAError
from ..lora import check_finite, lora_base
from .bases import check_model_base

_SUFFIXES = (".lora_down.weight", ".lora_up.weight", ".alpha")


def unet_lora_key_map(model) -> dict[str, str]:
    """LoRA module name -> model weight key, for every alias ComfyUI understands."""
    return comfy.lora.model_lora_keys_unet(model.model, {})


def lora_module_names(lora: dict[str, torch.Tensor]) -> set[str]:
    """Module prefixes of a kohya LoRA state dict (what each `.lora_down.weight` belongs to)."""
    names = set()
    for key in lora:
        for suffix in _SUFFIXES:
            if key.endswith(suffix):
                names.add(key[: -len(suffix)])
                break
        else:
            raise HyperLoRAError(f"LoRA key '{key}' is not a kohya LoRA key (.lora_down/.lora_up/.alpha).")
    return names


def _patches_for(model, lora: dict[str, torch.Tensor], what: str) -> dict:
    key_map = unet_lora_key_map(model)
    lora = comfy.lora_convert.convert_lora(lora)
    names = lora_module_names(lora)
    if not names:
        raise HyperLoRAError(
            f"{what}: the LoRA is empty (no '.lora_down.weight' keys), so applying it would change nothing. Connect "
            "the LoRA output of Generate ID LoRA, Mix, Interpolate or Concept Slider, or a kohya LoRA file."
        )
    unmapped = sorted(n for n in names if n not in key_map)
    if unmapped:
        shown = ", ".join(unmapped[:8]) + (f" and {len(unmapped) - 8} more" if len(unmapped) > 8 else "")
        raise HyperLoRAError(
            f"{what}: {len(unmapped)} of {len(names)} LoRA modules have no matching layer in this "
            f"{type(model.model).__name__} model: {shown}. The LoRA was made for another model; load the checkpoint "
            "it was made for, or a HyperLoRA checkpoint whose module list matches this model."
        )
    weights = model.model.state_dict()
    for name in names:
        down, up = lora.get(f"{name}.lora_down.weight"), lora.get(f"{name}.lora_up.weight")
        if down is None or up is None:
            raise HyperLoRAError(f"{what}: module '{name}' lacks its lora_down or lora_up weight.")
        target = weights[key_map[name]]
        if tuple(target.shape) != (up.shape[0], down.shape[1]):
            raise HyperLoRAError(
                f"{what}: '{name}' makes a [{up.shape[0]}, {down.shape[1]}] update but the model's "
                f"'{key_map[name]}' is {list(target.shape)}. This LoRA was made for a different model size."
            )
    return comfy.lora.load_lora(lora, {n: key_map[n] for n in names}, log_missing=False)


def apply_lora(
    model,
    lora: dict[str, torch.Tensor],
    strength: float,
    base_lora: dict[str, torch.Tensor] | None = None,
    base_strength: float = 0.0,
):
    """A clone of `model` (a ComfyUI ModelPatcher) with the LoRA(s) added as weight patches.

    A strength of 0 adds no patch at all, so the clone's weights are bit-identical to the source. A LoRA
    that says which base model it is for (`GeneratedLoRA.base`) is refused on a model of another base,
    before anything is patched.
    """
    for what, sd in (("ID-LoRA", lora), ("Base-LoRA", base_lora)):
        if sd is not None:
            check_model_base(model, lora_base(sd), f"{what}: this LoRA")
    patched = model.clone()
    for what, sd, s in (("ID-LoRA", lora, strength), ("Base-LoRA", base_lora, base_strength)):
        if sd is None or s == 0:
            continue
        check_finite(sd, what, "It came from the node that made, loaded or mixed this LoRA; fix that input.")
        patches = _patches_for(model, sd, what)
        added = patched.add_patches(patches, s)
        if len(added) != len(patches):
            raise HyperLoRAError(f"{what}: ComfyUI accepted {len(added)} of {len(patches)} patches.")
    return patched
