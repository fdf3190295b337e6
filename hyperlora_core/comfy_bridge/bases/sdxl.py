"""SDXL: ComfyUI's `supported_models.SDXL` (and the SDXL-architecture variants that subclass it).

Every fact of SDXL the pack needs: its UNet settings (full and tiny), its LoRA targets (the 140
attention modules of the published checkpoints, diffusers-named), its conditioning (two CLIP text
encoders' context, the pooled CLIP-G vector and six crop numbers, which ComfyUI's `encode_adm` turns
into the `y` vector), and kohya's name for it.
"""

from __future__ import annotations

from collections.abc import Mapping

import comfy.sdxl_clip
import comfy.supported_models
import torch

from . import unet
from .profile import BaseProfile, Conditioning

UNET_CONFIG: dict = {
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

TINY_OVERRIDES: dict = {
    "model_channels": 32,
    "context_dim": 64,
    "num_head_channels": 16,
    "transformer_depth": [0, 0, 1, 1, 1, 1],
    "transformer_depth_middle": 1,
    "transformer_depth_output": [0, 0, 0, 1, 1, 1, 1, 1, 1],
}
"""Same block layout as SDXL (attention in the two inner levels and the middle), small widths."""

SIZE_EMBEDDING = 6 * 256
"""Width of the size part of `y`: six numbers, each a 256-wide timestep embedding."""
POOLED_WIDTH = UNET_CONFIG["adm_in_channels"] - SIZE_EMBEDDING
"""Width of CLIP-G's pooled vector, the rest of `y`."""

TINY_TEXT_WIDTH = 32
"""Each tiny text encoder's width; the two are concatenated into the tiny UNet's context (64)."""


def unet_config(**overrides) -> dict:
    """SDXL's UNet settings with some replaced."""
    return {**UNET_CONFIG, **overrides}


class _TinySDXLClipModel(comfy.sdxl_clip.SDXLClipModel):
    """SDXL's two text encoders (penultimate layers concatenated, pooled from the second) at width 32."""

    def __init__(self, device="cpu", dtype=None, model_options={}):  # noqa: B006 - ComfyUI's signature
        torch.nn.Module.__init__(self)
        from comfy import sd1_clip

        self.clip_l = sd1_clip.SDClipModel(
            layer="hidden", layer_idx=-2, device=device, dtype=dtype, layer_norm_hidden_state=False,
            textmodel_json_config=unet.tiny_text_config(TINY_TEXT_WIDTH, TINY_TEXT_WIDTH),
            model_options={**model_options, "model_name": "clip_l"},
        )
        self.clip_g = sd1_clip.SDClipModel(
            layer="hidden", layer_idx=-2, device=device, dtype=dtype, layer_norm_hidden_state=False,
            textmodel_json_config=unet.tiny_text_config(TINY_TEXT_WIDTH, 1280),
            special_tokens={"start": 49406, "end": 49407, "pad": 0}, return_projected_pooled=True,
            model_options={**model_options, "model_name": "clip_g"},
        )
        self.dtypes = {dtype}


class _TinyClipTarget:
    clip = _TinySDXLClipModel
    tokenizer = comfy.sdxl_clip.SDXLTokenizer
    params: dict = {}


class SDXLProfile(BaseProfile):
    name = "sdxl"
    display_name = "SDXL"
    model_configs = (comfy.supported_models.SDXL,)
    kohya_version = "sdxl_base_v1-0"
    modelspec_architecture = "stable-diffusion-xl-v1-base/lora"
    strength = 0.85
    cfg = 5.0
    text_keys = ("context", "pooled")
    text_encoders = ("CLIP_L", "CLIP_G")
    clip_type = "STABLE_DIFFUSION"  # DualCLIPLoader's "sdxl"
    target_sets = {"attention": unet.ATTENTION_TARGETS}
    tiny_resolution = 64

    def build(self, unet_config: dict | None = None, device=None, dtype: torch.dtype = torch.float32):
        return unet.build_unet(comfy.supported_models.SDXL, unet_config or UNET_CONFIG, device, dtype,
                               keep=("num_head_channels",))

    def tiny_config(self, text_width: int | None = None) -> dict:
        """`text_width`: the tiny pooled vector's width (the size embedding is added to it for `y`)."""
        return unet_config(**TINY_OVERRIDES, adm_in_channels=(text_width or TINY_TEXT_WIDTH) + SIZE_EMBEDDING)

    def tiny_clip(self):
        import comfy.sd

        return comfy.sd.CLIP(_TinyClipTarget(), model_options={"dtype": torch.float32})

    def module_specs(self, model_patcher, targets=None):
        return unet.attention_module_specs(model_patcher, self.target_patterns(targets))

    def checkpoint_units(self):
        return unet.checkpoint_units()

    def text_conditioning(self, clip, captions: list[str]) -> Conditioning:
        context, pooled = unet.encode_captions(clip, captions)
        return {"context": context, "pooled": pooled}

    def image_conditioning(self, orig_hw, crop_tl, target_hw) -> Conditioning:
        """`sizes [6]` = (height, width, crop_top, crop_left, target_height, target_width) in pixels."""
        return {"sizes": torch.tensor([*orig_hw, *crop_tl, *target_hw], dtype=torch.float32)}

    def size_embedding(self, model, sizes: torch.Tensor) -> torch.Tensor:
        """`sizes [B, 6]` (`image_conditioning`'s order, which is `encode_adm`'s) -> the size part of `y`,
        `[B, 6 x 256]`, for a whole batch in one call of ComfyUI's own embedder (`model.embedder`, the
        `Timestep(256)` that `encode_adm` applies to one sample's six numbers, as one size for the batch).
        On the CPU, where `encode_adm` makes its tensors: the same numbers, bit for bit, as calling it per sample."""
        return model.embedder(sizes.detach().float().cpu().reshape(-1)).reshape(sizes.shape[0], SIZE_EMBEDDING)

    def adm(self, model, pooled: torch.Tensor, sizes: torch.Tensor) -> torch.Tensor:
        """SDXL's `y` for a batch: each sample's pooled text vector, then its size embedding (what `encode_adm`
        makes of one sample with `pooled_output` and its sizes), on the pooled vector's device."""
        return torch.cat([pooled, self.size_embedding(model, sizes).to(pooled.device)], dim=1)

    def model_inputs(self, model, cond: Mapping[str, torch.Tensor]) -> dict:
        return {**unet.context_input(cond), "y": self.adm(model, cond["pooled"], cond["sizes"])}


PROFILE = SDXLProfile()
