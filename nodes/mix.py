"""Mix nodes: combine generated LoRAs (weighted average, interpolation, concept slider)."""

from __future__ import annotations

from hyperlora_core.errors import HyperLoRAError
from hyperlora_core.lora import interpolate_loras, mix_loras, slider_lora

from . import types
from .spec import In, NodeDef, Out

MODES = ["factors", "delta"]
MODE_TIP = (
    "factors: mix down/up factors (same as mixing HyperLoRA coefficients; rank stays; LoRAs from one "
    "checkpoint only). delta: exact sum of the weight updates (any LoRAs; rank grows)."
)
SLOTS = 4


def _mix(mode: str, normalize: bool, **kwargs):
    loras, weights = [], []
    for k in range(1, SLOTS + 1):
        lora, weight = kwargs.get(f"lora_{k}"), kwargs.get(f"weight_{k}")
        if lora is not None:
            loras.append(lora)
            weights.append(float(weight))
    if normalize:
        total = sum(weights)
        if total == 0:
            raise HyperLoRAError("the weights of the connected LoRAs sum to 0, so they cannot be averaged; "
                                 "change a weight or switch 'normalize' off.")
        weights = [w / total for w in weights]
    return (mix_loras(loras, weights, mode),)


def _slots():
    out = []
    for k in range(1, SLOTS + 1):
        out.append(In(f"lora_{k}", types.LORA, optional=k > 1, tooltip=f"LoRA {k}" + (" (optional)" if k > 1 else "") + "."))
        out.append(In(f"weight_{k}", "FLOAT", default=1.0, min=-10.0, max=10.0, step=0.01, tooltip=f"Weight of LoRA {k}."))
    return tuple(out)


MIX = NodeDef(
    node_id="HyperLoRAMix",
    display_name="HyperLoRA Mix LoRAs",
    description="Weighted average of up to four LoRAs (e.g. one person from several photo sets, or a blend of people).",
    inputs=(
        In("mode", "COMBO", options=MODES, default="factors", tooltip=MODE_TIP),
        In("normalize", "BOOLEAN", default=True, tooltip="Divide the weights by their sum (an average)."),
        *_slots(),
    ),
    outputs=(Out(types.LORA, "lora"),),
    run=_mix,
)


def _interpolate(lora_a, lora_b, t: float, mode: str):
    return (interpolate_loras(lora_a, lora_b, t, mode),)


INTERPOLATE = NodeDef(
    node_id="HyperLoRAInterpolate",
    display_name="HyperLoRA Interpolate",
    description="Between two identities: t=0 gives A, t=1 gives B, 0.5 halfway (in HyperLoRA's LoRA space).",
    inputs=(
        In("lora_a", types.LORA, tooltip="Person A's ID-LoRA (t = 0)."),
        In("lora_b", types.LORA, tooltip="Person B's ID-LoRA (t = 1)."),
        In("t", "FLOAT", default=0.5, min=-1.0, max=2.0, step=0.01, tooltip="0: A, 1: B, 0.5: halfway; outside 0-1 extrapolates."),
        In("mode", "COMBO", options=MODES, default="factors", tooltip=MODE_TIP),
    ),
    outputs=(Out(types.LORA, "lora"),),
    run=_interpolate,
)


def _slider(lora_a, lora_b, scale: float):
    return (slider_lora(lora_a, lora_b, scale),)


SLIDER = NodeDef(
    node_id="HyperLoRAConceptSlider",
    display_name="HyperLoRA Concept Slider",
    description=(
        "The change from photo A to photo B of the same person (e.g. neutral -> smiling), as a LoRA: "
        "scale x (B - A). Apply it on top of an ID-LoRA; negative scales go the other way."
    ),
    inputs=(
        In("lora_a", types.LORA, tooltip="The LoRA of the slider's start (e.g. a neutral photo)."),
        In("lora_b", types.LORA, tooltip="The LoRA of the slider's end (e.g. a smiling photo of the same person)."),
        In("scale", "FLOAT", default=1.0, min=-5.0, max=5.0, step=0.05, tooltip="How far along A -> B; negative goes the other way."),
    ),
    outputs=(Out(types.LORA, "lora"),),
    run=_slider,
)

NODES = [MIX, INTERPOLATE, SLIDER]

ORDER = 40  # place in the node listing (registry.declaring_modules)
