"""Stand-in models for tests, `make demo --standins` and benchmarks when the real weights are absent.

- `face_models`: tiny ONNX models insightface loads as a face pack (`write_tiny_face_pack`);
  `face.packs` knows them by their marker file (their embedding space is `standin:<pack>`).
- `photos`: synthetic photos those models find a face in (`face_photo`) or none (`no_face_photo`), and
  stick-figure pose pictures for the ControlNet workflow (`pose_picture`).
- `hyperlora`: small random HyperLoRAs (`hyperlora_config` at the published shape, `small_config`, `random_hyperlora`, `sdxl_modules`).
- `models`: tiny SDXL UNet / text encoders / VAE / CLIP vision through ComfyUI's classes and a
  HyperLoRA checkpoint, a ControlNet and a style LoRA for them (`write_tiny_checkpoint`,
  `write_tiny_controlnet`, `write_tiny_style_lora`); imported on first use, as it needs
  ComfyUI importable.
"""

from ..face.packs import is_standin_pack
from .face_models import write_tiny_face_pack
from .hyperlora import hyperlora_config, random_hyperlora, sdxl_modules, small_config
from .photos import face_photo, no_face_photo, pose_picture

_MODELS = ("TINY_VISION_WIDTH", "build_tiny_clip", "build_tiny_clip_vision", "build_tiny_sdxl", "build_tiny_vae",
           "tiny_hyperlora_config", "tiny_module_specs", "tiny_unet_config", "write_tiny_checkpoint",
           "write_tiny_controlnet", "write_tiny_style_lora")
__all__ = ["face_photo", "hyperlora_config", "is_standin_pack", "no_face_photo", "pose_picture", "random_hyperlora",
           "sdxl_modules", "small_config", "write_tiny_face_pack", *_MODELS]


def __getattr__(name: str):
    if name in _MODELS:
        from . import models

        return getattr(models, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
