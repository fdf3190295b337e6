"""One-click node: model + photos + strength -> patched model and the LoRA.

It loads the checkpoint, face models and CLIP vision by name (kept loaded between runs while the
files are unchanged) and runs encode -> generate -> apply, so a first graph needs one node.
"""

from __future__ import annotations

from hyperlora_core.comfy_bridge import apply_lora, folders
from hyperlora_core.comfy_bridge.clip_vision import load_clip_vision
from hyperlora_core.encode import encode_id
from hyperlora_core.face.packs import pack_name

from . import host, types
from .cache import cached
from .encode import encode_photos
from .generate import make_id_lora
from .loaders import (
    CHECKPOINT_TIP,
    CLIP_TIP,
    DEFAULT_FACE_CHOICE,
    FACE_PACK_TIP,
    clip_choices,
    clip_problem,
    face_pack_folder,
    face_pack_problem,
    face_packs,
    load_checkpoint,
)
from .spec import In, NodeDef, Out


def _one_click(model, photos, strength: float, checkpoint: str, clip_vision: str, face_pack: str):
    hyper_lora = cached("hyperlora", host.resolve_checkpoint(checkpoint), lambda p: load_checkpoint(p, "auto"))
    clip = cached("clip_vision", folders.resolve_clip_vision(clip_vision), load_clip_vision)
    faces = folders.load_face_analyzer(pack_name(face_pack), "auto")
    cond, crops = encode_photos(encode_id, photos, faces, clip)
    lora = make_id_lora(hyper_lora, cond)
    return apply_lora(model, lora, strength), lora, crops


ONE_CLICK = NodeDef(
    node_id="HyperLoRAOneClick",
    display_name="HyperLoRA One-Click",
    description=(
        "Photos of one person -> ID-LoRA applied to the model, in one node (published preprocessing, equal photo "
        "weights, largest face). For weights, several people or sliders use the separate nodes."
    ),
    inputs=(
        In("model", "MODEL", tooltip="The model to personalise, of the base the HyperLoRA checkpoint was trained for "
                                      "(the published checkpoints: SDXL; another base is refused with a message)."),
        In("photos", "IMAGE", tooltip="Photos of one person (a batch); each counts the same."),
        In("strength", "FLOAT", default=0.85, min=-2.0, max=2.0, step=0.01,
           tooltip="How strongly the LoRA acts; 0.75-0.9 for the published checkpoints."),
        In("checkpoint", "COMBO", options=host.list_checkpoints, check=host.checkpoint_problem,
           identity=host.checkpoint_files, tooltip=CHECKPOINT_TIP),
        In("clip_vision", "COMBO", options=clip_choices, check=clip_problem, identity=folders.resolve_clip_vision,
           tooltip=CLIP_TIP),
        In("face_pack", "COMBO", options=face_packs, default=DEFAULT_FACE_CHOICE, check=face_pack_problem,
           identity=face_pack_folder, tooltip=FACE_PACK_TIP),
    ),
    outputs=(Out("MODEL", "model"), Out(types.LORA, "lora"), Out("IMAGE", "face_crops")),
    run=_one_click,
)

NODES = [ONE_CLICK]

ORDER = 70  # place in the node listing (registry.declaring_modules)
