"""What SD1.5 and SDXL share: ComfyUI's `openaimodel` UNet, its attention modules under their
diffusers names, its text encoders (CLIP), and how ComfyUI builds one from a `supported_models` class.
Used only by the UNet profiles (`sd15.py`, `sdxl.py`)."""

from __future__ import annotations

import re
from collections.abc import Mapping

import comfy.model_management
import comfy.model_patcher
import comfy.utils
import torch
from torch import nn

from ...config import ModuleSpec

ATTENTION_TARGETS = r"_attn[12]_to_(q|k|v|out_0)$"
"""Target set `attention`: every projection of every self- (attn1) and cross-attention (attn2)."""

_ATTN = re.compile(r"^(down_blocks|up_blocks|mid_block)\.(?:(\d+)\.)?attentions\.(\d+)\.transformer_blocks\.(\d+)\."
                   r"(attn[12])\.to_q\.weight$")
_BLOCK_ORDER = {"down_blocks": 0, "up_blocks": 1, "mid_block": 2}


def build_unet(model_config_class: type, unet_config: dict, device=None, dtype: torch.dtype = torch.float32,
               keep: tuple[str, ...] = ()):
    """A `ModelPatcher` around ComfyUI's model for `model_config_class` with these UNet settings; `keep`:
    settings the class's `unet_extra_config` would otherwise override (head layout of tiny models)."""
    cfg = dict(unet_config)
    model_config = model_config_class(cfg)
    for key in keep:
        model_config.unet_config[key] = cfg[key]
    model_config.set_inference_dtype(dtype, None)
    model = model_config.get_model({}, device=device)
    return comfy.model_patcher.ModelPatcher(
        model,
        load_device=comfy.model_management.get_torch_device(),
        offload_device=comfy.model_management.unet_offload_device(),
    )


def attention_module_specs(model_patcher, patterns: list[re.Pattern]) -> list[ModuleSpec]:
    """Every attn1/attn2 of the UNet, diffusers-named, in diffusers' `attn_processors` order (down blocks,
    up blocks, mid block) -- the order of the published checkpoints' tokens -- keeping the layers whose kohya
    name matches one of `patterns` (a module with none is left out)."""
    to_ldm = comfy.utils.unet_to_diffusers(model_patcher.model.model_config.unet_config)
    weights = model_patcher.model.diffusion_model.state_dict()
    found = []
    for diff_key, ldm_key in to_ldm.items():
        m = _ATTN.match(diff_key)
        if not m:
            continue
        block, idx, att, tb, attn = m.groups()
        prefix = diff_key[: -len(".to_q.weight")]
        hidden = weights[ldm_key].shape[0]
        cross = weights[ldm_key.replace(".to_q.", ".to_k.")].shape[1] if attn == "attn2" else None
        full = ModuleSpec.attention("lora_unet_" + prefix.replace(".", "_"), hidden, cross)
        kept = full.keeping(patterns)
        if kept is not None:
            found.append(((_BLOCK_ORDER[block], int(idx or 0), int(att), int(tb), attn), kept))
    return [spec for _, spec in sorted(found, key=lambda item: item[0])]


def checkpoint_units() -> tuple[type[nn.Module], ...]:
    """Transformer blocks and ResBlocks: the units ComfyUI's own trainer checkpoints."""
    from comfy.ldm.modules.attention import BasicTransformerBlock
    from comfy.ldm.modules.diffusionmodules.openaimodel import ResBlock

    return (BasicTransformerBlock, ResBlock)


def tiny_text_config(hidden: int, projection: int) -> dict:
    """A 3-layer CLIP text model of width `hidden` (the tokenizer's vocabulary, 77 positions)."""
    return {
        "architectures": ["CLIPTextModel"], "attention_dropout": 0.0, "bos_token_id": 0, "dropout": 0.0,
        "eos_token_id": 49407, "hidden_act": "gelu", "hidden_size": hidden, "initializer_factor": 1.0,
        "initializer_range": 0.02, "intermediate_size": 2 * hidden, "layer_norm_eps": 1e-05,
        "max_position_embeddings": 77, "model_type": "clip_text_model", "num_attention_heads": 2,
        "num_hidden_layers": 3, "pad_token_id": 1, "projection_dim": projection, "vocab_size": 49408,
    }


def encode_captions(clip, captions: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """`context [B, 77, D]`, `pooled [B, P]` as ComfyUI's CLIPTextEncode makes them; prompts longer than
    77 tokens are cut to their first 77-token chunk (batches need one length)."""
    conds, pooled = [], []
    for text in captions:
        c, p = clip.encode_from_tokens(clip.tokenize(text), return_pooled=True)
        conds.append(c[:, :77].float().cpu())
        pooled.append(p.float().cpu())
    return torch.cat(conds), torch.cat(pooled)


def context_input(cond: Mapping[str, torch.Tensor]) -> dict:
    """The cross-attention input every UNet takes."""
    return {"c_crossattn": cond["context"]}
