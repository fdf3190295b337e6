"""Encode nodes: photos -> the conditions of one person (thin wrappers over hyperlora_core.encode)."""

from __future__ import annotations

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


def parse_weights(text: str | None) -> list[float] | None:
    """'2, 1, 1' -> [2.0, 1.0, 1.0]; empty -> None (equal weights)."""
    if text is None or not str(text).strip():
        return None
    try:
        return [float(v) for v in str(text).replace(";", ",").split(",") if v.strip()]
    except ValueError:
        raise HyperLoRAError(f"weights '{text}' are not comma-separated numbers; write e.g. '2, 1, 1' or leave empty.") from None


def check_widgets(weights: str = "", crop_scale_LRTB: str | None = None):  # noqa: N803 - the published widget name
    """The encode nodes' one validator: True, or the message ComfyUI shows before running."""
    try:
        parse_weights(weights)
        if crop_scale_LRTB is not None:
            check_crop_scales(crop_scale_LRTB)
    except HyperLoRAError as err:
        return str(err)
    return True


def _face_index(value: int | None) -> int | None:
    return None if value is None or int(value) < 0 else int(value)


def encode_photos(encode, photos, face_analysis, clip_vision, weights: str | None = None, face_index: int | None = -1,
                  **options):
    """The encode step of every node that encodes photos (`encode` = `encode_id` or `encode_base`):
    ComfyUI's CLIP_VISION wrapped for the core, widgets parsed, the node's progress bar fed.
    Returns (condition, the crops CLIP saw)."""
    cond = encode(photos, face_analysis, ComfyClipEncoder(clip_vision), weights=parse_weights(weights),
                  face_index=_face_index(face_index), progress=host.Progress(), **options)
    return cond, cond.preview


PHOTO_INPUTS = (
    In("photos", "IMAGE", tooltip=PHOTOS_TIP),
    In("face_analysis", types.FACE_ANALYSIS, tooltip="From HyperLoRA Face Analysis Loader (antelopev2)."),
    In("clip_vision", "CLIP_VISION", tooltip="CLIP ViT-L/14, from a CLIP vision loader."),
    In("weights", "STRING", default="", tooltip=WEIGHTS_TIP),
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
    validate=check_widgets,
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
        In("crop_scale_LRTB", "STRING", default="1,1,1,1", tooltip="Crop extent around the face: left,right,top,bottom."),
        In("clamp_to_image", "BOOLEAN", default=True, tooltip="Keep the crop inside the photo (published default)."),
        *FACE_CHOICE,
    ),
    outputs=(Out(types.BASE_COND, "base_cond"), Out("IMAGE", "crops")),
    run=_encode_base,
    validate=check_widgets,
)

NODES = [ENCODE_ID, ENCODE_BASE]

ORDER = 20  # place in the node listing (registry.declaring_modules)
