"""Reference photos -> the pack's `IDCondition`, with the toy ArcFace/CLIP analogues.

The toy counterpart of `hyperlora_core.encode.encode_id`: same output type, so the pack's
Generate node turns it into a LoRA unchanged. No face detection: toy photos are face portraits.
"""

from __future__ import annotations

import os

import torch

from ..errors import HyperLoRAError
from ..file_cache import LOADED
from . import files, world
from .encoders import Conditioner, ToyArcFace, ToyCLIP, masked_reference


def load_conditioner(folder: str | os.PathLike | None = None) -> Conditioner:
    """The toy ArcFace and CLIP analogues of a world, reused while its files are unchanged."""
    return LOADED.get("toy_conditioner", files.world_dir(folder), lambda _: Conditioner(
        files.load_module(ToyArcFace(), "arcface", folder), files.load_module(ToyCLIP(), "clip_vision", folder)))


def to_toy_size(images: torch.Tensor) -> torch.Tensor:
    """ComfyUI IMAGE `[B, H, W, 3]` 0..1 -> `[B, 3, 32, 32]` (area-resized when larger)."""
    if images.ndim != 4 or images.shape[-1] < 3:
        raise HyperLoRAError(f"expected an IMAGE batch [B, H, W, 3]; got {list(images.shape)}.")
    x = images[..., :3].permute(0, 3, 1, 2).float()
    if x.shape[-2:] != (world.IMAGE_SIZE, world.IMAGE_SIZE):
        x = torch.nn.functional.interpolate(x, size=(world.IMAGE_SIZE, world.IMAGE_SIZE), mode="area")
    return x.clamp(0, 1)


def encode_toy_photos(images: torch.Tensor, folder: str | os.PathLike | None = None,
                      weights: list[float] | None = None):
    """Photos of one toy identity -> `IDCondition` (CLIP-analogue tokens, 512-d ID embeddings)."""
    from ..conditions import IDCondition

    x = to_toy_size(images)
    tokens, embeds = load_conditioner(folder)(x)
    n = x.shape[0]
    return IDCondition(
        clip_tokens=tokens.float(), id_embeds=embeds.float(),
        weights=torch.tensor(weights, dtype=torch.float32) if weights is not None else None,
        face_crops=masked_reference(x).permute(0, 2, 3, 1).contiguous(),
        photo_indices=tuple(range(n)), face_counts=(1,) * n, embedding_space=world.NAME,
    )
