"""The published ComfyUI-HyperLoRA pack's eleven node names, inputs and widget order, on our core,
so workflows shared for that pack load and run. Registered only when that pack is not installed.

Differences (documented, not silent): the architecture widgets of `HyperLoRAConfig` are checked
against the weights (which decide), except `resampler.dim_head`, which shapes cannot tell and is
used; faces are the largest in each photo instead of the first detected; photos without a face
are skipped with a warning (as published) but a batch without any face is an error.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

from hyperlora_core.comfy_bridge import apply_lora, folders
from hyperlora_core.comfy_bridge.clip_vision import load_clip_vision
from hyperlora_core.comfy_bridge.model_management import unwrap
from hyperlora_core.encode import analyze_photo, encode_base, encode_id
from hyperlora_core.errors import HyperLoRAError
from hyperlora_core.face.images import photo_list
from hyperlora_core.walk import list_dir

from . import host, types
from .cache import cached
from .encode import encode_photos
from .generate import generate_base_lora, make_id_lora
from .loaders import DTYPES, load_checkpoint
from .save import save_to_output
from .spec import CATEGORY, In, NodeDef, Out, Result

PUBLISHED_MARKER = "HYPER_LORA_CLASS_MAPPINGS"
ENCODER_TYPES = ["clip", "arcface", "clip + arcface"]
PROCESSOR_TIP = "CLIP preprocessing folder in models/hyper_lora/clip_processor (the preprocessing itself is built in)."
ENCODER_TIP = "CLIP ViT-L/14 HF folder in models/hyper_lora/clip_vit."
ENCODER_TYPES_TIP = "Which encoders the checkpoint reads; only 'clip + arcface' (the released setting) works."
FACE_ANALYZER_TIP = "Face model pack in models/insightface/models (antelopev2 for the published checkpoints)."
MODEL_TIP = "Checkpoint folder in models/hyper_lora/hyper_lora (the published pack's place)."
DTYPE_TIP = "Precision of the LoRA basis."
HYPER_TIP = "From HyperLoRA Loader (published)."
IMAGES_TIP = "Photos of one person (an IMAGE batch)."
FACE_ATTR_TIP = "From HyperLoRA Face Attr."
GRAYSCALE_TIP = "Encode the crops in grayscale."
BACKGROUND_TIP = "Gray background around the face (published default)."


def published_pack_installed() -> bool:
    """True if a custom-node folder (not disabled, not this pack) holds the published pack."""
    own = Path(__file__).resolve().parents[1]
    for root in host.custom_node_dirs():
        if not root.is_dir():
            continue
        for pack in root.iterdir():
            if pack.name.endswith(".disabled") or not pack.is_dir() or pack.resolve() == own:
                continue
            nodes_py = pack / "hyperlora" / "nodes.py"
            try:
                if nodes_py.is_file() and PUBLISHED_MARKER in nodes_py.read_text(encoding="utf-8", errors="ignore"):
                    return True
            except OSError:
                continue
    return False


# -- where the published pack keeps its models ---------------------------------------------------
def _published(sub: str) -> list[Path]:
    return [root / sub for root in host.hyper_lora_roots()]


def _folders_in(sub: str) -> list[str]:
    names = sorted({e.name for base in _published(sub) for e in list_dir(base) if os.path.isdir(e.path)})
    return names or [host.NOT_FOUND]


def _face_pack_folders() -> list[str]:
    return folders.face_pack_names() or [host.NOT_FOUND]


@dataclass(frozen=True)
class CompatConfig:
    """What the published HyperLoRAConfig node carries that our loader can use."""

    image_encoder: str
    face_analyzer: str
    encoder_types: str
    dim_head: int
    declared: dict


@dataclass
class CompatHyperLoRA:
    """The published pack's HYPER_LORA value: hypernetwork + CLIP vision + face models."""

    patcher: object
    clip_vision: object
    face_analysis: object


def _config(**kw) -> tuple:
    if kw["encoder_types"] != "clip + arcface":
        raise HyperLoRAError(
            f"encoder_types '{kw['encoder_types']}' is not supported: the released checkpoints use 'clip + arcface' "
            "(the authors' code for the single-encoder settings does not work either). Choose 'clip + arcface'."
        )
    declared = {k: kw[k] for k in ("resampler.dim", "resampler.heads", "resampler.depth", "resampler.ff_mult",
                                   "id_embed_dim", "num_id_tokens", "hyper_dim", "lora_rank", "has_base_lora")}
    return (CompatConfig(kw["image_encoder"], kw["face_analyzer"], kw["encoder_types"], int(kw["resampler.dim_head"]),
                         declared),)


ARCH_TIP = "Checked against the weights, which decide (the published pack needed it set by hand)."


