"""Per-sample LoRAs on ComfyUI's own UNet, as forward hooks installed through a patcher injection.

ComfyUI's weight patches give one LoRA per forward. Training needs a different LoRA for every
sample of a batch (different identities), and gradients that reach the hypernetwork. So each
LoRA'd linear (the module table's layers, e.g. SDXL's attention projections) gets a forward hook that
adds `scale_b * up_b @ down_b @ x_b` per sample (the kohya "bypass" form; W is never copied),
as two batched matmuls per layer (see `LoRAHookState`).
The hooks are installed by a `PatcherInjection`, so they live exactly as long as the model is
patched and never leak into clones. Which LoRA is active is read from a `LoRAHookState` at call
time; the caller must keep it unchanged between a forward and its backward, because
non-reentrant gradient checkpointing re-runs the hooks during backward.
"""

from __future__ import annotations

from dataclasses import dataclass

import comfy.lora
import comfy.model_management
import comfy.patcher_extension
import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from ..config import ModuleSpec, module_layer_names
from ..errors import HyperLoRAError
from .bases import profile_of

INJECTION_KEY = "hyperlora_train"


@dataclass
class LoRASet:
    """One batched LoRA: per layer `downs[l] [B, r, in]`, `ups[l] [B, out, r]`, per-sample `scale [B]`."""

    downs: list[torch.Tensor]
    ups: list[torch.Tensor]
    scale: torch.Tensor


