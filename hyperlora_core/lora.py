"""Utilities on generated LoRAs (plain kohya state dicts): scale, add, mix, slide, save.

A HyperLoRA LoRA is `{prefix}.lora_down.weight [r, in]`, `{prefix}.lora_up.weight [out, r]` and
`{prefix}.alpha` per module; its update is `dW = alpha / r * up @ down`. Two ways to combine:

* ``"delta"``: exact weighted sums of the updates, by stacking ranks (any LoRAs, rank grows);
* ``"factors"``: weighted sums of the down and up factors separately. For LoRAs made by the same
  HyperLoRA checkpoint this equals mixing their basis coefficients (the mix is linear in them),
  i.e. interpolating in HyperLoRA's LoRA space; rank stays the same.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from .config import LORA_SCALE
from .errors import HyperLoRAError
from .safetensors_io import save_tensors_atomic

LoRA = dict[str, torch.Tensor]


def sample_scales(count: int, strength: float = 1.0, alpha_scale: float = LORA_SCALE, *,
                  device: torch.device | str | None = None) -> torch.Tensor:
    """Per-sample factor `[count]` on a LoRA's update `up @ down`: alpha/rank x strength, what ComfyUI
    applies to a LoRA file loaded at `strength` (HyperLoRA's LoRAs: alpha/rank = `LORA_SCALE`).
    The per-sample LoRA hooks (training, batched evaluation) take it as `LoRASet.scale`."""
    return torch.full((count,), alpha_scale * strength, device=device)


@dataclass(frozen=True)
class LoRASpace:
    """Which HyperLoRA checkpoint made a LoRA: its name (for messages) and a digest of its basis file (for
    comparing). Mixing factors, interpolating and sliders only mean something inside one checkpoint's
    LoRA space; two checkpoints of one architecture give LoRAs of the same shapes, so shapes cannot tell."""

    name: str
    digest: str

    def __str__(self) -> str:
        return f"{self.name} ({self.digest})"


class GeneratedLoRA(dict):
    """A kohya state dict (what every LoRA loader reads) that also carries the `LoRASpace` it was made in and
    the base model it is for (a profile name of `comfy_bridge.bases`, "" unknown); a plain dict (a LoRA from
    elsewhere) has neither and is never refused for them."""

    def __init__(self, tensors: LoRA, space: LoRASpace | None = None, base: str = "") -> None:
        super().__init__(tensors)
        self.space = space
        self.base = base


def lora_space(lora: LoRA) -> LoRASpace | None:
    return getattr(lora, "space", None)


def lora_base(lora: LoRA) -> str:
    """The base model a LoRA was made for ("" when it does not say: a LoRA from elsewhere)."""
    return getattr(lora, "base", "")


def common_base(loras: list[LoRA], what: str) -> str:
    """The one base the known-base LoRAs of `loras` are for ("" if none says), or an error naming two that
    differ: LoRAs for different base models patch different layers and never combine."""
    known = [(i + 1, lora_base(x)) for i, x in enumerate(loras) if lora_base(x)]
    for i, base in known[1:]:
        if base != known[0][1]:
            raise HyperLoRAError(f"{what}: LoRA {known[0][0]} is for the base model '{known[0][1]}' but LoRA {i} for "
                                 f"'{base}'; only LoRAs for one base model combine.")
    return known[0][1] if known else ""


def check_same_space(loras: list[LoRA], what: str, fix: str) -> LoRASpace | None:
    """The one LoRA space of `loras` (None if none is known), or an error naming the first two checkpoints
    that differ: `what` is the operation, `fix` what to do instead."""
    known = [(i + 1, lora_space(x)) for i, x in enumerate(loras) if lora_space(x) is not None]
    for i, space in known[1:]:
        if space.digest != known[0][1].digest:
            j, first = known[0]
            raise HyperLoRAError(
                f"{what}: LoRA {j} was made by the HyperLoRA checkpoint {first} but LoRA {i} by {space}. This only "
                f"means something for LoRAs of one checkpoint (its LoRA space); {fix}"
            )
    return known[0][1] if known and len(known) == len(loras) else None


def lora_modules(lora: LoRA) -> dict[str, tuple[torch.Tensor, torch.Tensor, float]]:
    """`prefix -> (down, up, alpha)`; alpha defaults to the rank (scale 1) as kohya does."""
    out = {}
    for key, down in lora.items():
        if not key.endswith(".lora_down.weight"):
            continue
        prefix = key[: -len(".lora_down.weight")]
        up = lora.get(f"{prefix}.lora_up.weight")
        if up is None:
            raise HyperLoRAError(f"LoRA module '{prefix}' has lora_down but no lora_up weight.")
        alpha = lora.get(f"{prefix}.alpha")
        if down.ndim < 2 or up.ndim < 2 or up.shape[1] != down.shape[0]:
            raise HyperLoRAError(
                f"LoRA module '{prefix}': lora_down {list(down.shape)} and lora_up {list(up.shape)} do not fit "
                "together (up must be [out, rank] for a down of [rank, in]); the LoRA is damaged."
            )
        out[prefix] = (down, up, float(alpha) if alpha is not None else float(down.shape[0]))
    if not out:
        raise HyperLoRAError("this LoRA has no '.lora_down.weight' keys; it is not a kohya LoRA state dict.")
    return out


def check_finite(lora: LoRA, what: str, cause: str) -> LoRA:
    """`lora` unchanged, or an error naming the first non-finite tensor: a NaN in any factor turns
    every image black, so it must stop where it enters. `cause` tells the user what to do."""
    for key, t in lora.items():
        if t.is_floating_point() and not torch.isfinite(t).all():
            raise HyperLoRAError(f"{what}: '{key}' holds NaN or infinite values, which would make every image black. {cause}")
    return lora


def _update_shape(module: tuple[torch.Tensor, torch.Tensor, float]) -> tuple[int, ...]:
    """Shape of the weight a module updates: `[out, in, *kernel]`."""
    down, up, _ = module
    return (up.shape[0], *down.shape[1:])


def _build(modules: dict[str, tuple[torch.Tensor, torch.Tensor, float]], space: LoRASpace | None = None,
           base: str = "") -> LoRA:
    out: LoRA = {}
    for prefix, (down, up, alpha) in modules.items():
        out[f"{prefix}.lora_down.weight"] = down
        out[f"{prefix}.lora_up.weight"] = up
        out[f"{prefix}.alpha"] = torch.tensor(float(alpha))
    return GeneratedLoRA(out, space, base) if space is not None or base else out


def delta_weight(lora: LoRA, prefix: str) -> torch.Tensor:
    """The full update `alpha/r * up @ down` of one module (float32)."""
    down, up, alpha = lora_modules(lora)[prefix]
    return (alpha / down.shape[0]) * (up.float() @ down.float())


def scale_lora(lora: LoRA, scale: float) -> LoRA:
    """Every update multiplied by `scale` (applied to the up factor)."""
    return _build({p: (d, u * scale, a) for p, (d, u, a) in lora_modules(lora).items()}, lora_space(lora), lora_base(lora))


FACTORS_FIX = "make them with one checkpoint, or use mode 'delta' (the exact sum of the updates, any LoRAs)."


def mix_loras(loras: list[LoRA], weights: list[float], mode: str = "delta", same_space: str | None = None) -> LoRA:
    """Weighted combination of LoRAs; see the module docstring for the two modes. `factors` (and any mode
    when `same_space` names the operation) refuses LoRAs made by different checkpoints."""
    if not loras:
        raise HyperLoRAError("no LoRAs to mix.")
    if len(weights) != len(loras):
        raise HyperLoRAError(f"got {len(weights)} weights for {len(loras)} LoRAs; give one weight per LoRA.")
    base = common_base(loras, same_space or "mixing")
    if mode == "factors" or same_space:
        space = check_same_space(loras, same_space or "'factors' mixing", FACTORS_FIX if mode == "factors" else
                                 "make both with one checkpoint.")
    else:
        spaces = {lora_space(x) for x in loras}
        space = spaces.pop() if len(spaces) == 1 else None
    parsed = [lora_modules(x) for x in loras]
    prefixes = list(dict.fromkeys(p for mods in parsed for p in mods))
    for p in prefixes:
        updates = {i + 1: _update_shape(mods[p]) for i, mods in enumerate(parsed) if p in mods}
        if len(set(updates.values())) > 1:
            i, a = next(iter(updates.items()))
            j, b = next((k, v) for k, v in updates.items() if v != a)
            raise HyperLoRAError(
                f"module '{p}' updates a {list(a)} weight in LoRA {i} but a {list(b)} weight in LoRA {j}: these LoRAs "
                "were made for different models, so they cannot be mixed. Mix LoRAs made for the same base model."
            )
    out = {}
    if mode == "delta":
        for p in prefixes:
            downs, ups = [], []
            for w, mods in zip(weights, parsed):
                if p in mods and w != 0:
                    d, u, a = mods[p]
                    downs.append(d.float())
                    ups.append(u.float() * (w * a / d.shape[0]))
            if downs:
                down, up = torch.cat(downs, 0), torch.cat(ups, 1)
                out[p] = (down, up, float(down.shape[0]))
            else:  # every weight 0 (a slider at scale 0): a zero update, still a LoRA of these modules
                d, u, a = next(mods[p] for mods in parsed if p in mods)
                out[p] = (d.float(), torch.zeros_like(u, dtype=torch.float32), a)
    elif mode == "factors":
        for p in prefixes:
            missing = [i + 1 for i, mods in enumerate(parsed) if p not in mods]
            if missing:
                raise HyperLoRAError(
                    f"'factors' mixing needs the same modules in every LoRA, but module '{p}' is missing from LoRA "
                    f"{missing[0]} (a LoRA of other layers, or trimmed); {FACTORS_FIX}"
                )
            present = [(w, mods[p]) for w, mods in zip(weights, parsed)]
            shapes = {(tuple(d.shape), tuple(u.shape), a) for _, (d, u, a) in present}
            if len(shapes) != 1:
                raise HyperLoRAError(
                    f"'factors' mixing needs LoRAs of the same rank and alpha from the same HyperLoRA checkpoint; "
                    f"module '{p}' differs ({sorted(shapes)[:2]}). Use mode 'delta' for unrelated LoRAs."
                )
            down = sum(w * d.float() for w, (d, _, _) in present)
            up = sum(w * u.float() for w, (_, u, _) in present)
            out[p] = (down, up, present[0][1][2])
    else:
        raise HyperLoRAError(f"unknown mix mode '{mode}'; use 'delta' or 'factors'.")
    return _build(out, space, base)


def add_loras(a: LoRA, b: LoRA) -> LoRA:
    """`a + b` as one LoRA (exact: ranks are stacked)."""
    return mix_loras([a, b], [1.0, 1.0], "delta")


def interpolate_loras(a: LoRA, b: LoRA, t: float, mode: str = "factors") -> LoRA:
    """`(1 - t) * a + t * b`: t=0 gives a, t=1 gives b (two identities of one checkpoint's LoRA space)."""
    return mix_loras([a, b], [1.0 - t, t], mode, same_space="interpolating")


def slider_lora(a: LoRA, b: LoRA, scale: float) -> LoRA:
    """Concept slider `scale * (b - a)`: the change from photo a to photo b, as a LoRA (both made by one
    checkpoint: across two, the difference would be mostly the checkpoints')."""
    return mix_loras([a, b], [-scale, scale], "delta", same_space="a concept slider")


def lora_file(
    lora: LoRA,
    dtype: torch.dtype = torch.float16,
    metadata: dict[str, str] | None = None,
    source: str | None = None,
    trigger_words: str | None = None,
    base_metadata: dict[str, str] | None = None,
) -> tuple[LoRA, dict[str, str]]:
    """The tensors and kohya `ss_*` metadata of a LoRA file; refuses non-finite weights.

    `base_metadata` names the base model the way kohya tools read it (`BaseProfile.kohya_metadata`; the
    callers that know the model pass it);
    `source` (the HyperLoRA checkpoint) and `trigger_words` are recorded so the file explains itself.
    """
    check_finite(lora, "LoRA to save", "Nothing was written; see the node that made or mixed this LoRA.")
    mods = lora_modules(lora)
    first_down, _, first_alpha = next(iter(mods.values()))
    meta = {
        "ss_network_module": "networks.lora",
        "ss_network_dim": str(first_down.shape[0]),
        "ss_network_alpha": str(first_alpha),
        **(base_metadata or {}),
        "hyperlora.modules": str(len(mods)),
    }
    if lora_base(lora):
        meta["hyperlora.base"] = lora_base(lora)
    space = lora_space(lora)
    if source or space:
        meta["hyperlora.source"] = source or space.name
    if space:
        meta["hyperlora.space"] = space.digest
    if trigger_words:
        meta["hyperlora.trigger_words"] = trigger_words
        meta["ss_tag_frequency"] = json.dumps({"hyperlora": {trigger_words.strip(" ,"): 1}})
    meta.update({k: v if isinstance(v, str) else json.dumps(v) for k, v in (metadata or {}).items()})
    tensors = {k: (v.to(dtype) if v.is_floating_point() and not k.endswith(".alpha") else v) for k, v in lora.items()}
    return tensors, meta


def save_lora(
    lora: LoRA,
    path: str | os.PathLike,
    dtype: torch.dtype = torch.float16,
    metadata: dict[str, str] | None = None,
    overwrite: bool = False,
    source: str | None = None,
    trigger_words: str | None = None,
    base_metadata: dict[str, str] | None = None,
) -> Path:
    """Write a kohya `.safetensors` LoRA (see `lora_file`); never overwrites by default, and the
    check is atomic: of two processes saving to one name, one gets an error, no file is lost."""
    tensors, meta = lora_file(lora, dtype, metadata, source, trigger_words, base_metadata)
    return save_tensors_atomic(tensors, path, meta, overwrite=overwrite)
