"""A small synthetic prepared dataset (for tests, benchmarks and trying the trainer without photos).

Each identity is a colour scheme and a pattern; its photos vary in offset and noise. The cached
latents and text embeddings come from the backbone's own VAE and text encoders, exactly as
`prepare` makes them; only face detection is skipped (the "face" crop is the whole image and
the "ArcFace" vector is a fixed random unit vector per identity plus a little noise).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..comfy_bridge.backbone import Backbone
from ..config import TRIGGER_WORDS
from ..pixels import uint8_pixels
from .shards import SampleRecord, ShardWriter

CROP = 224


def _photo(rng: np.random.Generator, colours: np.ndarray, freq: float, size: int) -> np.ndarray:
    y, x = np.mgrid[0:size, 0:size] / size
    shift = rng.uniform(0, 1, 2)
    wave = 0.5 + 0.5 * np.sin(2 * np.pi * freq * (x + shift[0]) + np.cos(2 * np.pi * freq * (y + shift[1])))
    img = colours[0] * wave[..., None] + colours[1] * (1 - wave[..., None])
    img = img + rng.normal(0, 0.03, img.shape)
    return np.clip(img, 0, 1).astype(np.float32)


def _resize(img: np.ndarray, size: int) -> np.ndarray:
    t = torch.from_numpy(img).permute(2, 0, 1)[None]
    out = torch.nn.functional.interpolate(t, size=(size, size), mode="bilinear", align_corners=False)
    return uint8_pixels(out[0].permute(1, 2, 0))


def write_synthetic_dataset(
    folder: str | Path,
    backbone: Backbone,
    identities: int = 4,
    photos: int = 3,
    size: int = 64,
    seed: int = 0,
    with_base: bool = True,
    per_shard: int = 8,
) -> Path:
    rng = np.random.default_rng(seed)
    writer = ShardWriter(folder, per_shard=per_shard)
    captions = []
    records = []
    for i in range(identities):
        colours = rng.uniform(0, 1, (2, 3))
        freq = rng.uniform(1, 4)
        face_vec = rng.normal(0, 1, 512)
        for j in range(photos):
            img = _photo(rng, colours, freq, size)
            emb = face_vec + rng.normal(0, 0.2, 512)
            emb = (emb / np.linalg.norm(emb)).astype(np.float32)
            blurred = img.copy()
            c = size // 4
            blurred[c:-c, c:-c] = blurred[c:-c, c:-c].mean(axis=(0, 1))
            caption = TRIGGER_WORDS + f"a photo of a person, style {j % 2}"
            captions.append(caption)
            records.append((f"id{i:03d}_{j:03d}", f"person{i:03d}", img, emb, blurred))
    cond = backbone.encode_text(captions)
    latents = backbone.encode_images(torch.from_numpy(np.stack([r[2] for r in records])))
    for k, (key, ident, img, emb, blurred) in enumerate(records):
        meta = {
            "identity": ident, "caption": captions[k], "orig_hw": [size, size], "crop_tl": [0, 0],
            "target_hw": [size, size], "face_bbox": [size // 4, size // 4, 3 * size // 4, 3 * size // 4],
            "landmarks": [], "source": "synthetic",
        }
        writer.add(SampleRecord(
            key=key, meta=meta, latent=latents[k].numpy(), cond={name: v[k].numpy() for name, v in cond.items()},
            arcface=emb, face=_resize(img, CROP), base=_resize(blurred, CROP) if with_base else None,
        ))
    info = {"backbone": backbone.name, "resolution": size, "source": "synthetic", "samples": len(records)}
    return writer.finish(backbone.encode_text([""]), info, backbone.profile.name)
