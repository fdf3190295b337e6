"""Save node: a generated LoRA as a kohya `.safetensors` file under ComfyUI's output folder."""

from __future__ import annotations

from hyperlora_core.comfy_bridge.bases import lora_profile
from hyperlora_core.errors import HyperLoRAError
from hyperlora_core.lora import lora_file
from hyperlora_core.safetensors_io import save_tensors_first_free

from . import host, types
from .loaders import DTYPES
from .spec import In, NodeDef, Result


def save_to_output(lora, filename_prefix: str, dtype: str = "fp16", notes: str = "", prompt: dict | None = None) -> dict:
    """Write a new file (never overwriting, the name claimed atomically) and return ComfyUI's UI entry.
    `filename_prefix` is formatted as ComfyUI's Save Image's is (`host.format_filename_prefix`)."""
    filename_prefix = host.format_filename_prefix(filename_prefix, prompt)
    profile = lora_profile(lora)
    metadata = {"hyperlora.generator": "comfyui-hyperlora", "hyperlora.recommended_strength": str(profile.strength)}
    if notes:
        metadata["hyperlora.notes"] = notes
    tensors, meta = lora_file(lora, DTYPES[dtype], metadata, trigger_words=profile.trigger_words,
                              base_metadata=profile.kohya_metadata())
    path = save_tensors_first_free(tensors, host.output_candidates(filename_prefix), meta)
    if path is None:
        raise HyperLoRAError(f"filename_prefix '{filename_prefix}': {host.NUMBERS_TRIED} numbered names are taken; "
                             "use another name.")
    host.log.info("HyperLoRA: saved LoRA to %s", path)
    subfolder, filename = host.output_relative(path)
    return {"filename": filename, "subfolder": subfolder, "type": "output"}


def _save(lora, filename_prefix: str, dtype: str, notes: str = "", prompt: dict | None = None):
    entry = save_to_output(lora, filename_prefix, dtype, notes or "", prompt)
    return Result(values=(), ui={"loras": [entry], "text": [f"{entry['subfolder']}/{entry['filename']}".lstrip("/")]})


def _check_prefix(filename_prefix: str):
    return host.check_filename_prefix(filename_prefix) or True


SAVE = NodeDef(
    node_id="HyperLoRASave",
    display_name="HyperLoRA Save LoRA",
    description=(
        "Saves the LoRA as a kohya .safetensors under ComfyUI's output folder (sub-folders allowed, never "
        "outside it, never overwriting: a number is added). Load it later with any LoRA loader."
    ),
    inputs=(
        In("lora", types.LORA, tooltip="The LoRA to save."),
        In("filename_prefix", "STRING", default="hyperlora/id_lora",
           tooltip="File name inside ComfyUI's output folder; sub-folders with '/'. A number is added. As in Save "
                   "Image: %date:yyyy-MM-dd%, %NodeName.widget% (a node's type or title), %year%, %month%, %day%."),
        In("dtype", "COMBO", options=list(DTYPES), default="fp16", tooltip="Precision of the saved weights (fp16: half the size)."),
        In("notes", "STRING", default="", multiline=True, optional=True,
           tooltip="Stored in the file's metadata (e.g. who, which photos)."),
    ),
    outputs=(),
    run=_save,
    validate=_check_prefix,
    output_node=True,
    wants_prompt=True,
)

NODES = [SAVE]

ORDER = 60  # place in the node listing (registry.declaring_modules)
