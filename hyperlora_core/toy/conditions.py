"""Reference photos -> the pack's `IDCondition` and `BaseCondition`, with the toy ArcFace/CLIP analogues.

The toy counterparts of `hyperlora_core.encode.encode_id` and `encode_base`: same output types, so
the pack's Generate ID / Generate Base nodes turn them into LoRAs unchanged. No face detection:
toy photos are face portraits.
"""

from __future__ import annotations

import os

import torch

from ..errors import HyperLoRAError
from ..face.images import FLOAT_MAX
from ..file_cache import LOADED
from . import files, world
from .encoders import Conditioner, ToyArcFace, ToyCLIP, masked_reference


def load_conditioner(folder: str | os.PathLike | None = None) -> Conditioner:
    """The toy ArcFace and CLIP analogues of a world, reused while its files are unchanged."""
    return LOADED.get("toy_conditioner", files.world_dir(folder), lambda _: Conditioner(
        files.load_module(ToyArcFace(), "arcface", folder), files.load_module(ToyCLIP(), "clip_vision", folder)))


def check_image_batch(images: torch.Tensor) -> torch.Tensor:
    """`images` as they are if they are a ComfyUI IMAGE (`[B, H, W, 3 or 4]` float 0..1), else an error
    saying what they look like instead: a channels-first tensor or 0..255 values would otherwise be
    resized and clamped into a LoRA of nothing the user meant."""
    shape = list(getattr(images, "shape", []))
    if not isinstance(images, torch.Tensor) or images.ndim != 4:
        raise HyperLoRAError(f"photos: expected a ComfyUI IMAGE batch [batch, height, width, channels]; got "
                             f"{shape or type(images).__name__}. Connect an IMAGE output (e.g. Toy Reference Photos).")
    if images.shape[-1] not in (3, 4):
        first = " It looks channels-first: move the channel axis last." if images.shape[1] in (1, 3, 4) else ""
        raise HyperLoRAError(f"photos: the IMAGE batch {shape} has {images.shape[-1]} channels in its last axis; a "
                             f"ComfyUI IMAGE is [batch, height, width, 3].{first}")
    if not images.is_floating_point():
        raise HyperLoRAError(f"photos: the IMAGE batch holds {str(images.dtype).replace('torch.', '')} values; a "
                             "ComfyUI IMAGE holds floats 0..1 (divide 0..255 pixels by 255).")
    if images.numel() and not torch.isfinite(images).all():
        raise HyperLoRAError("photos: the IMAGE batch has NaN or infinite pixel values; fix the node that made it.")
    low, top = (float(images.min()), float(images.max())) if images.numel() else (0.0, 0.0)
    if top > FLOAT_MAX or low < 1.0 - FLOAT_MAX:
        raise HyperLoRAError(f"photos: the IMAGE batch has pixel values from {low:g} to {top:g}, but ComfyUI images "
                             "hold 0..1" + (": it looks like a 0..255 image; divide it by 255." if top > FLOAT_MAX else "."))
    return images


def to_toy_size(images: torch.Tensor) -> torch.Tensor:
    """ComfyUI IMAGE `[B, H, W, 3]` 0..1 -> `[B, 3, 32, 32]` (area-resized when larger)."""
    x = check_image_batch(images)[..., :3].permute(0, 3, 1, 2).float()
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


def encode_toy_base(images: torch.Tensor, folder: str | os.PathLike | None = None,
                    weights: list[float] | None = None):
    """Photos -> `BaseCondition`: CLIP-analogue tokens of each photo with its face blurred out
    (`world.face_blurred`, the published Base crop's analogue), for Generate Base LoRA."""
    from ..conditions import BaseCondition

    x = to_toy_size(images)
    blurred = world.face_blurred(tensor=x)
    with torch.no_grad():
        tokens = load_conditioner(folder).clip.penultimate(blurred)
    n = x.shape[0]
    return BaseCondition(
        clip_tokens=tokens.float(), weights=torch.tensor(weights, dtype=torch.float32) if weights is not None else None,
        crops=blurred.permute(0, 2, 3, 1).contiguous(), photo_indices=tuple(range(n)), face_counts=(1,) * n,
    )