def _int(name, default, lo, hi, step, tooltip=ARCH_TIP):
    return In(name, "INT", default=default, min=lo, max=hi, step=step, tooltip=tooltip)


CONFIG = NodeDef(
    node_id="HyperLoRAConfig",
    display_name="HyperLoRA Config",
    description="Compatibility node (published pack). The architecture numbers are read from the weights; "
                "resampler.dim_head is used, the others only checked.",
    inputs=(
        In("image_processor", "COMBO", options=lambda: _folders_in("clip_processor"), tooltip=PROCESSOR_TIP),
        In("image_encoder", "COMBO", options=lambda: _folders_in("clip_vit"), tooltip=ENCODER_TIP),
        _int("resampler.dim", 1024, 64, 2048, 32),
        _int("resampler.dim_head", 64, 32, 512, 32, "Width of one attention head: the weights cannot tell it, so it is used."),
        _int("resampler.heads", 12, 4, 32, 4),
        _int("resampler.depth", 4, 4, 16, 2),
        _int("resampler.ff_mult", 4, 2, 8, 2),
        In("encoder_types", "COMBO", options=ENCODER_TYPES, tooltip=ENCODER_TYPES_TIP),
        In("face_analyzer", "COMBO", options=_face_pack_folders, tooltip=FACE_ANALYZER_TIP),
        _int("id_embed_dim", 512, 128, 1024, 32),
        _int("num_id_tokens", 4, 4, 128, 4),
        _int("hyper_dim", 128, 32, 1024, 32),
        _int("lora_rank", 4, 2, 32, 2),
        In("has_base_lora", "BOOLEAN", default=False, tooltip=ARCH_TIP),
    ),
    outputs=(Out(types.PUB_CONFIG, "HYPER_LORA_CONFIG"),),
    run=_config,
)


def _find(sub: str, name: str, what: str) -> Path:
    return host.resolve_in(_published(sub), name, what, f"models/hyper_lora/{sub}")


def _check_declared(config: CompatConfig, model) -> None:
    cfg = model.config
    found = {"resampler.dim": cfg.resampler.dim, "resampler.depth": cfg.resampler.depth,
             "resampler.ff_mult": cfg.resampler.ff_mult, "hyper_dim": cfg.basis_size, "lora_rank": cfg.rank,
             "has_base_lora": cfg.has_base}
    if cfg.id_projector is not None:
        found.update({"id_embed_dim": cfg.id_projector.embed_dim, "num_id_tokens": cfg.id_projector.num_tokens})
    differ = [f"{k}={config.declared[k]} (weights: {v})" for k, v in found.items() if config.declared.get(k) != v]
    if differ:
        host.log.warning("HyperLoRA Config: the weights decide; these settings differ from them: %s", ", ".join(differ))


def _load_bundle(config: CompatConfig, model: str, dtype: str) -> CompatHyperLoRA:
    patcher = cached("hyperlora", _find("hyper_lora", model, "HyperLoRA model"),
                     lambda p: load_checkpoint(p, dtype, dim_head=config.dim_head), dtype, config.dim_head)
    _check_declared(config, unwrap(patcher))
    clip = cached("clip_vision", _find("clip_vit", config.image_encoder, "CLIP ViT folder"), load_clip_vision)
    faces = folders.load_face_analyzer(config.face_analyzer, "auto")
    return CompatHyperLoRA(patcher, clip, faces)


def _loader(config, model: str, dtype: str):
    return (_load_bundle(config, model, dtype),)


LOADER = NodeDef(
    node_id="HyperLoRALoader",
    display_name="HyperLoRA Loader (published)",
    description="Compatibility node (published pack): loads models/hyper_lora/hyper_lora/<model> with the Config node's "
                "CLIP and face models.",
    inputs=(
        In("config", types.PUB_CONFIG, tooltip="From HyperLoRA Config."),
        In("model", "COMBO", options=lambda: _folders_in("hyper_lora"), tooltip=MODEL_TIP),
        In("dtype", "COMBO", options=list(DTYPES), tooltip=DTYPE_TIP),
    ),
    outputs=(Out(types.PUB_HYPER_LORA, "HYPER_LORA"),),
    run=_loader,
)


def _uni_loader(image_processor, image_encoder, encoder_types, face_analyzer, model, dtype):
    kw = {"image_processor": image_processor, "image_encoder": image_encoder, "encoder_types": encoder_types,
          "face_analyzer": face_analyzer, "resampler.dim": 1024, "resampler.dim_head": 64, "resampler.heads": 12,
          "resampler.depth": 4, "resampler.ff_mult": 4, "id_embed_dim": 512, "num_id_tokens": 16, "hyper_dim": 128,
          "lora_rank": 8, "has_base_lora": False}
    return (_load_bundle(_config(**kw)[0], model, dtype),)


