"""SD1.5: ComfyUI's `supported_models.SD15` (and its subclasses).

The UNet of SDXL's family with attention at every level but the last (16 transformer blocks, 32
attention modules, diffusers-named like SDXL's), one CLIP-L text encoder whose context (768 wide)
is its only conditioning (no `y`), and kohya's `sd_v1`.
"""

from __future__ import annotations

from collections.abc import Mapping

import comfy.sd1_clip
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
    "adm_in_channels": None,
    "in_channels": 4,
    "model_channels": 320,
    "num_res_blocks": [2, 2, 2, 2],
    "transformer_depth": [1, 1, 1, 1, 1, 1, 0, 0],
    "channel_mult": [1, 2, 4, 4],
    "transformer_depth_middle": 1,
    "use_linear_in_transformer": False,
    "context_dim": 768,
    "num_heads": 8,
    "transformer_depth_output": [1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0],
    "use_temporal_attention": False,
    "use_temporal_resblock": False,
}
"""ComfyUI's SD1.5 UNet settings (as `comfy.model_detection` detects them)."""

TINY_OVERRIDES: dict = {"model_channels": 32, "num_heads": 2}
"""Same block layout as SD1.5 (every level, every transformer block), widths 32..128, 2 heads."""

TINY_TEXT_WIDTH = 32


class _TinySD1ClipModel(comfy.sd1_clip.SD1ClipModel):
    """SD1.5's CLIP-L text encoder (last layer) at width 32."""

    def __init__(self, device="cpu", dtype=None, model_options={}):  # noqa: B006 - ComfyUI's signature
        super().__init__(device=device, dtype=dtype, model_options=model_options, clip_model=comfy.sd1_clip.SDClipModel,
                         textmodel_json_config=unet.tiny_text_config(TINY_TEXT_WIDTH, TINY_TEXT_WIDTH))


class _TinyClipTarget:
    clip = _TinySD1ClipModel
    tokenizer = comfy.sd1_clip.SD1Tokenizer
    params: dict = {}


class SD15Profile(BaseProfile):
    name = "sd15"
    display_name = "SD1.5"
    model_configs = (comfy.supported_models.SD15,)
    kohya_version = "sd_v1"
    modelspec_architecture = "stable-diffusion-v1/lora"
    strength = 0.85
    cfg = 7.0
    text_keys = ("context",)
    text_encoders = ("CLIP_L",)
    clip_type = "STABLE_DIFFUSION"
    target_sets = {"attention": unet.ATTENTION_TARGETS}
    tiny_resolution = 64

    def build(self, unet_config: dict | None = None, device=None, dtype: torch.dtype = torch.float32):
        return unet.build_unet(comfy.supported_models.SD15, unet_config or UNET_CONFIG, device, dtype, keep=("num_heads",))

    def tiny_config(self, text_width: int | None = None) -> dict:
        """`text_width`: the tiny text encoder's width, the UNet's context width."""
        return {**UNET_CONFIG, **TINY_OVERRIDES, "context_dim": text_width or TINY_TEXT_WIDTH}

    def tiny_clip(self):
        import comfy.sd

        return comfy.sd.CLIP(_TinyClipTarget(), model_options={"dtype": torch.float32})

    def module_specs(self, model_patcher, targets=None):
        return unet.attention_module_specs(model_patcher, self.target_patterns(targets))

    def checkpoint_units(self):
        return unet.checkpoint_units()

    def text_conditioning(self, clip, captions: list[str]) -> Conditioning:
        context, _ = unet.encode_captions(clip, captions)
        return {"context": context}

    def model_inputs(self, model, cond: Mapping[str, torch.Tensor]) -> dict:  # noqa: ARG002 - no y on SD1.5
        return unet.context_input(cond)


PROFILE = SD15Profile()
