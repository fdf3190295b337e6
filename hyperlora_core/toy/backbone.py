"""The toy world for the headless trainer (`python -m hyperlora_core.train fit`, `model.backbone: toy`).

- `toy_backbone(folder)`: the trainer's `Backbone` with the toy UNet, caption encoder (as CLIP),
  VAE and the CLIP-vision analogue (`clip_tokens` = its `hidden_states[-2]` of the grey-background
  32-px face, as the real backbone returns ViT-L/14's penultimate tokens of the 224-px crop).
  Importing this module registers it as the backbone `toy` (the trainer never imports the toy world).
- `write_toy_dataset(folder, renders, world_folder)`: the trainer's prepared-dataset format
  (webdataset shards + index) written straight from the generator: per render its toy-VAE latent,
  the EMPTY caption's embedding (only the LoRA may carry identity), the ArcFace-analogue embedding
  and the grey-background face as `face.png`. This replaces `train prepare`, whose face detection
  and crops are for photos of people.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..comfy_bridge.backbone import Backbone, BackboneKind, register_backbone
from . import files, world
from .conditions import to_toy_size
from .encoders import CLIP_WIDTH, ToyArcFace, ToyCLIP, masked_reference, to_tensor
from .models import COMFY_SIZE, load_toy_models

CONFIG_FILE = "toy_train.yaml"
"""The trainer config of the shipped toy HyperLoRA (in the toy model folder)."""


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


def toy_backbone(folder: str | os.PathLike | None = None) -> ToyBackbone:
    folder = files.world_dir(folder)
    unet, clip, vae = load_toy_models(folder)
    return ToyBackbone(unet=unet, clip=clip, vae=vae, clip_vision=files.load_module(ToyCLIP(), "clip_vision", folder),
                       name=world.NAME)


def _load_kind(checkpoint: str | None = None, clip_vision: str | None = None, seed: int = 0) -> ToyBackbone:  # noqa: ARG001
    return toy_backbone(checkpoint)


register_backbone(BackboneKind("toy", _load_kind, resolution=world.IMAGE_SIZE))


@torch.no_grad()
def write_toy_dataset(folder: str | os.PathLike, renders: world.Renders, world_folder: str | os.PathLike | None = None,
                      per_shard: int = 4000, backbone: ToyBackbone | None = None) -> Path:
    """Every render as one training sample (identity = its toy identity); returns the index path."""
    from ..train.shards import SampleRecord, ShardWriter

    backbone = backbone or toy_backbone(world_folder)
    arcface = files.load_module(ToyArcFace(), "arcface", world_folder)
    x = to_tensor(renders.images)
    latents = backbone.encode_images(torch.from_numpy(renders.images).float() / 255.0)
    embeds = torch.cat([arcface(x[s : s + 512]) for s in range(0, len(x), 512)])
    faces = (masked_reference(x).permute(0, 2, 3, 1) * 255).round().to(torch.uint8).numpy()
    text, pooled = backbone.encode_text([""])
    writer = ShardWriter(folder, per_shard=per_shard)
    for n in range(len(renders)):
        ident = int(renders.identity[n])
        meta = {"identity": f"toy{ident:04d}", "caption": "", "orig_hw": [COMFY_SIZE, COMFY_SIZE], "crop_tl": [0, 0],
                "target_hw": [COMFY_SIZE, COMFY_SIZE], "render": int(renders.render_index[n]),
                "attributes": [int(v) for v in renders.attributes[n]]}
        writer.add(SampleRecord(key=f"t{n:07d}", meta=meta, latent=latents[n].numpy(), text=text[0].numpy(),
                                pooled=pooled[0].numpy(), arcface=embeds[n].numpy().astype(np.float32), face=faces[n]))
    info = {"backbone": backbone.name, "resolution": world.IMAGE_SIZE, "source": "hyperlora_core.toy.world",
            "samples": len(renders), "face_pack": world.NAME, "embedding_space": world.NAME,
            "standin_face_models": False}
    return writer.finish({"empty_text": text[0].contiguous(), "empty_pooled": pooled[0].contiguous()}, info)


TRAIN_CONFIG = """\
# The toy HyperLoRA's training config: `make toy-world` writes the dataset ({shards}) and runs
#   python -m hyperlora_core.train fit --config {config}
#   python -m hyperlora_core.train export --config {config} --out <folder>
# Relative paths are relative to this file. The model section loads the toy world in this folder.
run_dir: {run_dir}
seed: 7
data:
  shards: {shards}
  verify: quick
model:
  backbone: toy
  checkpoint: .
hypernetwork:
  basis_size: 16
  rank: 4
  base_rank: null
  id_tokens: 16
  face_embed_dim: 512
  resampler: {{dim: 64, depth: 4, heads: 4, dim_head: 16, ff_mult: 4}}
train:
  precision: fp32
  gradient_checkpointing: false
  batch: {{identities: 32, photos_per_identity: 2}}
  references: other_photos
  loss: {{objective: eps, t_min: 200, t_max: 1000}}
  dropout: {{text: 0.0, face: 0.0, base_lora: 0.0}}
  optimizer: {{lr: 2.0e-3, basis_lr: 5.0e-4, weight_decay: 1.0e-4, grad_clip: 1.0}}
  scheduler: {{kind: constant, warmup_steps: 50}}
  checkpoint: {{every: {every}, keep_last: 40}}
  log: {{every: 25, progress_bar: false, tensorboard: false}}
  samples: {{every: -1}}
stages:
  clip_id: {{steps: {steps_clip}}}
  arcface_id: {{steps: {steps_id}, decay_steps: {decay_id}}}
"""


def write_train_config(world_folder: str | os.PathLike, work: str | os.PathLike, steps_clip: int = 250,
                       steps_id: int = 2500, every: int = 125, decay_id: int = 1000) -> Path:
    """The trainer config for the toy world in `world_folder`, with its run and data under `work`."""
    folder = files.world_dir(world_folder).resolve()
    work = Path(work).resolve()
    path = folder / CONFIG_FILE
    rel = lambda p: Path(os.path.relpath(p, folder)).as_posix()  # noqa: E731
    text = TRAIN_CONFIG.format(run_dir=rel(work / "run"), shards=rel(work / "shards"), every=every,
                               steps_clip=steps_clip, steps_id=steps_id, decay_id=decay_id,
                               config=rel(path))
    path.write_text(text, encoding="utf-8")
    return path
