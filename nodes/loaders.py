"""Loader nodes: the hypernetwork checkpoint (face analysis and CLIP vision: see encoders)."""

from __future__ import annotations

import torch

from hyperlora_core.model import HyperLoRA

from . import host, types
from .spec import In, NodeDef, Out

DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}


def load_checkpoint(path, dtype_name: str, dim_head: int | None = None) -> HyperLoRA:
    """Load either checkpoint format; 'auto' keeps the stored precision (the core computes in fp32
    on the CPU chunk by chunk, so a half-precision basis stays half the memory)."""
    dtype = None if dtype_name == "auto" else DTYPES[dtype_name]
    return HyperLoRA.from_pretrained(path, device="cpu", dtype=dtype, dim_head=dim_head)


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

NODES = [LOADER]
