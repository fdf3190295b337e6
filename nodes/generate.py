"""Generate nodes: conditions of one person -> a LoRA (a plain kohya state dict)."""

from __future__ import annotations

from hyperlora_core.model import HyperLoRA

from . import host, types
from .compute import generate_base_lora, generate_id_lora
from .spec import In, NodeDef, Out


def _generate_id(hyper_lora: HyperLoRA, id_cond):
    return (generate_id_lora(hyper_lora, id_cond, host.Progress),)


def _generate_base(hyper_lora: HyperLoRA, base_cond):
    return (generate_base_lora(hyper_lora, base_cond, host.Progress),)


GENERATE_ID = NodeDef(
    node_id="HyperLoRAGenerateID",
    display_name="HyperLoRA Generate ID LoRA",
    description=(
        "One forward pass of the hypernetwork: the photos' conditions become an ID-LoRA. Several photos are "
        "averaged (weighted by the Encode node's weights). Cached by ComfyUI: changing only the sampler "
        "does not generate again."
    ),
    inputs=(In("hyper_lora", types.HYPERLORA), In("id_cond", types.ID_COND)),
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
    inputs=(In("hyper_lora", types.HYPERLORA), In("base_cond", types.BASE_COND)),
    outputs=(Out(types.LORA, "base_lora"),),
    run=_generate_base,
)

NODES = [GENERATE_ID, GENERATE_BASE]
