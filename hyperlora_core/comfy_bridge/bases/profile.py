"""`BaseProfile`: everything the pack, the trainer and the toy world know about one base model.

A base model (SDXL, SD1.5, later FLUX, Z-Image) differs in how ComfyUI recognises it, how it is
built, which linear layers a LoRA targets, what conditioning one denoising call takes and what
kohya tools call it. Each base answers those questions in its own file (`bases/<base>.py`) by
subclassing this class; everything else asks the profile, never the base's name.

Conditioning is an opaque mapping `dict[str, Tensor]` (batch first): the profile makes it from
captions with the user's ComfyUI CLIP object (`text_conditioning`) and from the training crop's
geometry (`image_conditioning`), shards and batches carry it by key, and the profile turns it into
`apply_model` keyword arguments (`model_inputs`). A base whose model takes guidance, pooled vectors
or caption features adds keys; nothing outside its profile reads them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import torch
from torch import nn

from ...config import TRIGGER_WORDS, ModuleSpec
from ...errors import HyperLoRAError

Conditioning = dict[str, torch.Tensor]
"""A batch's conditioning by the profile's keys, each tensor batch first."""


class BaseProfile:
    """One base model's facts. Subclasses set the class attributes and implement the methods."""

    name: str = ""
    """Registry key, recorded in checkpoints and configs (`sdxl`, `sd15`)."""
    display_name: str = ""
    model_configs: tuple[type, ...] = ()
    """ComfyUI `supported_models` classes (and their subclasses) that are this base."""
    kohya_version: str = ""
    """`ss_base_model_version` of LoRA files for this base (kohya sd-scripts' names)."""
    modelspec_architecture: str = ""
    """`modelspec.architecture` of LoRA files for this base (Stability's model spec)."""
    strength: float = 0.85
    """Recommended LoRA strength for the generated ID-LoRA."""
    cfg: float = 5.0
    """Recommended sampler CFG."""
    scheduler: str = "karras"
    """KSampler scheduler of the trainer's sample grids (`euler_sample`)."""
    trigger_words: str = TRIGGER_WORDS
    text_keys: tuple[str, ...] = ("context",)
    """Conditioning keys that come from the caption (replaced by the empty caption's under text dropout)."""
    target_sets: Mapping[str, str] = {}
    """Named LoRA target sets: a regular expression over kohya layer names (`lora_unet_..._to_q`)."""
    default_targets: str = "attention"
    tiny_resolution: int = 64
    """Side of the training images for the tiny backbone."""
    inplace_residuals: bool = False
    """The `checkpoint_units` add residuals in place (ComfyUI's FLUX blocks): while gradients are on, the
    training hooks run them with out-of-place adds (`lora_hooks`), else autograd refuses the backward."""
    latent_channels: int = 4
    """Channels of the VAE latent the model denoises (the tiny backbone's TAESD is built with as many)."""
    text_encoders: tuple[str, ...] = ()
    """The text encoder files the base reads captions with, one per file, by the `comfy.sd.TEModel` name ComfyUI's
    `detect_te_model` gives each (training from split files checks them before loading)."""
    clip_type: str = ""
    """The `comfy.sd.CLIPType` its text encoder files load as (the `type` of ComfyUI's CLIPLoader / DualCLIPLoader)."""

    # -- recognising and building ------------------------------------------------------------------
    def matches(self, model_config: object) -> bool:
        """Whether a ComfyUI model's `model_config` is this base (as `comfy.model_detection` chose it)."""
        return isinstance(model_config, self.model_configs)

    def build(self, unet_config: dict | None = None, device: str | torch.device | None = None,
              dtype: torch.dtype = torch.float32):
        """A ComfyUI `ModelPatcher` of this base from ComfyUI's own classes (full size by default;
        `device="meta"` allocates nothing; weights are uninitialised: see `init.init_weights`)."""
        raise NotImplementedError

    def tiny_config(self, text_width: int | None = None) -> dict:
        """The tiny model's settings, same block layout as the full one; `text_width` is the width of the
        tiny text encoders' output the conditioning is built from (None: `tiny_clip`'s)."""
        raise NotImplementedError

    def context_width(self, model) -> int:
        """Width of the text context the model reads (ComfyUI's `BaseModel`), checked against prepared shards."""
        return int(model.model_config.unet_config["context_dim"])

    def tiny_clip(self):
        """Tiny random text encoders of this base's kind, as a `comfy.sd.CLIP` (tests, tiny backbone)."""
        raise NotImplementedError

    # -- LoRA targets --------------------------------------------------------------------------------
    def module_specs(self, model_patcher, targets: Sequence[str] | None = None) -> list[ModuleSpec]:
        """The LoRA'd modules of a built model, in token order, keeping the layers `targets` selects
        (`target_patterns`; `lora.targets` of a training config)."""
        raise NotImplementedError

    @staticmethod
    def selected(candidates: Sequence[ModuleSpec], patterns: list[re.Pattern]) -> list[ModuleSpec]:
        """Of every module a target set could name (in token order), what `patterns` keeps."""
        return [kept for kept in (spec.keeping(patterns) for spec in candidates) if kept is not None]

    def target_patterns(self, targets: Sequence[str] | None) -> list[re.Pattern]:
        """`targets` as compiled patterns over kohya layer names: each entry the name of one of the base's
        `target_sets` or a regular expression; None: the default set."""
        patterns = []
        for entry in [self.default_targets] if targets is None else list(targets):
            text = self.target_sets.get(entry, entry)
            try:
                patterns.append(re.compile(text))
            except re.error as exc:
                raise HyperLoRAError(f"LoRA targets: '{entry}' is neither a target set of {self.display_name} "
                                     f"({', '.join(self.target_sets)}) nor a regular expression ({exc}).") from None
        return patterns

    def checkpoint_units(self) -> tuple[type[nn.Module], ...]:
        """Module classes gradient checkpointing wraps (the blocks ComfyUI's own trainer checkpoints)."""
        raise NotImplementedError

    # -- conditioning ----------------------------------------------------------------------------------
    def text_conditioning(self, clip, captions: list[str]) -> Conditioning:
        """Captions -> this base's text conditioning, batched, on the CPU in fp32, through the user's
        ComfyUI CLIP object (as CLIPTextEncode encodes them)."""
        raise NotImplementedError

    def image_conditioning(self, orig_hw: list[int], crop_tl: list[int], target_hw: list[int]) -> Conditioning:
        """What a training sample's crop geometry adds to its conditioning (one sample, no batch axis)."""
        return {}

    def model_inputs(self, model, cond: Mapping[str, torch.Tensor]) -> dict:
        """Conditioning -> the keyword arguments of `model.apply_model(x, sigma, **inputs)` (ComfyUI's
        `BaseModel`), batch first, on the conditioning's device."""
        raise NotImplementedError

    # -- facts for files -------------------------------------------------------------------------------
    def kohya_metadata(self) -> dict[str, str]:
        """The base-model fields of a kohya LoRA file's metadata."""
        return {"ss_base_model_version": self.kohya_version, "modelspec.architecture": self.modelspec_architecture}

    def prediction(self, model_patcher) -> str:
        """What the loaded model predicts, read from ComfyUI (`EPS`, `V_PREDICTION`, `FLOW`, ...): the
        trainer's x0 loss serves all, through ComfyUI's `model_sampling`."""
        return model_patcher.model.model_type.name

    def __repr__(self) -> str:
        return f"<base {self.name}>"
