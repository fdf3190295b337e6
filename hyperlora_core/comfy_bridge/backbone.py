"""The frozen models a training run needs, loaded with ComfyUI's own loaders (or tiny stand-ins).

A `Backbone` bundles a base model's UNet (a `ModelPatcher`), its text encoders (`comfy.sd.CLIP`), the
VAE (`comfy.sd.VAE`), the CLIP vision tower (`comfy.clip_vision.ClipVisionModel`) and the base's
profile (`bases`). The real one comes from a checkpoint (`load_checkpoint_guess_config`, its base
detected) plus a CLIP ViT-L/14 file; the tiny one is built from the profile's ComfyUI classes at
small widths with seeded random weights,
so tests and the tiny example config exercise exactly the code paths of a real run.

Backbones are found by name in a registry (`model.backbone` of a training config): each
`BackboneKind` carries its factory and its own defaults, so the trainer never asks which one it
has. `tiny` and `checkpoint` are registered here; other packages register theirs on import (the
toy world: `hyperlora_core.toy.backbone`, listed in `PROVIDERS` so the name works before that).
"""

from __future__ import annotations

import importlib
import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import comfy.clip_vision
import comfy.model_management
import comfy.sd
import comfy.taesd.taesd
import torch

from ..config import LEGACY_BASE
from ..errors import HyperLoRAError
from .bases import BaseProfile, Conditioning, profile_named, profile_of
from .random_init import init_weights

TINY_UNET_STD = 0.1
"""Weight scale of the tiny UNet: large enough that signals (and a LoRA's effect) reach the output."""

TINY_CLIP_VISION = {
    "attention_dropout": 0.0, "dropout": 0.0, "hidden_act": "quick_gelu", "hidden_size": 32,
    "image_size": 224, "initializer_factor": 1.0, "initializer_range": 0.02, "intermediate_size": 64,
    "layer_norm_eps": 1e-05, "model_type": "clip_vision_model", "num_attention_heads": 2, "num_channels": 3,
    "num_hidden_layers": 3, "patch_size": 32, "projection_dim": 32,
}
"""A CLIP ViT with 7x7 patches + CLS = 50 tokens of width 32 (ViT-L/14: 257 x 1024)."""

@dataclass
class Backbone:
    """Frozen parts of one base model (`profile`): UNet patcher, text encoders, VAE and CLIP vision (the
    last three optional)."""

    unet: object
    clip: object | None
    vae: object | None
    clip_vision: object | None
    name: str
    profile: BaseProfile

    @property
    def clip_vision_dim(self) -> int:
        if self.clip_vision is None:
            raise HyperLoRAError("no CLIP vision model is loaded; set model.clip_vision in the config.")
        return int(self.clip_vision.model.vision_model.embeddings.class_embedding.shape[0])

    @torch.no_grad()
    def encode_text(self, captions: list[str]) -> Conditioning:
        """The base's text conditioning of `captions` (batched, CPU, fp32), as ComfyUI's CLIPTextEncode
        encodes them with this backbone's text encoders."""
        if self.clip is None:
            raise HyperLoRAError(f"no text encoder is loaded; the checkpoint must contain {self.profile.display_name}'s.")
        return self.profile.text_conditioning(self.clip, captions)

    @torch.no_grad()
    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        """`[B, H, W, 3]` in 0..1 -> VAE latents as `VAE.encode` returns them (not yet scaled)."""
        if self.vae is None:
            raise HyperLoRAError("no VAE is loaded; the checkpoint must contain one.")
        return self.vae.encode(images).float().cpu()

    @torch.no_grad()
    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        return self.vae.decode(latents).float().cpu().clamp(0, 1)

    @torch.no_grad()
    def clip_tokens(self, crops: torch.Tensor) -> torch.Tensor:
        """Penultimate-layer CLIP vision tokens of face crops `[B, H, W, 3]` (0..1)."""
        if self.clip_vision is None:
            raise HyperLoRAError("no CLIP vision model is loaded; set model.clip_vision in the config.")
        return self.clip_vision.encode_image(crops, crop=True)["penultimate_hidden_states"].float()


def _check_file(path: str | os.PathLike, what: str) -> Path:
    p = Path(path).expanduser()
    if not p.is_file():
        raise HyperLoRAError(f"{what} '{p}' does not exist; fix the path in the config (model section).")
    if p.suffix != ".safetensors":
        raise HyperLoRAError(
            f"{what} '{p}' is not a .safetensors file; the trainer loads safetensors only (no pickle). "
            "Convert it first."
        )
    return p


