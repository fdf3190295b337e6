"""Loader nodes: the hypernetwork checkpoint, the face-analysis models, CLIP vision."""

from __future__ import annotations

import torch

from hyperlora_core.comfy_bridge import folders
from hyperlora_core.comfy_bridge.clip_vision import load_clip_vision
from hyperlora_core.comfy_bridge.model_management import hyperlora_patcher
from hyperlora_core.face.analyzer import PROVIDER_CHOICES
from hyperlora_core.model import HyperLoRA

from . import host, types
from .spec import In, NodeDef, Out

DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}


def load_checkpoint(path, dtype_name: str, dim_head: int | None = None):
    """Either checkpoint format, as a ModelPatcher ComfyUI can load to the GPU and offload.

    'auto' keeps the stored precision (on the CPU the core computes in fp32 chunk by chunk, so a
    half-precision basis stays half the memory)."""
    dtype = None if dtype_name == "auto" else DTYPES[dtype_name]
    return hyperlora_patcher(HyperLoRA.from_pretrained(path, device="cpu", dtype=dtype, dim_head=dim_head))


def _load(checkpoint: str, dtype: str):
    return (load_checkpoint(host.resolve_checkpoint(checkpoint), dtype),)


LOADER = NodeDef(
    node_id="HyperLoRACheckpointLoader",
    display_name="HyperLoRA Loader",
    description=(
        "Loads a HyperLoRA checkpoint from models/hyper_lora: a published folder (hyper_lora_modules.json "
        "+ .safetensors parts, any sub-folder) or one of our single .safetensors files. The architecture "
        "is read from the weights."
    ),
    inputs=(
        In("checkpoint", "COMBO", options=host.list_checkpoints, tooltip="Folder or file under models/hyper_lora."),
        In("dtype", "COMBO", options=["auto", "fp16", "bf16", "fp32"], default="auto",
           tooltip="Storage precision of the LoRA basis. auto: as stored in the file."),
    ),
    outputs=(Out(types.HYPERLORA, "hyper_lora"),),
    run=_load,
)


def face_packs() -> list[str]:
    return folders.face_pack_names() or [host.NOT_FOUND]


def _load_faces(pack: str, provider: str):
    if pack == host.NOT_FOUND:
        folders.load_face_analyzer("antelopev2", provider)  # raises with where to put the pack
    return (folders.load_face_analyzer(pack, provider),)


FACE_LOADER = NodeDef(
    node_id="HyperLoRAFaceAnalysisLoader",
    display_name="HyperLoRA Face Analysis Loader",
    description=(
        "Loads an insightface model pack from models/insightface/models/<pack> (detector, 106 landmarks, "
        "ArcFace). The published checkpoints need antelopev2: another pack embeds faces differently."
    ),
    inputs=(
        In("pack", "COMBO", options=face_packs, default="antelopev2"),
        In("provider", "COMBO", options=list(PROVIDER_CHOICES), default="auto",
           tooltip="auto: CUDA when onnxruntime-gpu works, else CPU."),
    ),
    outputs=(Out(types.FACE_ANALYSIS, "face_analysis"),),
    run=_load_faces,
)


def clip_choices() -> list[str]:
    return folders.clip_vision_choices() or [host.NOT_FOUND]


def _load_clip(clip_vision: str, dtype: str):
    path = folders.resolve_clip_vision(clip_vision)
    return (load_clip_vision(path, None if dtype == "auto" else DTYPES[dtype]),)


CLIP_LOADER = NodeDef(
    node_id="HyperLoRACLIPVisionLoader",
    display_name="HyperLoRA CLIP Vision Loader",
    description=(
        "CLIP ViT-L/14 from models/clip_vision (a .safetensors file) or the published HF folder "
        "(models/hyper_lora/clip_vit/<name> with config.json + model.safetensors). Same output as ComfyUI's "
        "Load CLIP Vision."
    ),
    inputs=(
        In("clip_vision", "COMBO", options=clip_choices),
        In("dtype", "COMBO", options=["auto", "fp16", "bf16", "fp32"], default="auto",
           tooltip="auto: ComfyUI's choice for vision encoders."),
    ),
    outputs=(Out("CLIP_VISION", "clip_vision"),),
    run=_load_clip,
)

NODES = [LOADER, FACE_LOADER, CLIP_LOADER]
