"""The toy world loaded: every part as ComfyUI's loaders hand it out, and its KSampler path.

Every toy measurement (`measure.py`: the study, the ablation, the build's curve and eval stage, the demo's
judging, the template pictures and the tests) starts from the same `ToyWorld.load`, so they all
measure the files a user's graph loads.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from ..comfy_bridge import apply_lora
from ..comfy_bridge.diffusion import encode_prompt, ksample, ksampler_noise
from ..model import HyperLoRA
from . import files
from .backbone import ToyBackbone, toy_backbone
from .encoders import AttributeJudge, Conditioner, ToyArcFace
from .models import LATENT_SIZE, UNET, ToyBase, toy_base


@dataclass
class ToyWorld:
    """Every toy part, loaded the way ComfyUI's loaders hand them out."""

    backbone: ToyBackbone  # UNet or DiT (ModelPatcher), caption encoder (comfy.sd.CLIP), VAE (comfy.sd.VAE), CLIP analogue
    hyperlora: HyperLoRA
    conditioner: Conditioner
    judge: AttributeJudge
    base: ToyBase = UNET

    @classmethod
    def load(cls, folder: str | os.PathLike | None = None, hyperlora: str | os.PathLike | None = None,
             base: str | None = None) -> ToyWorld:
        """The world in `folder` (default models/toy) with its base `base` ("unet", the default, or "dit":
        `models.TOY_BASES`) and that base's HyperLoRA, or the one at `hyperlora`."""
        b = toy_base(base)
        backbone = toy_backbone(folder, b.name)
        return cls(
            backbone=backbone,
            hyperlora=HyperLoRA.from_pretrained(hyperlora or files.part_path(b.parts["hyperlora"], folder)).eval(),
            conditioner=Conditioner(files.load_module(ToyArcFace(), "arcface", folder), backbone.clip_vision),
            judge=files.load_module(AttributeJudge(), "judge", folder),
            base=b,
        )

    @property
    def unet(self):
        return self.backbone.unet

    @property
    def clip(self):
        return self.backbone.clip

    @property
    def vae(self):
        return self.backbone.vae

    def noise(self, count: int, seed: int) -> torch.Tensor:
        """KSampler's noise for `count` toy latents and a seed (what the KSampler node would draw)."""
        return ksampler_noise(torch.zeros(count, 4, LATENT_SIZE, LATENT_SIZE), seed)

    @torch.no_grad()
    def generate(self, lora: dict | None, noise: torch.Tensor, prompt: str = "", strength: float = 1.0,
                 seed: int = 0, steps: int = 20, cfg: float = 1.0, model=None) -> torch.Tensor:
        """Images `[B, 32, 32, 3]` 0..1 (ComfyUI IMAGE layout): Apply -> KSampler -> VAEDecode
        (`model`: an already patched UNet instead)."""
        model = model or (apply_lora(self.unet, lora, strength) if lora is not None else self.unet)
        positive, negative = encode_prompt(self.clip, prompt), encode_prompt(self.clip, "")
        latent = ksample(model, positive, negative, torch.zeros_like(noise), seed, steps=steps, cfg=cfg, noise=noise,
                         scheduler=self.base.profile.scheduler)
        return self.vae.decode(latent).float().clamp(0, 1)

    def lora_for(self, clip_tokens: torch.Tensor, id_embeds: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.hyperlora.generate_id_lora(clip_tokens, id_embeds)
