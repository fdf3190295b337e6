"""Tiny stand-ins for the models a HyperLoRA workflow needs, built with ComfyUI's own classes.

SDXL-architecture UNet (real block layout, small widths), SDXL's dual CLIP text encoder and a VAE
with small configs, a CLIP vision encoder of ViT-L's token layout (257 tokens of a 224 px image)
but width 64, and a HyperLoRA checkpoint made for exactly these. Used by the tests (through the
test node pack), `make demo --standins` and the benchmarks when the real models are absent.
Every ComfyUI object comes from `comfy_bridge` (this module imports no ComfyUI code itself).
"""

from __future__ import annotations

import json
import math
from functools import cache
from pathlib import Path

import torch

from ..comfy_bridge.bases import SDXL
from ..comfy_bridge.random_init import init_weights
from ..comfy_bridge.wrappers import autoencoder_kl, clip_vision_model, controlnet_model, sdxl_text_encoders, vae_object
from ..safetensors_io import save_tensors_atomic
from .hyperlora import random_hyperlora, small_config

TINY_CLIP_VISION_JSON = Path(__file__).resolve().parent / "tiny_clip_vision.json"
TINY_VISION_WIDTH = json.loads(TINY_CLIP_VISION_JSON.read_text())["hidden_size"]
TINY_TEXT = {"hidden_size": 32, "intermediate_size": 64, "num_attention_heads": 2, "num_hidden_layers": 3,
             "projection_dim": 32}
"""Both SDXL text encoders at width 32: context 32+32 = the tiny UNet's context_dim 64."""
TINY_VAE = {"double_z": True, "z_channels": 4, "resolution": 64, "in_channels": 3, "out_ch": 3, "ch": 32,
            "ch_mult": [1, 1, 1, 1], "num_res_blocks": 1, "attn_resolutions": [], "dropout": 0.0}
"""Four levels, so 8x down/up-sampling like SDXL's VAE; narrow channels."""


def tiny_unet_config() -> dict:
    return SDXL.tiny_config(TINY_TEXT["projection_dim"])


def build_tiny_sdxl(seed: int = 0):
    """A ComfyUI ModelPatcher around `model_base.SDXL` with deterministic random weights."""
    model = SDXL.build(tiny_unet_config(), device="cpu")
    init_weights(model.model, seed=seed)
    return model


def build_tiny_clip(seed: int = 0):
    """`comfy.sd.CLIP` with SDXL's tokenizer and dual text encoder, at tiny widths."""
    clip = sdxl_text_encoders(tiny_unet_config(), TINY_TEXT)
    init_weights(clip.cond_stage_model, seed=seed, std=0.2)
    return clip


def build_tiny_vae(seed: int = 0):
    module = autoencoder_kl(TINY_VAE, 4)
    init_weights(module, seed=seed, std=0.1)
    return vae_object(module.state_dict(), TINY_VAE, 4, dtype=None)


def build_tiny_clip_vision(seed: int = 0):
    """ComfyUI's `ClipVisionModel` from a small config: 257 tokens like ViT-L/14, width 64."""
    model = clip_vision_model(TINY_CLIP_VISION_JSON)
    init_weights(model.model, seed=seed, std=0.05)
    return model


@cache
def tiny_module_specs():
    """The tiny UNet's LoRA'd attention modules (meta device: no memory)."""
    return tuple(SDXL.module_specs(SDXL.build(tiny_unet_config(), device="meta")))


def tiny_hyperlora_config(base_rank: int | None = 2):
    return small_config(modules=tiny_module_specs(), clip_dim=TINY_VISION_WIDTH, base_rank=base_rank)


def write_tiny_checkpoint(path: Path, seed: int = 0, base_rank: int | None = 2, published_layout: bool = False) -> Path:
    """A random HyperLoRA checkpoint for the tiny SDXL and tiny CLIP vision, saved to disk."""
    model = random_hyperlora(tiny_hyperlora_config(base_rank), seed=seed)
    path = Path(path)
    if published_layout:
        path.mkdir(parents=True, exist_ok=True)
        model.save_pretrained(path, dtype=torch.float32)
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        model.save_single_file(path, dtype=torch.float32)
    return path


def write_tiny_controlnet(path: Path, seed: int = 0) -> Path:
    """A random ControlNet for the tiny SDXL (ComfyUI's own class), saved where ComfyUI's ControlNet loader
    reads it."""
    net = controlnet_model(tiny_unet_config())
    g = torch.Generator().manual_seed(seed)

    def init(key: str, shape: torch.Size) -> torch.Tensor:
        """Fan-in scaled (activations neither vanish nor blow up through the hint encoder); the output
        convolutions at 0.3 so the control steers the UNet without drowning out its own weights."""
        if len(shape) < 2:
            return torch.zeros(shape) if key.endswith("bias") else torch.ones(shape)
        gain = 1.5 if key.startswith("input_hint_block") else 0.3 if key.startswith(("zero_convs", "middle_block_out")) else 1.0
        return torch.randn(shape, generator=g) * gain / math.prod(shape[1:]) ** 0.5

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_tensors_atomic({k: init(k, v.shape) for k, v in net.state_dict().items()}, path)
    return path


def write_tiny_style_lora(path: Path, seed: int = 0, rank: int = 4) -> Path:
    """A random kohya LoRA on every attention projection of the tiny SDXL (the same keys a HyperLoRA patches)."""
    g = torch.Generator().manual_seed(seed)
    tensors = {}
    for spec in tiny_module_specs():
        for key, layer in zip(spec.layer_names(), spec.layers):
            tensors[f"{key}.lora_down.weight"] = torch.randn(rank, layer.in_features, generator=g) * 0.3
            tensors[f"{key}.lora_up.weight"] = torch.randn(layer.out_features, rank, generator=g) * 0.3
            tensors[f"{key}.alpha"] = torch.tensor(float(rank))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_tensors_atomic(tensors, path)
    return path
