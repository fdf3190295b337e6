"""Loader nodes: the hypernetwork checkpoint, the face-analysis models, CLIP vision."""

from __future__ import annotations

import torch

from hyperlora_core.comfy_bridge import folders
from hyperlora_core.comfy_bridge.clip_vision import load_clip_vision
from hyperlora_core.comfy_bridge.model_management import hyperlora_patcher
from hyperlora_core.errors import DamagedFileError, HyperLoRAError
from hyperlora_core.face.analyzer import PROVIDER_CHOICES
from hyperlora_core.face.packs import DEFAULT_PACK, KNOWN_FILES, is_standin_pack, pack_name
from hyperlora_core.model import HyperLoRA
from hyperlora_core.models.check import check_file, item_for
from hyperlora_core.models.files import file_problem

from . import host, types
from .spec import In, NodeDef, Out

DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}
DEFAULT_FACE_CHOICE = f"{DEFAULT_PACK}/{KNOWN_FILES[DEFAULT_PACK]['recognition']}"


def load_checkpoint(path, dtype_name: str, dim_head: int | None = None):
    """Either checkpoint format, as a ModelPatcher ComfyUI can load to the GPU and offload.

    'auto' keeps the stored precision (on the CPU the core computes in fp32 chunk by chunk, so a
    half-precision basis stays half the memory)."""
    dtype = None if dtype_name == "auto" else DTYPES[dtype_name]
    return hyperlora_patcher(HyperLoRA.from_pretrained(path, device="cpu", dtype=dtype, dim_head=dim_head))


CHECKPOINT_TIP = ("A checkpoint in models/hyper_lora: a published folder, named by its hyper_lora_modules.safetensors, "
                  "or one of our single .safetensors files.")


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
        In("checkpoint", "COMBO", options=host.list_checkpoints, check=host.checkpoint_problem,
           identity=host.checkpoint_files, tooltip=CHECKPOINT_TIP),
        In("dtype", "COMBO", options=["auto", "fp16", "bf16", "fp32"], default="auto",
           tooltip="Storage precision of the LoRA basis. auto: as stored in the file."),
    ),
    outputs=(Out(types.HYPERLORA, "hyper_lora"),),
    run=_load,
)


def face_packs() -> list[str]:
    return folders.face_pack_choices() or [host.NOT_FOUND]


def face_pack_problem(value: str) -> str | None:
    """Why a face-pack value cannot be loaded (checked when the prompt is queued), or None.

    `(none found)` is what the list shows while no pack is installed: it names the default pack's
    download while that is missing, and the packs there are once one is installed."""
    roots = folders.model_roots()
    if value == host.NOT_FOUND:
        installed = folders.face_pack_choices()
        if not installed:
            return host.missing_model(folders.INSIGHTFACE, DEFAULT_FACE_CHOICE, "Face model pack")
        return (f"'{value}' is not a face model pack (the list shows it while models/insightface/models has "
                f"none); pick one that is there now: {', '.join(installed)} (press 'r' to refresh the list).")
    known = item_for(folders.INSIGHTFACE, value)
    try:
        folder = folders.find_face_pack(pack_name(value))
    except DamagedFileError as err:  # there, but the server may not open its folder
        return str(err)
    except HyperLoRAError as err:
        return host.missing_model(folders.INSIGHTFACE, value, "Face model pack") if known else str(err)
    if known and not is_standin_pack(folder) and not all(check_file(known, f, roots).ok for f in known.files):
        return host.missing_model(folders.INSIGHTFACE, value, "Face model pack")
    return None


def face_pack_folder(value: str):
    """The folder a face-pack value loads from (its files' identity keys the node's cache)."""
    return folders.find_face_pack(pack_name(value))


def _load_faces(pack: str, provider: str):
    return (folders.load_face_analyzer(pack_name(pack), provider),)


FACE_PACK_TIP = ("A face model pack in models/insightface/models/, named by its ArcFace recognition model. The published "
                 "checkpoints need antelopev2 (glintr100.onnx): another pack embeds faces differently.")


FACE_LOADER = NodeDef(
    node_id="HyperLoRAFaceAnalysisLoader",
    display_name="HyperLoRA Face Analysis Loader",
    description=(
        "Loads an insightface model pack from models/insightface/models/<pack> (detector, 106 landmarks, "
        "ArcFace). The published checkpoints need antelopev2: another pack embeds faces differently."
    ),
    inputs=(
        In("pack", "COMBO", options=face_packs, default=DEFAULT_FACE_CHOICE, check=face_pack_problem,
           identity=face_pack_folder, tooltip=FACE_PACK_TIP),
        In("provider", "COMBO", options=list(PROVIDER_CHOICES), default="auto",
           tooltip="auto: CUDA when onnxruntime-gpu works, else CPU."),
    ),
    outputs=(Out(types.FACE_ANALYSIS, "face_analysis"),),
    run=_load_faces,
)


CLIP_TIP = "CLIP ViT-L/14: a .safetensors file in models/clip_vision, or an HF folder in models/hyper_lora/clip_vit."


def clip_choices() -> list[str]:
    return folders.clip_vision_choices() or [host.NOT_FOUND]


def clip_problem(value: str) -> str | None:
    """Why a CLIP vision value cannot be loaded (checked when the prompt is queued), or None."""
    try:
        path = folders.resolve_clip_vision(value)
    except HyperLoRAError:
        return host.missing_model(folders.CLIP_VISION, value, "CLIP vision model")
    problem = file_problem(path / "model.safetensors" if path.is_dir() else path)
    if problem is None:
        return None
    if item_for(folders.CLIP_VISION, value) is not None:  # a model we know how to get: say how, first
        return host.missing_model(folders.CLIP_VISION, value, "CLIP vision model")
    return str(problem)


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
        In("clip_vision", "COMBO", options=clip_choices, check=clip_problem, identity=folders.resolve_clip_vision,
           tooltip=CLIP_TIP),
        In("dtype", "COMBO", options=["auto", "fp16", "bf16", "fp32"], default="auto",
           tooltip="auto: ComfyUI's choice for vision encoders."),
    ),
    outputs=(Out("CLIP_VISION", "clip_vision"),),
    run=_load_clip,
)

NODES = [LOADER, FACE_LOADER, CLIP_LOADER]

ORDER = 10  # place in the node listing (registry.declaring_modules)
