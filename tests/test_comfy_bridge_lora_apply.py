"""Applying generated LoRAs through ComfyUI's own key map and patcher, on the real host."""

from __future__ import annotations

import comfy.model_management
import pytest
import torch

from hyperlora_core import HyperLoRAError
from hyperlora_core.comfy_bridge import apply_lora, unet_lora_key_map
from hyperlora_core.comfy_bridge.bases import SDXL, sdxl
from hyperlora_core.comfy_bridge.random_init import init_weights
from hyperlora_core.standins import random_hyperlora, small_config


def _conditions(n, width=1024, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 257, width, generator=g), torch.nn.functional.normalize(torch.randn(n, 512, generator=g), dim=-1)


# -- full SDXL size, meta device ----------------------------------------------------------------
@pytest.fixture(scope="module")
def sdxl_meta():
    return SDXL.build(device="meta")


@pytest.fixture(scope="module")
def sdxl_lora():
    hl = random_hyperlora(small_config(basis_size=4, rank=8, dim=32, depth=1, heads=1, id_tokens=2), seed=7)
    return hl.generate_id_lora(*_conditions(1))


def test_all_generated_keys_map_at_full_sdxl_size(sdxl_meta, sdxl_lora):
    assert len(sdxl_lora) == 1680
    key_map = unet_lora_key_map(sdxl_meta)
    names = {k.rsplit(".", 2)[0] if k.endswith(".weight") else k[: -len(".alpha")] for k in sdxl_lora}
    assert len(names) == 560 and all(n in key_map for n in names)
    patched = apply_lora(sdxl_meta, sdxl_lora, 0.85)
    assert len(patched.patches) == 560
    assert sdxl_meta.patches == {}  # the source ModelPatcher is untouched


def test_ldm_style_names_map_too(sdxl_meta, sdxl_lora):
    key_map = unet_lora_key_map(sdxl_meta)
    to_ldm = {}
    for name, weight_key in key_map.items():
        if name.startswith("lora_unet_") and "_blocks_" in name and "down_blocks" not in name and "up_blocks" not in name and "mid_block" not in name:
            to_ldm[weight_key] = name
    renamed = {}
    for key, value in sdxl_lora.items():
        prefix, _, suffix = key.partition(".")
        renamed[f"{to_ldm[key_map[prefix]]}.{suffix}"] = value
    assert any(k.startswith("lora_unet_input_blocks_4_1_transformer_blocks_0_attn1") for k in renamed)
    assert len(apply_lora(sdxl_meta, renamed, 1.0).patches) == 560


def test_unmapped_and_misshaped_keys_are_listed(sdxl_meta, sdxl_lora):
    bad = dict(sdxl_lora)
    bad["lora_unet_not_a_layer_to_q.lora_down.weight"] = torch.zeros(8, 4)
    bad["lora_unet_not_a_layer_to_q.lora_up.weight"] = torch.zeros(4, 8)
    with pytest.raises(HyperLoRAError, match=r"1 of 561 LoRA modules have no matching layer.*lora_unet_not_a_layer_to_q"):
        apply_lora(sdxl_meta, bad, 1.0)
    key = "lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn1_to_q.lora_down.weight"
    bad = dict(sdxl_lora)
    bad[key] = torch.zeros(8, 320)
    with pytest.raises(HyperLoRAError, match=r"makes a \[640, 320\] update but the model's"):
        apply_lora(sdxl_meta, bad, 1.0)


# -- tiny SDXL-architecture model with real weights ---------------------------------------------
@pytest.fixture(scope="module")
def tiny():
    model = SDXL.build(sdxl.unet_config(**sdxl.TINY_OVERRIDES), device="cpu")
    init_weights(model.model, seed=0)
    specs = tuple(SDXL.module_specs(model))
    hl = random_hyperlora(small_config(modules=specs, basis_size=4, rank=4, dim=32, depth=1, heads=1, id_tokens=2), seed=3)
    return model, hl


def _denoise(patcher, seed=0):
    comfy.model_management.load_models_gpu([patcher])
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(1, 4, 8, 8, generator=g)
    ctx = torch.randn(1, 77, 64, generator=g)
    y = torch.randn(1, 2816, generator=g)
    with torch.no_grad():
        return patcher.model.apply_model(x, torch.tensor([5.0]), c_crossattn=ctx, y=y)


def test_lora_changes_output_strength_zero_is_identical_source_unchanged(tiny):
    model, hl = tiny
    before = {k: v.clone() for k, v in model.model.state_dict().items()}
    bare = _denoise(model)
    lora = hl.generate_id_lora(*_conditions(1, seed=2))
    assert len(lora) == 88 * 3
    patched = _denoise(apply_lora(model, lora, 1.0))
    assert (patched - bare).abs().max() > 1e-4
    weaker = _denoise(apply_lora(model, lora, 0.5))
    assert (weaker - bare).abs().max() < (patched - bare).abs().max()
    zero = _denoise(apply_lora(model, lora, 0.0))
    assert torch.equal(zero, bare)
    again = _denoise(model)
    assert torch.equal(again, bare)
    after = model.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_patched_weights_are_exactly_w_plus_strength_alpha_over_rank_up_down(tiny):
    """What ComfyUI merges for every key the LoRA names: W + s * (alpha / r) * up @ down, nothing else."""
    model, hl = tiny
    lora = hl.generate_id_lora(*_conditions(1, seed=6))
    key_map = unet_lora_key_map(model)
    comfy.model_management.unload_all_models()
    before = {k: v.clone() for k, v in model.model.state_dict().items()}
    strength = 0.7
    comfy.model_management.load_models_gpu([apply_lora(model, lora, strength)])
    try:
        merged = {k: v.clone() for k, v in model.model.state_dict().items()}
    finally:
        comfy.model_management.unload_all_models()
    names = {k[: -len(".lora_down.weight")] for k in lora if k.endswith(".lora_down.weight")}
    assert len(names) == 88
    for name in names:
        down, up = lora[f"{name}.lora_down.weight"].float(), lora[f"{name}.lora_up.weight"].float()
        scale = strength * float(lora[f"{name}.alpha"]) / down.shape[0]
        key = key_map[name]
        torch.testing.assert_close(merged[key], before[key] + scale * (up @ down), rtol=1e-5, atol=1e-6)
    touched = {key_map[n] for n in names}
    assert all(torch.equal(merged[k], before[k]) for k in before if k not in touched)
    assert all(torch.equal(v, before[k]) for k, v in model.model.state_dict().items())  # restored after unload


def test_base_lora_strength_is_separate(tiny):
    model, _ = tiny
    specs = tuple(SDXL.module_specs(model))
    hl = random_hyperlora(small_config(modules=specs, basis_size=4, rank=4, dim=32, depth=1, heads=1, id_tokens=2, base_rank=2), seed=4)
    clip, ids = _conditions(1, seed=5)
    lora, base = hl.generate_id_lora(clip, ids), hl.generate_base_lora(clip)
    only_id = _denoise(apply_lora(model, lora, 1.0))
    both = _denoise(apply_lora(model, lora, 1.0, base_lora=base, base_strength=0.25))
    same = _denoise(apply_lora(model, lora, 1.0, base_lora=base, base_strength=0.0))
    assert torch.equal(only_id, same)
    assert (both - only_id).abs().max() > 1e-5
