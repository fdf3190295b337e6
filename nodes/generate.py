"""Generate nodes: conditions of one person -> a LoRA (a plain kohya state dict)."""

from __future__ import annotations

from hyperlora_core.comfy_bridge.model_management import load_for_use

from . import host, types
from .compute import generate_base_lora, generate_id_lora
from .spec import In, NodeDef, Out

HYPER_TIP = "The hypernetwork, from HyperLoRA Loader."


def make_id_lora(hyper_lora, id_cond, allow_other_face_pack: bool = False):
    """Load the hypernetwork where ComfyUI computes, check the face space, generate."""
    model = load_for_use(hyper_lora)
    if hasattr(id_cond, "check_face_pack"):
        id_cond.check_face_pack(model.config.face_pack, allow_mismatch=allow_other_face_pack)
    return generate_id_lora(model, id_cond, host.Progress())


def _generate_id(hyper_lora, id_cond, allow_other_face_pack: bool = False):
    return (make_id_lora(hyper_lora, id_cond, bool(allow_other_face_pack)),)


def _generate_base(hyper_lora, base_cond):
    return (generate_base_lora(load_for_use(hyper_lora), base_cond, host.Progress()),)


GENERATE_ID = NodeDef(
    node_id="HyperLoRAGenerateID",
    display_name="HyperLoRA Generate ID LoRA",
    description=(
        "One forward pass of the hypernetwork: the photos' conditions become an ID-LoRA. Several photos are "
        "averaged (weighted by the Encode node's weights). Cached by ComfyUI: changing only the sampler "
        "does not generate again."
    ),
    inputs=(
        In("hyper_lora", types.HYPERLORA, tooltip=HYPER_TIP),
        In("id_cond", types.ID_COND, tooltip="The photos' ID condition, from Encode ID."),
        In("allow_other_face_pack", "BOOLEAN", default=False,
           tooltip="Use face embeddings from another pack than the checkpoint was trained on (only for checkpoints "
                   "you trained on that pack)."),
    ),
    outputs=(Out(types.LORA, "lora", "Kohya LoRA; apply with HyperLoRA Apply or save it."),),
    run=_generate_id,
)

GENERATE_BASE = NodeDef(
    node_id="HyperLoRAGenerateBase",
    display_name="HyperLoRA Generate Base LoRA",
    description=(
        "Base-LoRA (background, clothing, style of the photos) from the Encode Base conditions. Only for "
        "checkpoints trained with a Base-LoRA branch; the published ones have none."
    ),
    inputs=(In("hyper_lora", types.HYPERLORA, tooltip=HYPER_TIP),
            In("base_cond", types.BASE_COND, tooltip="The photos' Base condition, from Encode Base.")),
    outputs=(Out(types.LORA, "base_lora"),),
    run=_generate_base,
)

NODES = [GENERATE_ID, GENERATE_BASE]

ORDER = 30  # place in the node listing (registry.declaring_modules)
