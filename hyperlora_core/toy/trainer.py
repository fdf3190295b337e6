"""The toy world for the headless trainer (`python -m hyperlora_core.train fit`, `model.backbone: toy`).

- `toy_backbone(folder)`: the trainer's `Backbone` with the toy UNet, caption encoder (as CLIP),
  VAE and the CLIP-vision analogue (`clip_tokens` = its `hidden_states[-2]` of the grey-background
  32-px face, as the real backbone returns ViT-L/14's penultimate tokens of the 224-px crop).
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

from ..comfy_bridge.backbone import Backbone
from . import files, world
from .bridge import COMFY_SIZE, wrap_caption_encoder, wrap_unet, wrap_vae
from .conditions import to_toy_size
from .encoders import CLIP_WIDTH, ToyArcFace, ToyCLIP
from .stages import masked_reference, to_tensor

BACKBONE_NAME = "toy-world"
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
    clip = files.load_module(ToyCLIP(), "clip_vision", folder)
    return ToyBackbone(
        unet=wrap_unet(files.load_part("unet", folder)),
        clip=wrap_caption_encoder(files.load_part("caption_encoder", folder)),
        vae=wrap_vae(files.load_part("vae", folder)),
        clip_vision=clip,
        name=BACKBONE_NAME,
    )


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
    bases = world.face_blurred(renders.images)
    captions = [", ".join(world.base_phrases(f)) for f in renders.base_factors]
    unique = sorted(set(captions))
    texts, pooleds = backbone.encode_text(unique)
    row = {c: i for i, c in enumerate(unique)}
    text, pooled = backbone.encode_text([""])
    writer = ShardWriter(folder, per_shard=per_shard)
    for n in range(len(renders)):
        ident = int(renders.identity[n])
        meta = {"identity": f"toy{ident:04d}", "caption": captions[n], "orig_hw": [COMFY_SIZE, COMFY_SIZE],
                "crop_tl": [0, 0], "target_hw": [COMFY_SIZE, COMFY_SIZE], "render": int(renders.render_index[n]),
                "attributes": [int(v) for v in renders.attributes[n]],
                "base_factors": [int(v) for v in renders.base_factors[n]]}
        k = row[captions[n]]
        writer.add(SampleRecord(key=f"t{n:07d}", meta=meta, latent=latents[n].numpy(), text=texts[k].numpy(),
                                pooled=pooleds[k].numpy(), arcface=embeds[n].numpy().astype(np.float32), face=faces[n],
                                base=bases[n]))
    info = {"backbone": backbone.name, "resolution": world.IMAGE_SIZE, "source": "hyperlora_core.toy.world",
            "samples": len(renders), "face_pack": "toy-world", "embedding_space": "toy-world",
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


def checkpoint_hyperlora(path: str | os.PathLike, cfg, stage: str):
    """A trainer DCP checkpoint (`<run>/<stage>/checkpoints/step-N`) as a `HyperLoRA` (for the curve)."""
    from ..comfy_bridge.sdxl import attention_module_specs, build_sdxl
    from ..train.checkpointing import load_checkpoint
    from ..train.distributed import DistInfo
    from ..train.fit import make_optimizer
    from ..train.objective import HyperStep
    from ..train.setup import hyper_config, new_hyperlora, set_trainable
    from .bridge import UNET_CONFIG

    config = hyper_config(cfg, attention_module_specs(build_sdxl(UNET_CONFIG, device="meta")), CLIP_WIDTH)
    model = new_hyperlora(config, cfg.seed)
    set_trainable(model, stage, cfg.trainable(stage))
    step = HyperStep(model)
    optimizer = make_optimizer(step, cfg, stage)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0)
    load_checkpoint(Path(path), step, optimizer, scheduler, DistInfo(0, 1, 0, torch.device("cpu")))
    return model.requires_grad_(False).eval()