class LoRAHookState:
    """What the hooks add right now: zero or more LoRA sets (e.g. ID-LoRA and Base-LoRA).

    Assigning `sets` merges them once, outside the UNet's forward: per layer one `down [B, R, in]`
    and one `up [B, out, R]` with each sample's scale folded into `up`, the sets side by side
    along the rank (R = sum of their ranks). Every hooked layer then costs two batched matmuls
    (`bmm`, and `baddbmm` that adds into the layer's output) however many sets there are, in the
    forward, in the backward and at every sampler step.
    """

    def __init__(self, sets: list[LoRASet] | None = None) -> None:
        self._sets: list[LoRASet] = []
        self._merged: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.sets = sets or []

    @property
    def sets(self) -> list[LoRASet]:
        return self._sets

    @sets.setter
    def sets(self, sets: list[LoRASet]) -> None:
        self._sets = list(sets)
        self._merged = merge_sets(self._sets)

    def layer(self, index: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The merged (down, scaled up) of hooked layer `index`, or None when no LoRA is active."""
        return self._merged[index] if self._merged else None

    def clear(self) -> None:
        self.sets = []


def merge_sets(sets: list[LoRASet]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per layer: the sets' downs concatenated along the rank, and their ups times the per-sample
    scale, concatenated likewise; `up @ down` is then the scaled sum of every set's LoRA."""
    if not sets:
        return []
    layers = len(sets[0].downs)
    if any(len(s.downs) != layers or len(s.ups) != layers for s in sets):
        raise HyperLoRAError("every LoRA set must give factors for the same hooked layers.")
    merged = []
    for layer in range(layers):
        downs = [s.downs[layer] for s in sets]
        ups = [s.ups[layer] * s.scale.to(device=s.ups[layer].device, dtype=s.ups[layer].dtype).view(-1, 1, 1)
               for s in sets]
        merged.append((downs[0], ups[0]) if len(sets) == 1 else (torch.cat(downs, 1), torch.cat(ups, 2)))
    return merged


def lora_layer_paths(model_patcher, lora_names: list[str]) -> list[str]:
    """Module path (inside `model_patcher.model`) of each kohya LoRA module name, in the given order.

    Names go through ComfyUI's own LoRA key map, so diffusers- and LDM-style prefixes both work.
    """
    key_map = comfy.lora.model_lora_keys_unet(model_patcher.model, {})
    paths, missing = [], []
    for name in lora_names:
        weight = key_map.get(name)
        if weight is None or not weight.endswith(".weight"):
            missing.append(name)
            continue
        paths.append(weight[: -len(".weight")])
    if missing:
        raise HyperLoRAError(
            f"{len(missing)} of {len(lora_names)} LoRA layers have no layer in this UNet (first: {missing[:3]}). "
            "The LoRA or the hypernetwork's module list was made for a different UNet."
        )
    return paths


def layer_module_paths(model_patcher, specs: list[ModuleSpec] | tuple[ModuleSpec, ...]) -> list[str]:
    """Module paths of every LoRA'd linear of a module table, in basis layer order."""
    return lora_layer_paths(model_patcher, module_layer_names(specs))


def _lora_hook(layer: int, state: LoRAHookState):
    def hook(module: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor:
        merged = state.layer(layer)
        if merged is None:
            return output
        down, up = merged
        x = args[0]
        if x.shape[0] != down.shape[0]:  # e.g. cond + uncond stacked by a sampler
            reps = x.shape[0] // down.shape[0]
            if reps * down.shape[0] != x.shape[0]:
                raise HyperLoRAError(f"batch {x.shape[0]} is not a multiple of the {down.shape[0]} LoRAs.")
            down, up = down.repeat(reps, 1, 1), up.repeat(reps, 1, 1)
        flat = x.reshape(x.shape[0], -1, x.shape[-1])
        h = torch.bmm(flat, down.to(flat.dtype).transpose(1, 2))
        out = output.reshape(flat.shape[0], -1, output.shape[-1])
        return torch.baddbmm(out, h.to(out.dtype), up.to(out.dtype).transpose(1, 2)).view(output.shape)

    return hook


def _checkpointed(module: nn.Module):
    original = module.forward

    def forward(*args, **kwargs):
        if torch.is_grad_enabled():
            return checkpoint(original, *args, use_reentrant=False, **kwargs)
        return original(*args, **kwargs)

    return forward


class _OutOfPlace(torch.Tensor):
    """A tensor whose `+=` makes a new tensor: ComfyUI's FLUX blocks add their residuals in place (`x += ...`)
    after saving `x` for backward, which autograd refuses once a LoRA's gradient flows through them."""

    def __iadd__(self, other):
        return torch.add(self, other)


def _out_of_place_inputs(module: nn.Module, args: tuple, kwargs: dict):  # noqa: ARG001 - hook signature
    if not torch.is_grad_enabled():
        return None  # inference keeps ComfyUI's in-place adds (memory)

    def wrap(v):
        return v.as_subclass(_OutOfPlace) if type(v) is torch.Tensor else v

    return tuple(wrap(v) for v in args), {k: wrap(v) for k, v in kwargs.items()}


def _plain_outputs(module: nn.Module, args: tuple, output):  # noqa: ARG001 - hook signature
    def plain(v):
        return v.as_subclass(torch.Tensor) if isinstance(v, _OutOfPlace) else v

    return tuple(plain(v) for v in output) if isinstance(output, tuple) else plain(output)


def _checkpoint_targets(model_patcher) -> list[nn.Module]:
    """The base's checkpointing units (`BaseProfile.checkpoint_units`) in the model."""
    units = profile_of(model_patcher).checkpoint_units()
    return [m for m in model_patcher.model.diffusion_model.modules() if isinstance(m, units)]


def out_of_place_residuals(model_patcher) -> list:
    """While gradients are on, run the blocks of a base whose blocks add residuals in place (`inplace_residuals`:
    FLUX) with out-of-place adds, so every weight can train (the toy world trains its DiT whole); no-op for other
    bases. Returns the hook handles (`remove()` undoes it)."""
    if not profile_of(model_patcher).inplace_residuals:
        return []
    handles = []
    for m in _checkpoint_targets(model_patcher):
        handles.append(m.register_forward_pre_hook(_out_of_place_inputs, with_kwargs=True))
        handles.append(m.register_forward_hook(_plain_outputs))
    return handles


def install_lora_hooks(
    model_patcher,
    paths: list[str],
    state: LoRAHookState,
    gradient_checkpointing: bool = False,
) -> None:
    """Register the per-sample LoRA hooks on `paths` (layer order) and optional non-reentrant
    gradient checkpointing, as one injection: active once the patcher patches the model, gone on eject.
    """
    handles: list = []
    wrapped: list[nn.Module] = []

    def inject(mp) -> None:
        base = mp.model
        for layer, path in enumerate(paths):
            handles.append(base.get_submodule(path).register_forward_hook(_lora_hook(layer, state)))
        if gradient_checkpointing:
            for m in _checkpoint_targets(mp):
                m.forward = _checkpointed(m)
                wrapped.append(m)
        handles.extend(out_of_place_residuals(mp))  # around the (checkpointed) forward: a re-run sees unchanged inputs

    def eject(mp) -> None:  # noqa: ARG001 - ComfyUI passes the patcher
        while handles:
            handles.pop().remove()
        while wrapped:
            del wrapped.pop().forward  # drop the instance attribute: the class forward is back

    model_patcher.set_injections(INJECTION_KEY, [comfy.patcher_extension.PatcherInjection(inject, eject)])


def activate(model_patcher, device: torch.device | str) -> nn.Module:
    """Load the weights to `device` and run the injections; returns `model_patcher.model`.

    ComfyUI leaves a sampled clone's LoRA merged into the weights its clones share until it
    unloads that clone; the hooks would then add their LoRA on top of it. So every loaded model
    is unloaded first (its weights restored), as ComfyUI does before loading another."""
    comfy.model_management.unload_all_models()
    return model_patcher.patch_model(device_to=torch.device(device))


def attach_lora_hooks(model_patcher, paths: list[str], device: torch.device | str,
                      gradient_checkpointing: bool = False) -> LoRAHookState:
    """`install_lora_hooks` on `paths` and `activate`: returns the state whose LoRA sets the hooks add
    from now on (`deactivate` removes them)."""
    state = LoRAHookState()
    install_lora_hooks(model_patcher, paths, state, gradient_checkpointing)
    activate(model_patcher, device)
    return state


def deactivate(model_patcher) -> None:
    """Eject the hooks and restore the weights (the model is unchanged afterwards)."""
    model_patcher.unpatch_model()
