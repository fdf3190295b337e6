"""Encode nodes: photos -> the conditions of one person (thin wrappers over hyperlora_core.encode)."""

from __future__ import annotations

import torch

from hyperlora_core.comfy_bridge.clip_vision import ComfyClipEncoder
from hyperlora_core.encode import encode_base, encode_id
from hyperlora_core.errors import HyperLoRAError
from hyperlora_core.face.crops import check_crop_scales

from . import host, types
from .spec import In, NodeDef, Out

WEIGHTS_TIP = "One weight per photo, comma-separated (e.g. '2, 1, 1'); empty: all photos count the same."
PHOTOS_TIP = "Photos of one person: an IMAGE batch (join several with Image Batch)."
FACE_TIP = "-1: the largest face in each photo; 0, 1, 2...: the n-th face from the left."
NO_FACE_TIP = "error: stop and name the photo without a face. skip: leave it out (at least one must have a face)."


WEIGHT_MAX = 1_000_000.0
"""Weights are relative ('2, 1, 1': the first photo counts twice); the bound keeps their sum a float32 number."""


def parse_weights(text: str | None) -> list[float] | None:
    """'2, 1, 1' -> [2.0, 1.0, 1.0]; empty -> None (equal weights). What no photo count makes right (not a
    number, negative, too large, all zero) is refused here, so at queue time, naming the widget and echoing
    the text as typed."""
    if text is None or not str(text).strip():
        return None
    given = str(text)
    values = []
    for item in (v.strip() for v in given.replace(";", ",").split(",")):
        if not item:
            continue
        what = f"weights '{given}'" + (f": '{item}'" if item != given.strip() else "")
        try:
            value = float(item)
        except ValueError:
            raise HyperLoRAError(f"{what} is not a number; write one number per photo, e.g. "
                                 "'2, 1, 1', or leave it empty for equal weights.") from None
        if not 0.0 <= value <= WEIGHT_MAX:  # NaN fails too
            raise HyperLoRAError(f"{what} is not a weight from 0 to {WEIGHT_MAX:,.0f}; weights "
                                 "are relative, e.g. '2, 1, 1' (the first photo counts twice).")
        values.append(value)
    if not float(torch.tensor(values, dtype=torch.float32).sum()) > 0:
        raise HyperLoRAError(f"weights '{given}' are all zero; give at least one photo a positive weight, e.g. '1'.")
    return values


def _count(n: int, what: str) -> str:
    return f"{n} {what}{'' if n == 1 else 's'}"


def weights_for(text: str | None, photos) -> list[float] | None:
    """`parse_weights`, and one weight per photo of the batch (known only when the node runs)."""
    values = parse_weights(text)
    if values is None:
        return None
    count = photos.shape[0] if hasattr(photos, "shape") else len(photos)
    if len(values) != count:
        example = ", ".join(["1"] * count) if count <= 8 else f"{count} numbers separated by commas"
        raise HyperLoRAError(f"weights '{text}' give {_count(len(values), 'weight')} but the batch has "
                             f"{_count(count, 'photo')}; give one weight per photo, e.g. '{example}', or leave it empty.")
    return values


def weights_problem(text: str | None) -> str | None:
    """The queue-time check of a `weights` widget."""
    try:
        parse_weights(text)
    except HyperLoRAError as err:
        return str(err)
    return None


def crop_scales_problem(text: str | None) -> str | None:
    """The queue-time check of Encode Base's `crop_scale_LRTB` widget."""
    try:
        check_crop_scales(text or "")
    except HyperLoRAError as err:
        return f"crop_scale_LRTB: {err}"
    return None


def _face_index(value: int | None) -> int | None:
    return None if value is None or int(value) < 0 else int(value)


def encode_photos(encode, photos, face_analysis, clip_vision, weights: str | None = None, face_index: int | None = -1,
                  **options):
    """The encode step of every node that encodes photos (`encode` = `encode_id` or `encode_base`):
    ComfyUI's CLIP_VISION wrapped for the core, widgets parsed, the node's progress bar fed.
    Returns (condition, the crops CLIP saw)."""
    cond = encode(photos, face_analysis, ComfyClipEncoder(clip_vision), weights=weights_for(weights, photos),
                  face_index=_face_index(face_index), progress=host.Progress(), **options)
    return cond, cond.preview


PHOTO_INPUTS = (
    In("photos", "IMAGE", tooltip=PHOTOS_TIP),
    In("face_analysis", types.FACE_ANALYSIS, tooltip="From HyperLoRA Face Analysis Loader (antelopev2)."),
    In("clip_vision", "CLIP_VISION", tooltip="CLIP ViT-L/14, from a CLIP vision loader."),
    In("weights", "STRING", default="", tooltip=WEIGHTS_TIP, check=weights_problem),
)
"""The first inputs of both encode nodes: the photos, the models that read them, their weights."""
FACE_CHOICE = (
    In("face_index", "INT", default=-1, min=-1, max=63, step=1, tooltip=FACE_TIP),
    In("on_no_face", "COMBO", options=["error", "skip"], default="error", tooltip=NO_FACE_TIP),
)
"""The last inputs of both encode nodes: which face, and what to do without one."""


def _encode_id(photos, face_analysis, clip_vision, weights: str, remove_background: bool, grayscale: bool,
               face_index: int, on_no_face: str):
    return encode_photos(encode_id, photos, face_analysis, clip_vision, weights, face_index,
                         remove_background=remove_background, grayscale=grayscale, on_no_face=on_no_face)


ENCODE_ID = NodeDef(
    node_id="HyperLoRAEncodeID",
    display_name="HyperLoRA Encode ID",
    description=(
        "Finds the face in each photo (a batch of one person), makes the published crops and encodes them "
        "with CLIP and ArcFace. Outputs the ID condition and a preview of the crops CLIP saw."
    ),
    inputs=(
        *PHOTO_INPUTS,
        In("remove_background", "BOOLEAN", default=True, tooltip="Gray background around the face (published default)."),
        In("grayscale", "BOOLEAN", default=False, tooltip="Encode the crops in grayscale (reduces color cast)."),
        *FACE_CHOICE,
    ),
    outputs=(Out(types.ID_COND, "id_cond"), Out("IMAGE", "face_crops")),
    run=_encode_id,
)


def _encode_base(photos, face_analysis, clip_vision, weights: str, crop_scale_LRTB: str,  # noqa: N803
                 clamp_to_image: bool, face_index: int, on_no_face: str):
    return encode_photos(encode_base, photos, face_analysis, clip_vision, weights, face_index,
                         crop_scales=crop_scale_LRTB, clamp_to_image=clamp_to_image, on_no_face=on_no_face)


ENCODE_BASE = NodeDef(
    node_id="HyperLoRAEncodeBase",
    display_name="HyperLoRA Encode Base",
    description=(
        "Base-LoRA condition: the photos with the face blurred out (background, clothing, lighting), cropped "
        "around the face by the left,right,top,bottom scales, encoded with CLIP."
    ),
    inputs=(
        *PHOTO_INPUTS,
        In("crop_scale_LRTB", "STRING", default="1,1,1,1", tooltip="Crop extent around the face: left,right,top,bottom.",
           check=crop_scales_problem),
        In("clamp_to_image", "BOOLEAN", default=True, tooltip="Keep the crop inside the photo (published default)."),
        *FACE_CHOICE,
    ),
    outputs=(Out(types.BASE_COND, "base_cond"), Out("IMAGE", "crops")),
    run=_encode_base,
)

NODES = [ENCODE_ID, ENCODE_BASE]

ORDER = 20  # place in the node listing (registry.declaring_modules)
