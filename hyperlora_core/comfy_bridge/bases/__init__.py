"""The base-model profiles, one per base ComfyUI runs (see `profile.py`); this registry is the one list.

A new base is one file (`bases/<base>.py` with a `PROFILE`) and one line below.
"""

from __future__ import annotations

from ...config import LEGACY_BASE
from ...errors import HyperLoRAError
from ...lora import lora_base
from .flux import PROFILE as FLUX
from .profile import BaseProfile, Conditioning
from .sd15 import PROFILE as SD15
from .sdxl import PROFILE as SDXL
from .zimage import PROFILE as ZIMAGE

PROFILES: dict[str, BaseProfile] = {p.name: p for p in (
    SDXL,
    SD15,
    FLUX,
    ZIMAGE,
)}
"""name -> profile; a model is matched against them in this order."""

__all__ = ["PROFILES", "BaseProfile", "Conditioning", "check_model_base", "lora_profile", "profile_named", "profile_of",
           "profile_of_config", "supported"]


def supported() -> str:
    return ", ".join(f"{p.display_name} ('{p.name}')" for p in PROFILES.values())


def profile_named(name: str, where: str = "base") -> BaseProfile:
    """The profile called `name`; `where` names the field or file it came from, for the message."""
    profile = PROFILES.get(name)
    if profile is None:
        raise HyperLoRAError(f"{where}: '{name}' is not a base HyperLoRA supports; supported: {supported()}.")
    return profile


def profile_of(model_patcher, what: str = "MODEL") -> BaseProfile:
    """The profile of a ComfyUI MODEL, from the `supported_models` class ComfyUI detected it as."""
    inner = getattr(model_patcher, "model", None)
    model_config = getattr(inner, "model_config", None)
    return profile_of_config(model_config, what, type(inner or model_patcher).__name__)


def profile_of_config(model_config, what: str, kind: str = "") -> BaseProfile:
    """The profile of a ComfyUI `supported_models` instance (as `comfy.model_detection` returns it for a file);
    `kind` names the model in the message when there is no config."""
    for profile in PROFILES.values():
        if model_config is not None and profile.matches(model_config):
            return profile
    kind = type(model_config).__name__ if model_config is not None else kind
    raise HyperLoRAError(f"{what}: a {kind} model, which HyperLoRA does not support; it works with {supported()} "
                         "models. Load a checkpoint of one of those.")


def lora_profile(lora) -> BaseProfile:
    """The profile of the base a LoRA was made for; a LoRA that does not say (a kohya file from elsewhere, an
    older one) is taken as the legacy base's, SDXL, as everything HyperLoRA made before profiles was."""
    return profile_named(lora_base(lora) or LEGACY_BASE, "LoRA")


def check_model_base(model_patcher, base: str, what: str) -> None:
    """Refuse, before anything is patched, a LoRA or HyperLoRA made for base `base` on a MODEL of another base:
    one message naming both, instead of 'no matching layer' or a silent no-op. `base` "" (unknown): no check."""
    if not base:
        return
    made_for = profile_named(base, what)
    model = profile_of(model_patcher)
    if model is not made_for:
        raise HyperLoRAError(
            f"{what} was made for {made_for.display_name} ('{made_for.name}') but the MODEL is {model.display_name} "
            f"('{model.name}'). Load a {made_for.display_name} checkpoint, or a HyperLoRA checkpoint trained for "
            f"{model.display_name}."
        )
