"""Evaluation backend for real SDXL through ComfyUI as a library (the toy world measures through `toy/measure.py`).

It generates with ComfyUI's own path: LoRAs from `HyperLoRA.generate_id_lora` applied with
`comfy_bridge.apply_lora` (weight patches), `comfy.sample.sample`, the model's VAE decode.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from ..comfy_bridge import apply_lora
from ..errors import HyperLoRAError
from ..model import HyperLoRA
from ..pixels import uint8_pixels
from .harness import Person


def _patched(model, loras: list[tuple[dict, float]]):
    for lora, strength in loras:
        model = apply_lora(model, lora, strength)
    return model


class SDXLBackend:
    """Real SDXL: an SDXL model/CLIP/VAE, a HyperLoRA, a face analyzer and CLIP ViT-L/14 (already loaded;
    `from_files` loads them from local files with ComfyUI's loaders and the pack's)."""

    name = "SDXL"

    def __init__(self, unet, clip, vae, hyperlora: HyperLoRA, analyzer, clip_vision, size: int = 1024, steps: int = 20,
                 cfg: float = 5.0, sampler: str = "euler", scheduler: str = "karras", negative: str = "",
                 trigger_words: bool = True) -> None:
        self.unet, self.clip, self.vae = unet, clip, vae
        self.hl = hyperlora.eval()
        self.has_base = self.hl.config.has_base
        self.analyzer, self.clip_vision = analyzer, clip_vision
        self.size, self.steps, self.cfg = size, steps, cfg
        self.sampler, self.scheduler, self.negative = sampler, scheduler, negative
        self.prefix = self.hl.config.trigger_words if trigger_words else ""

    @classmethod
    def from_files(cls, checkpoint: str | os.PathLike, hyperlora: str | os.PathLike, face_pack: str | os.PathLike,
                   clip_vision: str | os.PathLike, **options) -> SDXLBackend:
        from ..comfy_bridge.backbone import load_backbone
        from ..comfy_bridge.clip_vision import load_clip_vision
        from ..face.analyzer import FaceAnalyzer

        if not Path(checkpoint).is_file():
            raise HyperLoRAError(f"SDXL checkpoint '{checkpoint}' not found.")
        sdxl = load_backbone(checkpoint, None)
        return cls(sdxl.unet, sdxl.clip, sdxl.vae, HyperLoRA.from_pretrained(hyperlora), FaceAnalyzer.load(face_pack),
                   load_clip_vision(clip_vision), **options)

    def prepare(self, person: Person):
        from ..comfy_bridge.clip_vision import ComfyClipEncoder
        from ..encode import encode_base, encode_id

        clip = ComfyClipEncoder(self.clip_vision)
        cond = encode_id(person.photos, self.analyzer, clip, on_no_face="skip")
        base = encode_base(person.photos, self.analyzer, clip, on_no_face="skip") if self.has_base else None
        return cond, base

    def id_lora(self, prepared, refs: int | None) -> dict:
        cond, _ = prepared
        k = refs or len(cond)
        w = cond.weights[:k] if cond.weights is not None else None
        return self.hl.generate_id_lora(cond.clip_tokens[:k], cond.id_embeds[:k], w)

    def base_lora(self, prepared, refs: int | None) -> dict | None:
        _, base = prepared
        if base is None:
            return None
        return self.hl.generate_base_lora(base.clip_tokens[: refs or len(base.clip_tokens)])

    @torch.no_grad()
    def generate(self, prompt: str, seed: int, loras: list[tuple[dict, float]]) -> np.ndarray:
        from ..comfy_bridge.diffusion import encode_prompt, ksample

        latent = torch.zeros(1, 4, self.size // 8, self.size // 8)
        out = ksample(_patched(self.unet, loras), encode_prompt(self.clip, self.prefix + prompt),
                      encode_prompt(self.clip, self.negative), latent, seed, self.steps, self.cfg, self.sampler,
                      self.scheduler)
        return uint8_pixels(self.vae.decode(out).float())[0]

    def face_embedding(self, image: np.ndarray) -> np.ndarray | None:
        from ..encode import analyze_photo

        analysis = analyze_photo(image, self.analyzer)
        if analysis.face is None:
            return None
        return np.asarray(self.analyzer.embedding(np.ascontiguousarray(image[..., ::-1]), analysis.face))

    def attribute_match(self, image: np.ndarray, person: Person) -> np.ndarray | None:  # noqa: ARG002
        return None
