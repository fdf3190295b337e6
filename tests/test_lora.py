"""LoRA arithmetic is exact in the mode it claims, and saving is safe."""

from __future__ import annotations

import pytest
import torch
from safetensors import safe_open

from hyperlora_core import HyperLoRAError
from hyperlora_core.lora import (
    add_loras,
    delta_weight,
    interpolate_loras,
    mix_loras,
    save_lora,
    scale_lora,
    slider_lora,
)

P = "lora_unet_x_to_q"


def _lora(seed, rank=4, n_in=6, n_out=5):
    g = torch.Generator().manual_seed(seed)
    return {f"{P}.lora_down.weight": torch.randn(rank, n_in, generator=g),
            f"{P}.lora_up.weight": torch.randn(n_out, rank, generator=g),
            f"{P}.alpha": torch.tensor(rank * 0.5)}


def test_delta_mode_is_exact_weighted_sum():
    a, b = _lora(0), _lora(1)
    mixed = mix_loras([a, b], [0.3, 0.7], "delta")
    assert torch.allclose(delta_weight(mixed, P), 0.3 * delta_weight(a, P) + 0.7 * delta_weight(b, P), atol=1e-5)
    assert torch.allclose(delta_weight(add_loras(a, b), P), delta_weight(a, P) + delta_weight(b, P), atol=1e-5)
    assert torch.allclose(delta_weight(slider_lora(a, b, 2.0), P), 2 * (delta_weight(b, P) - delta_weight(a, P)), atol=1e-5)
    assert torch.allclose(delta_weight(scale_lora(a, -0.5), P), -0.5 * delta_weight(a, P), atol=1e-6)


def test_factor_mode_interpolates_factors_and_keeps_rank():
    a, b = _lora(0), _lora(1)
    mid = interpolate_loras(a, b, 0.25)
    assert mid[f"{P}.lora_down.weight"].shape == (4, 6)
    assert torch.allclose(mid[f"{P}.lora_down.weight"], 0.75 * a[f"{P}.lora_down.weight"] + 0.25 * b[f"{P}.lora_down.weight"])
    assert torch.equal(interpolate_loras(a, b, 0.0)[f"{P}.lora_up.weight"], a[f"{P}.lora_up.weight"])
    with pytest.raises(HyperLoRAError, match="same rank"):
        mix_loras([a, _lora(2, rank=2)], [0.5, 0.5], "factors")


def test_save_writes_kohya_metadata_and_never_overwrites(tmp_path):
    path = save_lora(_lora(0), tmp_path / "id.safetensors", source="ckpt", trigger_words="fcsks fxhks fhyks, ")
    with safe_open(str(path), "pt") as f:
        meta = f.metadata()
        assert f.get_tensor(f"{P}.lora_down.weight").dtype == torch.float16
        assert f.get_tensor(f"{P}.alpha").item() == 2.0
    assert meta["ss_network_dim"] == "4" and meta["ss_network_alpha"] == "2.0" and meta["hyperlora.source"] == "ckpt"
    assert meta["hyperlora.trigger_words"] == "fcsks fxhks fhyks, "
    with pytest.raises(HyperLoRAError, match="already exists"):
        save_lora(_lora(1), path)
    with pytest.raises(HyperLoRAError, match="not a kohya LoRA"):
        save_lora({"x": torch.zeros(1)}, tmp_path / "bad.safetensors")
    assert not (tmp_path / "bad.safetensors").exists()