def load_backbone(checkpoint: str | os.PathLike, clip_vision: str | os.PathLike | None,
                  base: str | None = None) -> Backbone:
    """A checkpoint (UNet + text encoders + VAE) and a CLIP vision file, through ComfyUI's loaders; its base
    is detected (`base`, when given, must match)."""
    ckpt = _check_file(checkpoint, "model checkpoint")
    out = comfy.sd.load_checkpoint_guess_config(str(ckpt), output_vae=True, output_clip=True, embedding_directory=None)
    unet, clip, vae = out[0], out[1], out[2]
    profile = profile_of(unet, str(ckpt))
    if base is not None and profile.name != base:
        raise HyperLoRAError(f"{ckpt} is a {profile.display_name} model but the config's model.base is '{base}'; "
                             f"set model.base to '{profile.name}' or leave it out (then it is detected).")
    vision = comfy.clip_vision.load(str(_check_file(clip_vision, "CLIP vision model"))) if clip_vision else None
    return Backbone(unet=unet, clip=clip, vae=vae, clip_vision=vision, name=ckpt.name, profile=profile)


def tiny_backbone(seed: int = 0, base: str = LEGACY_BASE) -> Backbone:
    """A base's UNet (widths 32..), text encoders, TAESD VAE and CLIP ViT, all tiny and seeded."""
    profile = profile_named(base, "model.base")
    unet = profile.build(profile.tiny_config())
    init_weights(unet.model, seed=seed, std=TINY_UNET_STD)
    clip = profile.tiny_clip()
    init_weights(clip.cond_stage_model, seed=seed + 1)
    taesd = comfy.taesd.taesd.TAESD(latent_channels=profile.latent_channels)
    init_weights(taesd, seed=seed + 2, std=0.05)
    with torch.no_grad():
        taesd.vae_scale.fill_(1.0)
        taesd.vae_shift.fill_(0.0)
    vae = comfy.sd.VAE(sd=taesd.state_dict())
    with tempfile.TemporaryDirectory() as tmp:
        cfg = Path(tmp) / "tiny_clip_vision.json"
        cfg.write_text(json.dumps(TINY_CLIP_VISION))
        vision = comfy.clip_vision.ClipVisionModel(str(cfg))
    init_weights(vision.model, seed=seed + 3)
    return Backbone(unet=unet, clip=clip, vae=vae, clip_vision=vision, name=f"tiny-{profile.name}-seed{seed}",
                    profile=profile)


@dataclass(frozen=True)
class BackboneKind:
    """A named way to build a `Backbone`, with the defaults that belong to it."""

    name: str
    load: Callable[..., Backbone]
    """`load(checkpoint=..., clip_vision=..., seed=..., base=...) -> Backbone` (the training config's model
    section; `base` None: the kind's own or the checkpoint's)."""
    resolution: int
    """Default side of the square training images (`prepare`, `finetune`)."""
    needs_checkpoint: bool = False
    """`model.checkpoint` must name a file (or folder) for this kind."""


_KINDS: dict[str, BackboneKind] = {}
PROVIDERS: dict[str, str] = {"toy": "hyperlora_core.toy.backbone"}
"""Backbone name -> the module that registers it when imported (so the registry can load it on first use)."""


def register_backbone(kind: BackboneKind) -> BackboneKind:
    _KINDS[kind.name] = kind
    return kind


def backbone_names() -> tuple[str, ...]:
    return tuple(dict.fromkeys([*_KINDS, *PROVIDERS]))


def backbone_kind(name: str) -> BackboneKind:
    """The registered kind called `name` (importing its provider module on first use)."""
    if name not in _KINDS and name in PROVIDERS:
        importlib.import_module(PROVIDERS[name])
    if name not in _KINDS:
        raise HyperLoRAError(f"config: 'model.backbone' is '{name}'; allowed: {', '.join(backbone_names())}.")
    return _KINDS[name]


def _load_checkpoint_kind(checkpoint: str | None = None, clip_vision: str | None = None, seed: int = 0,  # noqa: ARG001
                          base: str | None = None) -> Backbone:
    return load_backbone(checkpoint, clip_vision, base)


def _load_tiny_kind(checkpoint: str | None = None, clip_vision: str | None = None, seed: int = 0,  # noqa: ARG001
                    base: str | None = None) -> Backbone:
    return tiny_backbone(seed, base or LEGACY_BASE)


register_backbone(BackboneKind("tiny", _load_tiny_kind, resolution=64))
register_backbone(BackboneKind("checkpoint", _load_checkpoint_kind, resolution=1024, needs_checkpoint=True))