UNI_LOADER = NodeDef(
    node_id="HyperLoRAUniLoader",
    display_name="HyperLoRA Uni Loader (published)",
    description="Compatibility node (published pack): Config + Loader with the released settings.",
    inputs=(
        In("image_processor", "COMBO", options=lambda: _folders_in("clip_processor"), tooltip=PROCESSOR_TIP),
        In("image_encoder", "COMBO", options=lambda: _folders_in("clip_vit"), tooltip=ENCODER_TIP),
        In("encoder_types", "COMBO", options=ENCODER_TYPES, tooltip=ENCODER_TYPES_TIP),
        In("face_analyzer", "COMBO", options=_face_pack_folders, tooltip=FACE_ANALYZER_TIP),
        In("model", "COMBO", options=lambda: _folders_in("hyper_lora"), tooltip=MODEL_TIP),
        In("dtype", "COMBO", options=list(DTYPES), tooltip=DTYPE_TIP),
    ),
    outputs=(Out(types.PUB_HYPER_LORA, "HYPER_LORA"),),
    run=_uni_loader,
)


def _face_attr(hyper_lora: CompatHyperLoRA, images):
    analyses = [analyze_photo(rgb, hyper_lora.face_analysis, i + 1) for i, rgb in enumerate(photo_list(images))]
    if not any(a.face is not None for a in analyses):
        raise HyperLoRAError(" ".join(a.no_face_message() for a in analyses))
    return (analyses,)


FACE_ATTR = NodeDef(
    node_id="HyperLoRAFaceAttr",
    display_name="HyperLoRA Face Attr (published)",
    description="Compatibility node (published pack): detects the faces of each photo.",
    inputs=(In("hyper_lora", types.PUB_HYPER_LORA, tooltip=HYPER_TIP), In("images", "IMAGE", tooltip=IMAGES_TIP)),
    outputs=(Out(types.PUB_FACE_ATTR, "FACE_ATTR"),),
    run=_face_attr,
)


def _check_attr(images, face_attr) -> None:
    if face_attr is not None and len(face_attr) != len(photo_list(images)):
        raise HyperLoRAError(f"face_attr describes {len(face_attr)} photos but {len(photo_list(images))} were given; "
                             "connect the same images to Face Attr and this node.")


def _id_cond(hyper_lora: CompatHyperLoRA, images, face_attr, grayscale: bool, remove_background: bool):
    _check_attr(images, face_attr)
    return encode_photos(encode_id, images, hyper_lora.face_analysis, hyper_lora.clip_vision, grayscale=grayscale,
                         remove_background=remove_background, on_no_face="skip")


ID_COND = NodeDef(
    node_id="HyperLoRAIDCond",
    display_name="HyperLoRA ID Cond (published)",
    description="Compatibility node (published pack): ID condition of the photos.",
    inputs=(
        In("hyper_lora", types.PUB_HYPER_LORA, tooltip=HYPER_TIP),
        In("images", "IMAGE", tooltip=IMAGES_TIP),
        In("face_attr", types.PUB_FACE_ATTR, tooltip=FACE_ATTR_TIP),
        In("grayscale", "BOOLEAN", default=False, tooltip=GRAYSCALE_TIP),
        In("remove_background", "BOOLEAN", default=True, tooltip=BACKGROUND_TIP),
    ),
    outputs=(Out(types.PUB_ID_COND, "ID_COND"), Out("IMAGE", "IMAGE")),
    run=_id_cond,
)


def _base_cond(hyper_lora: CompatHyperLoRA, images, face_attr, crop: bool, crop_scale_LRTB: str, safe_crop: bool):  # noqa: N803
    _check_attr(images, face_attr)
    return encode_photos(encode_base, images, hyper_lora.face_analysis, hyper_lora.clip_vision,
                         crop_scales=crop_scale_LRTB if crop else None, clamp_to_image=safe_crop, on_no_face="skip")


BASE_COND = NodeDef(
    node_id="HyperLoRABaseCond",
    display_name="HyperLoRA Base Cond (published)",
    description="Compatibility node (published pack): Base-LoRA condition of the photos.",
    inputs=(
        In("hyper_lora", types.PUB_HYPER_LORA, tooltip=HYPER_TIP),
        In("images", "IMAGE", tooltip=IMAGES_TIP),
        In("face_attr", types.PUB_FACE_ATTR, tooltip=FACE_ATTR_TIP),
        In("crop", "BOOLEAN", default=True, tooltip="Crop around the face (else the whole photo)."),
        In("crop_scale_LRTB", "STRING", default="1,1,1,1", tooltip="Crop extent around the face: left,right,top,bottom."),
        In("safe_crop", "BOOLEAN", default=True, tooltip="Keep the crop inside the photo."),
    ),
    outputs=(Out(types.PUB_BASE_COND, "BASE_COND"), Out("IMAGE", "IMAGE")),
    run=_base_cond,
)


