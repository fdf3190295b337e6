"""Per-sample LoRA forward hooks (comfy_bridge.lora_hooks) against ComfyUI's own LoRA patching."""

from __future__ import annotations

import pytest
import torch

from hyperlora_core.comfy_bridge.backbone import tiny_backbone
from hyperlora_core.comfy_bridge.diffusion import Denoiser
from hyperlora_core.comfy_bridge.lora_apply import apply_lora
from hyperlora_core.comfy_bridge.lora_hooks import (
    INJECTION_KEY,
    LoRAHookState,
    LoRASet,
    activate,
    deactivate,
    install_lora_hooks,
    layer_module_paths,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def _random_lora(specs, rank: int, seed: int):
    gen = torch.Generator().manual_seed(seed)
    downs, ups, sd = [], [], {}
    for spec in specs:
        for key, layer in zip(spec.layer_names(), spec.layers):
            d = torch.randn(rank, layer.in_features, generator=gen) * 0.3
            u = torch.randn(layer.out_features, rank, generator=gen) * 0.3
            sd[f"{key}.lora_down.weight"], sd[f"{key}.lora_up.weight"] = d, u
            sd[f"{key}.alpha"] = torch.tensor(rank * 0.5)
            downs.append(d)
            ups.append(u)
    return downs, ups, sd


def _inputs(den: Denoiser, batch: int):
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(batch, 4, 8, 8, generator=gen)
    sigma = den.sigmas[torch.tensor([300, 700])[:batch]]
    ctx = torch.randn(batch, 77, den.context_dim, generator=gen)
    pooled = torch.randn(batch, 32, generator=gen)
    inputs = den.inputs({"context": ctx, "pooled": pooled, "sizes": torch.tensor([[64.0, 64, 0, 0, 64, 64]] * batch)})
    return x, sigma, inputs


def _rows(inputs: dict, i: int) -> dict:
    return {k: v[i : i + 1] for k, v in inputs.items()}


def test_per_sample_hooks_equal_comfyui_weight_patches():
    bb = tiny_backbone(0)
    specs = bb.profile.module_specs(bb.unet)
    d1, u1, lora1 = _random_lora(specs, 2, 1)
    d2, u2, lora2 = _random_lora(specs, 2, 2)
    den = Denoiser(bb.unet)
    x, sigma, inputs = _inputs(den, 2)

    reference = []
    for i, lora in enumerate((lora1, lora2)):  # ComfyUI's own path: weight patches at strength 1
        patched = apply_lora(bb.unet, lora, 1.0)
        patched.patch_model()
        with torch.no_grad():
            reference.append(Denoiser(patched).denoise(x[i : i + 1], sigma[i : i + 1], _rows(inputs, i)))
        patched.unpatch_model()

    state = LoRAHookState()
    install_lora_hooks(bb.unet, layer_module_paths(bb.unet, specs), state)
    activate(bb.unet, "cpu")
    with torch.no_grad():
        plain = den.denoise(x, sigma, inputs)
        state.sets = [LoRASet([torch.stack(p) for p in zip(d1, d2)], [torch.stack(p) for p in zip(u1, u2)],
                              torch.full((2,), 0.5))]
        hooked = den.denoise(x, sigma, inputs)
    state.clear()
    deactivate(bb.unet)
    torch.testing.assert_close(hooked, torch.cat(reference), rtol=1e-4, atol=1e-4)
    assert (hooked - plain).abs().max() > 1e-2  # the LoRAs do something
    with torch.no_grad():  # ejected: no hooks left behind
        torch.testing.assert_close(den.model.apply_model(x, sigma, **inputs), plain)
    assert bb.unet.get_injections(INJECTION_KEY) is not None


def test_gradients_reach_the_factors_through_non_reentrant_checkpointing():
    bb = tiny_backbone(0)
    specs = bb.profile.module_specs(bb.unet)
    den = Denoiser(bb.unet)
    x, sigma, inputs = _inputs(den, 2)
    grads = {}
    for ckpt in (False, True):
        state = LoRAHookState()
        install_lora_hooks(bb.unet, layer_module_paths(bb.unet, specs), state, gradient_checkpointing=ckpt)
        activate(bb.unet, "cpu")
        bb.unet.model.requires_grad_(False)
        d, u, _ = _random_lora(specs, 2, 3)
        downs = [t.unsqueeze(0).repeat(2, 1, 1).requires_grad_() for t in d]
        ups = [t.unsqueeze(0).repeat(2, 1, 1).requires_grad_() for t in u]
        state.sets = [LoRASet(downs, ups, torch.full((2,), 0.5))]
        den.denoise(x, sigma, inputs).pow(2).mean().backward()
        state.clear()
        deactivate(bb.unet)
        grads[ckpt] = torch.cat([g.grad.flatten() for g in downs + ups])
    assert grads[False].abs().sum() > 0
    torch.testing.assert_close(grads[True], grads[False], rtol=1e-4, atol=1e-6)


def test_two_sets_with_different_ranks_and_scales_equal_both_weight_patches():
    """ID-LoRA (rank 2) + Base-LoRA (rank 1) merged along the rank give what ComfyUI gives for both
    LoRAs patched at their strengths, per sample (here sample 0 has the Base-LoRA off)."""
    bb = tiny_backbone(0)
    specs = bb.profile.module_specs(bb.unet)
    d_id, u_id, lora_id = _random_lora(specs, 2, 4)
    d_base, u_base, lora_base = _random_lora(specs, 1, 5)
    den = Denoiser(bb.unet)
    x, sigma, inputs = _inputs(den, 2)
    reference = []
    for i, base_strength in enumerate((0.0, 0.7)):
        patched = apply_lora(apply_lora(bb.unet, lora_id, 1.0), lora_base, base_strength)
        patched.patch_model()
        with torch.no_grad():
            reference.append(Denoiser(patched).denoise(x[i : i + 1], sigma[i : i + 1], _rows(inputs, i)))
        patched.unpatch_model()
    state = LoRAHookState()
    install_lora_hooks(bb.unet, layer_module_paths(bb.unet, specs), state)
    activate(bb.unet, "cpu")
    with torch.no_grad():
        state.sets = [
            LoRASet([t.unsqueeze(0).expand(2, -1, -1) for t in d_id],
                    [t.unsqueeze(0).expand(2, -1, -1) for t in u_id], torch.full((2,), 0.5)),
            LoRASet([t.unsqueeze(0).expand(2, -1, -1) for t in d_base],
                    [t.unsqueeze(0).expand(2, -1, -1) for t in u_base], torch.tensor([0.0, 0.35])),
        ]
        hooked = den.denoise(x, sigma, inputs)
    state.clear()
    deactivate(bb.unet)
    torch.testing.assert_close(hooked, torch.cat(reference), rtol=1e-4, atol=1e-4)
