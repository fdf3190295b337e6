"""CLIP vision through ComfyUI's own loader and model management.

- `load_clip_vision(path, dtype=None)`: a `.safetensors` file (e.g. from models/clip_vision) or the
  published HF-format folder (`config.json` + `model.safetensors`, OpenAI clip-vit-large-patch14)
  -> ComfyUI's `ClipVisionModel` (its `.patcher` is a ModelPatcher, so ComfyUI can offload it).
  ComfyUI stores CLIP vision weights in fp16 by default, even on the CPU; `dtype=torch.float32`
  (or fp16 / bf16) selects the storage by setting ComfyUI's own `--fp32-text-enc` style flag only
  for the duration of the load (the flags are read once, when the model is built).
- `ComfyClipEncoder(clip_vision)`: the `ClipEncoder` for `hyperlora_core.encode`. It receives
  pixels that our PIL preprocessing already resized to the model's size, so ComfyUI's
  `clip_preprocess` only rescales and normalises them (no second resampling), and returns the
  penultimate-layer tokens (`penultimate_hidden_states`, HF `hidden_states[-2]`), `[N, 257, 1024]`
  for ViT-L/14. Nodes wrap the CLIP_VISION they receive in it before calling `encode_id` /
  `encode_base` (the core never imports this module).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import comfy.cli_args
import comfy.clip_vision
import numpy as np
import torch

from ..errors import HyperLoRAError
from ..safetensors_io import read_shapes

__all__ = ["ComfyClipEncoder", "load_clip_vision", "resolve_clip_file"]

_DTYPE_FLAGS = ("fp8_e4m3fn_text_enc", "fp8_e5m2_text_enc", "fp16_text_enc", "fp32_text_enc", "bf16_text_enc")
_FLAG_FOR = {torch.float32: "fp32_text_enc", torch.float16: "fp16_text_enc", torch.bfloat16: "bf16_text_enc"}
BATCH = 8
"""Photos per CLIP forward pass (bounds activation memory for many reference photos)."""


@contextlib.contextmanager
def _text_encoder_dtype(dtype: torch.dtype | None) -> Iterator[None]:
    """Temporarily select ComfyUI's text/vision-encoder storage dtype (restored afterwards)."""
    if dtype is None:
        yield
        return
    if dtype not in _FLAG_FOR:
        raise HyperLoRAError(f"CLIP vision dtype {dtype} is not supported; use float32, float16 or bfloat16.")
    args = comfy.cli_args.args
    saved = {name: getattr(args, name, False) for name in _DTYPE_FLAGS}
    try:
        for name in _DTYPE_FLAGS:
            setattr(args, name, False)
        setattr(args, _FLAG_FOR[dtype], True)
        yield
    finally:
        for name, value in saved.items():
            setattr(args, name, value)


def resolve_clip_file(path: str | os.PathLike) -> Path:
    """A CLIP vision weights file from a file path or an HF-format folder, checked."""
    p = Path(path)
    if p.is_dir():
        candidate = p / "model.safetensors"
        if not candidate.is_file():
            found = sorted(x.name for x in p.iterdir())[:10]
            hint = ""
            if any(n.endswith((".bin", ".pt", ".pth")) for n in found):
                hint = " Pickle files (.bin/.pt) are not loaded for safety; use the repository's model.safetensors."
            raise HyperLoRAError(
                f"CLIP vision folder {p} has no model.safetensors (found: {', '.join(found) or 'nothing'}).{hint} "
                "Download config.json and model.safetensors of openai/clip-vit-large-patch14 into it."
            )
        p = candidate
    if not p.is_file():
        raise HyperLoRAError(
            f"CLIP vision model {p} not found. Put a CLIP ViT-L/14 .safetensors file in ComfyUI/models/clip_vision/ "
            "or the HF folder (config.json + model.safetensors) in ComfyUI/models/hyper_lora/clip_vit/."
        )
    if p.suffix.lower() not in (".safetensors", ".sft"):
        raise HyperLoRAError(
            f"{p.name}: only .safetensors CLIP vision files are loaded (pickle formats can run code); "
            "use the .safetensors version of this model."
        )
    read_shapes(p)  # readable header, not an LFS pointer or a truncated download
    return p


def load_clip_vision(path: str | os.PathLike, dtype: torch.dtype | None = None) -> Any:
    """Load CLIP vision weights with ComfyUI's loader (`comfy.clip_vision.load`)."""
    file = resolve_clip_file(path)
    with _text_encoder_dtype(dtype):
        model = comfy.clip_vision.load(str(file))
    if model is None:
        raise HyperLoRAError(
            f"{file.name} is not a CLIP vision model ComfyUI recognises (no vision_model.encoder.layers.* or "
            "visual.transformer.* keys of a ViT-L/H/bigG). HyperLoRA needs CLIP ViT-L/14 (openai/clip-vit-large-patch14)."
        )
    return model


class ComfyClipEncoder:
    """`ClipEncoder` over ComfyUI's `ClipVisionModel` (see the module docstring)."""

    def __init__(self, clip_vision: Any, batch_size: int = BATCH) -> None:
        if not hasattr(clip_vision, "encode_image"):
            raise HyperLoRAError(f"expected ComfyUI's CLIP_VISION, got {type(clip_vision).__name__}.")
        self.clip_vision = clip_vision
        self.image_size = int(getattr(clip_vision, "image_size", 224))
        self.batch_size = max(1, int(batch_size))

    @torch.no_grad()
    def __call__(self, pixels: np.ndarray) -> torch.Tensor:
        """Called outside ComfyUI's executor (which runs nodes in inference mode) too: from scripts, the
        trainer or the API. ComfyUI's CLIP vision weights require grad, and a forward with grad on kept
        every activation of every call alive on the GPU (6 GB after one ViT-L/14 encode on an H200)."""
        arr = np.asarray(pixels)
        if arr.ndim != 4 or arr.shape[1:] != (self.image_size, self.image_size, 3) or arr.dtype != np.uint8:
            raise HyperLoRAError(
                f"CLIP input must be uint8 [N, {self.image_size}, {self.image_size}, 3]; got {arr.dtype} {list(arr.shape)}."
            )
        outs = []
        for start in range(0, arr.shape[0], self.batch_size):
            chunk = torch.from_numpy(arr[start : start + self.batch_size]).float().div(255.0)
            out = self.clip_vision.encode_image(chunk, crop=True)
            outs.append(out["penultimate_hidden_states"].detach().float().cpu())
        return torch.cat(outs)