def _gen_id(hyper_lora: CompatHyperLoRA, id_cond):
    return (make_id_lora(hyper_lora.patcher, id_cond),)


def _gen_base(hyper_lora: CompatHyperLoRA, base_cond):
    from hyperlora_core.comfy_bridge.model_management import load_for_use

    return (generate_base_lora(load_for_use(hyper_lora.patcher), base_cond, host.Progress()),)


GEN_ID = NodeDef(
    node_id="HyperLoRAGenerateIDLoRA",
    display_name="HyperLoRA Generate ID LoRA (published)",
    description="Compatibility node (published pack).",
    inputs=(In("hyper_lora", types.PUB_HYPER_LORA, tooltip=HYPER_TIP),
            In("id_cond", types.PUB_ID_COND, tooltip="From HyperLoRA ID Cond.")),
    outputs=(Out(types.LORA, "LORA"),),
    run=_gen_id,
)

GEN_BASE = NodeDef(
    node_id="HyperLoRAGenerateBaseLoRA",
    display_name="HyperLoRA Generate Base LoRA (published)",
    description="Compatibility node (published pack).",
    inputs=(In("hyper_lora", types.PUB_HYPER_LORA, tooltip=HYPER_TIP),
            In("base_cond", types.PUB_BASE_COND, tooltip="From HyperLoRA Base Cond.")),
    outputs=(Out(types.LORA, "LORA"),),
    run=_gen_base,
)


def _apply(model, lora, weight: float):
    return (apply_lora(model, lora, weight),)


APPLY = NodeDef(
    node_id="HyperLoRAApplyLoRA",
    display_name="HyperLoRA Apply LoRA (published)",
    description="Compatibility node (published pack).",
    inputs=(In("model", "MODEL", tooltip="The model to personalise, of the base the LoRA was made for (another base is "
                                      "refused with a message)."), In("lora", types.LORA, tooltip="The LoRA to apply."),
            In("weight", "FLOAT", default=0.8, min=-1.5, max=1.5, step=0.01, tooltip="LoRA strength (0.75-0.9 recommended).")),
    outputs=(Out("MODEL", "MODEL"),),
    run=_apply,
)


def _save(filename_prefix: str, lora):
    entry = save_to_output(lora, filename_prefix)
    return Result(values=(), ui={"loras": [entry]})


def _check_prefix(filename_prefix: str):
    return host.check_filename_prefix(filename_prefix) or True


SAVE = NodeDef(
    node_id="HyperLoRASaveLoRA",
    display_name="HyperLoRA Save LoRA (published)",
    description="Compatibility node (published pack): saves under the output folder, never overwriting.",
    inputs=(In("filename_prefix", "STRING", default="lora/id_lora", tooltip="File name inside ComfyUI's output folder."),
            In("lora", types.LORA, tooltip="The LoRA to save.")),
    outputs=(),
    run=_save,
    validate=_check_prefix,
    output_node=True,
)


def _uni_generate(hyper_lora: CompatHyperLoRA, images, grayscale: bool, remove_background: bool):
    attr = _face_attr(hyper_lora, images)[0]
    cond = _id_cond(hyper_lora, images, attr, grayscale, remove_background)[0]
    return _gen_id(hyper_lora, cond)


UNI_GENERATE = NodeDef(
    node_id="HyperLoRAUniGenerateIDLoRA",
    display_name="HyperLoRA Uni Generate ID LoRA (published)",
    description="Compatibility node (published pack): Face Attr + ID Cond + Generate ID LoRA.",
    inputs=(
        In("hyper_lora", types.PUB_HYPER_LORA, tooltip=HYPER_TIP),
        In("images", "IMAGE", tooltip=IMAGES_TIP),
        In("grayscale", "BOOLEAN", default=False, tooltip=GRAYSCALE_TIP),
        In("remove_background", "BOOLEAN", default=True, tooltip=BACKGROUND_TIP),
    ),
    outputs=(Out(types.LORA, "LORA"),),
    run=_uni_generate,
)

COMPAT_CATEGORY = f"{CATEGORY}/published pack"
# Deprecated: both frontends leave deprecated nodes out of node search and the node library (unless the user turns on
# "Show deprecated nodes in search"), so a search for "HyperLoRA ..." lists our own nodes; workflows that use these
# names still load and run.
NODES = [replace(n, category=COMPAT_CATEGORY, deprecated=True)
         for n in (CONFIG, LOADER, ID_COND, BASE_COND, GEN_ID, GEN_BASE, APPLY, SAVE, FACE_ATTR, UNI_LOADER, UNI_GENERATE)]

ORDER = 1000  # place in the node listing (registry.declaring_modules)
COMPAT = True  # registered only when the published pack itself is not installed (registry.node_defs)
