"""The toy world for the headless trainer (`python -m hyperlora_core.train fit`, `model.backbone: toy`).

- `toy_backbone(folder, base)`: the trainer's `Backbone` with the toy UNet (or, `base` "dit", the toy DiT and its
  own caption encoder; `model.base: flux` in a config), caption encoder (as CLIP),
  VAE and the CLIP-vision analogue (`clip_tokens` = its `hidden_states[-2]` of the grey-background
  32-px face, as the real backbone returns ViT-L/14's penultimate tokens of the 224-px crop).
  Importing this module registers it as the backbone `toy` (the trainer never imports the toy world).
- `write_toy_dataset(folder, renders, world_folder)`: the trainer's prepared-dataset format
  (webdataset shards + index) written straight from the generator: per render its toy-VAE latent,
  its caption's embedding, the ArcFace-analogue embedding, the grey-background face as `face.png`
  and the face-blurred render as `base.png` (the Base-LoRA's input). The caption names only the
  render's base factors ("red shirt, blue striped background"), never identity, as a web caption
  describes clothes and setting but not a face precisely: only a LoRA can carry identity, and with
  the trainer's text dropout the caption is empty for part of the samples. This replaces
  `train prepare`, whose face detection and crops are for photos of people.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..comfy_bridge.backbone import Backbone, BackboneKind, register_backbone
from ..pixels import uint8_pixels
from . import files, world
from .conditions import to_toy_size
from .encoders import CLIP_WIDTH, ToyArcFace, ToyCLIP, masked_reference, to_tensor
from .models import COMFY_SIZE, UNET, load_toy_models, toy_base, toy_base_of_profile


@dataclass
class ToyBackbone(Backbone):
    """`Backbone` whose CLIP vision is the toy CLIP analogue (`clip_vision` holds a `ToyCLIP`)."""

    @property
    def clip_vision_dim(self) -> int:
        return CLIP_WIDTH

    @torch.no_grad()
    def clip_tokens(self, crops: torch.Tensor) -> torch.Tensor:
        """Grey-background face crops `[B, H, W, 3]` 0..1 -> `[B, 65, 64]` penultimate tokens."""
        x = to_toy_size(crops.float().cpu())
        return self.clip_vision.penultimate(x).float()


def toy_backbone(folder: str | os.PathLike | None = None, base: str | None = None) -> ToyBackbone:
    """The toy world in `folder` with its base `base` (`models.TOY_BASES`; None: the UNet); named `toy` for the
    UNet, `toy-dit` for the DiT (what a dataset records: a DiT's shards carry its own caption encoder's text)."""
    folder = files.world_dir(folder)
    b = toy_base(base)
    unet, clip, vae = load_toy_models(folder, b.name)
    return ToyBackbone(unet=unet, clip=clip, vae=vae, clip_vision=files.load_module(ToyCLIP(), "clip_vision", folder),
                       name=world.NAME if b is UNET else f"{world.NAME}-{b.name}", profile=b.profile)


def _load_kind(checkpoint: str | None = None, clip_vision: str | None = None, seed: int = 0,  # noqa: ARG001
               base: str | None = None) -> ToyBackbone:
    return toy_backbone(checkpoint, toy_base_of_profile(base).name)


register_backbone(BackboneKind("toy", _load_kind, resolution=world.IMAGE_SIZE))


@torch.no_grad()
def write_toy_dataset(folder: str | os.PathLike, renders: world.Renders, world_folder: str | os.PathLike | None = None,
                      per_shard: int = 4000, backbone: ToyBackbone | None = None, base: str | None = None) -> Path:
    """Every render as one training sample (identity = its toy identity), for the toy base `base` (None: the UNet);
    returns the index path."""
    from ..train.shards import SampleRecord, ShardWriter

    backbone = backbone or toy_backbone(world_folder, base)
    arcface = files.load_module(ToyArcFace(), "arcface", world_folder)
    x = to_tensor(renders.images)
    latents = backbone.encode_images(torch.from_numpy(renders.images).float() / 255.0)
    embeds = torch.cat([arcface(x[s : s + 512]) for s in range(0, len(x), 512)])
    faces = uint8_pixels(masked_reference(x).permute(0, 2, 3, 1))
    bases = world.face_blurred(renders.images)
    captions = [", ".join(world.base_phrases(f)) for f in renders.base_factors]
    unique = sorted(set(captions))
    texts = backbone.encode_text(unique)
    row = {c: i for i, c in enumerate(unique)}
    empty = backbone.encode_text([""])  # what text dropout puts in
    writer = ShardWriter(folder, per_shard=per_shard)
    for n in range(len(renders)):
        ident = int(renders.identity[n])
        meta = {"identity": f"toy{ident:04d}", "caption": captions[n], "orig_hw": [COMFY_SIZE, COMFY_SIZE],
                "crop_tl": [0, 0], "target_hw": [COMFY_SIZE, COMFY_SIZE], "render": int(renders.render_index[n]),
                "attributes": [int(v) for v in renders.attributes[n]],
                "base_factors": [int(v) for v in renders.base_factors[n]]}
        k = row[captions[n]]
        writer.add(SampleRecord(key=f"t{n:07d}", meta=meta, latent=latents[n].numpy(),
                                cond={key: v[k].numpy() for key, v in texts.items()},
                                arcface=embeds[n].numpy().astype(np.float32), face=faces[n], base=bases[n]))
    info = {"backbone": backbone.name, "resolution": world.IMAGE_SIZE, "source": "hyperlora_core.toy.world",
            "samples": len(renders), "face_pack": world.NAME, "embedding_space": world.NAME,
            "standin_face_models": False}
    return writer.finish(empty, info, backbone.profile.name)
