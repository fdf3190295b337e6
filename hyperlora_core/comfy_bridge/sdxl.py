"""SDXL UNets built with ComfyUI's own classes, and the list of their LoRA'd attention modules.

Used for the key-coverage check at full size (on the meta device, no memory), for the tiny
SDXL-architecture models of tests and the trainer, and to derive the module table that new
HyperLoRA checkpoints are built from.
"""

from __future__ import annotations

import re

import comfy.model_management
import comfy.model_patcher
import comfy.supported_models
import comfy.utils
import torch
from torch import nn

from ..config import ModuleSpec

SDXL_UNET_CONFIG: dict = {
    "use_checkpoint": False,
    "image_size": 32,
    "out_channels": 4,
    "use_spatial_transformer": True,
    "legacy": False,
    "num_classes": "sequential",
    "adm_in_channels": 2816,
    "in_channels": 4,
    "model_channels": 320,
    "num_res_blocks": [2, 2, 2],
    "transformer_depth": [0, 0, 2, 2, 10, 10],
    "channel_mult": [1, 2, 4],
    "transformer_depth_middle": 10,
    "use_linear_in_transformer": True,
    "context_dim": 2048,
    "num_head_channels": 64,
    "transformer_depth_output": [0, 0, 0, 2, 2, 2, 10, 10, 10],
    "use_temporal_attention": False,
    "use_temporal_resblock": False,
}
"""ComfyUI's SDXL base UNet settings (as `comfy.model_detection` detects them)."""

TINY_SDXL_OVERRIDES: dict = {
    "model_channels": 32,
    "context_dim": 64,
    "num_head_channels": 16,
    "transformer_depth": [0, 0, 1, 1, 1, 1],
    "transformer_depth_middle": 1,
    "transformer_depth_output": [0, 0, 0, 1, 1, 1, 1, 1, 1],
}
"""Same block layout as SDXL (attention in the two inner levels and the middle), small widths."""


def sdxl_unet_config(**overrides) -> dict:
    cfg = dict(SDXL_UNET_CONFIG)
    cfg.update(overrides)
    return cfg


def build_sdxl(unet_config: dict | None = None, device: str | torch.device | None = None, dtype=torch.float32):
    """A ComfyUI `ModelPatcher` around `model_base.SDXL` with the given UNet settings.

    ComfyUI's layers skip weight init; on a real device call `init_weights` (or load a state
    dict) before use. `device="meta"` builds the full-size graph without allocating memory.
    """
    cfg = dict(unet_config or SDXL_UNET_CONFIG)
    model_config = comfy.supported_models.SDXL(cfg)
    model_config.unet_config["num_head_channels"] = cfg["num_head_channels"]
    model_config.set_inference_dtype(dtype, None)
    model = model_config.get_model({}, device=device)
    return comfy.model_patcher.ModelPatcher(
        model,
        load_device=comfy.model_management.get_torch_device(),
        offload_device=comfy.model_management.unet_offload_device(),
    )


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


_ATTN = re.compile(r"^(down_blocks|up_blocks|mid_block)\.(?:(\d+)\.)?attentions\.(\d+)\.transformer_blocks\.(\d+)\.(attn[12])\.to_q\.weight$")
_BLOCK_ORDER = {"down_blocks": 0, "up_blocks": 1, "mid_block": 2}


def attention_module_specs(model) -> list[ModuleSpec]:
    """Every attn1/attn2 of the UNet, diffusers-named, in diffusers' `attn_processors` order
    (down blocks, up blocks, mid block) -- the order new checkpoints use for their tokens."""
    to_ldm = comfy.utils.unet_to_diffusers(model.model.model_config.unet_config)
    weights = model.model.diffusion_model.state_dict()
    found = []
    for diff_key, ldm_key in to_ldm.items():
        m = _ATTN.match(diff_key)
        if not m:
            continue
        block, idx, att, tb, attn = m.groups()
        prefix = diff_key[: -len(".to_q.weight")]
        hidden = weights[ldm_key].shape[0]
        cross = weights[ldm_key.replace(".to_q.", ".to_k.")].shape[1] if attn == "attn2" else None
        spec = ModuleSpec.attention("lora_unet_" + prefix.replace(".", "_"), hidden, cross)
        found.append(((_BLOCK_ORDER[block], int(idx or 0), int(att), int(tb), attn), spec))
    return [spec for _, spec in sorted(found, key=lambda item: item[0])]
