"""Apply node: a LoRA (and optionally a Base-LoRA) onto a model, as a patched clone."""

from __future__ import annotations

from hyperlora_core.comfy_bridge import apply_lora

from . import types
from .spec import In, NodeDef, Out


def _apply(model, lora, strength: float, base_lora=None, base_strength: float = 0.0):
    return (apply_lora(model, lora, strength, base_lora=base_lora, base_strength=base_strength or 0.0),)


APPLY = NodeDef(
    node_id="HyperLoRAApply",
    display_name="HyperLoRA Apply",
    description=(
        "Adds the LoRA to the model's UNet (the input model is unchanged). Recommended strength 0.75-0.9 "
        "with the published checkpoints; start the prompt with the trigger words 'fcsks fxhks fhyks, '."
    ),
    inputs=(
        In("model", "MODEL", tooltip="The model to personalise, of the base the LoRA was made for (another base is refused with a message); it is not changed, a patched copy comes out."),
        In("lora", types.LORA, tooltip="The ID-LoRA (from Generate ID LoRA, Mix, Interpolate, Slider or a file)."),
        In("strength", "FLOAT", default=0.85, min=-2.0, max=2.0, step=0.01,
           tooltip="How strongly the LoRA acts; 0.75-0.9 for the published checkpoints."),
        In("base_lora", types.LORA, optional=True, tooltip="Optional Base-LoRA (background, clothing) from Generate Base LoRA."),
        In("base_strength", "FLOAT", default=0.0, min=-2.0, max=2.0, step=0.01,
           tooltip="Strength of the Base-LoRA (0: not applied)."),
    ),
    outputs=(Out("MODEL", "model"),),
    run=_apply,
)

NODES = [APPLY]

ORDER = 50  # place in the node listing (registry.declaring_modules)
