"""The hypernetwork under ComfyUI's model management (ModelPatcher + load_models_gpu)."""

from __future__ import annotations

import comfy.model_management as mm
import pytest
import torch

from hyperlora_core.comfy_bridge.model_management import HyperLoRAHolder, hyperlora_patcher, load_for_use, unwrap
from hyperlora_core.errors import HyperLoRAError
from hyperlora_core.standins import random_hyperlora, sdxl_modules, small_config


@pytest.fixture(scope="module")
def model():
    return random_hyperlora(small_config(modules=sdxl_modules()[:4], basis_size=4, rank=2, dim=32, depth=1), seed=3)


def _loaded(patcher) -> bool:
    return any(lm.model is patcher for lm in mm.current_loaded_models)


def test_patcher_loads_and_unloads_through_comfy(model):
    patcher = hyperlora_patcher(model)
    assert isinstance(patcher.model, HyperLoRAHolder) and unwrap(patcher) is model
    assert patcher.load_device == mm.get_torch_device() and patcher.offload_device == torch.device("cpu")
    params = sum(p.numel() * p.element_size() for p in model.parameters())
    assert patcher.model_size() >= params > 0  # ComfyUI sees every weight (it budgets VRAM with this)
    clip = torch.randn(2, 257, 1024)
    embeds = torch.nn.functional.normalize(torch.randn(2, 512), dim=-1)
    expected = model.generate_id_lora(clip, embeds)
    used = load_for_use(patcher)
    assert used is model and _loaded(patcher)
    assert model.device.type == mm.get_torch_device().type
    got = used.generate_id_lora(clip.to(used.device), embeds.to(used.device))
    assert got.keys() == expected.keys()
    for k in expected:
        torch.testing.assert_close(got[k].cpu(), expected[k])
    mm.unload_all_models()
    assert not _loaded(patcher)
    assert model.device == torch.device("cpu")  # offloaded, still usable
    assert model.generate_id_lora(clip, embeds).keys() == expected.keys()


def test_wrong_objects_are_refused(model):
    with pytest.raises(HyperLoRAError, match="expected a HyperLoRA model"):
        hyperlora_patcher(torch.nn.Linear(2, 2))
    with pytest.raises(HyperLoRAError, match="expected a HyperLoRA model patcher"):
        unwrap(object())
    assert unwrap(model) is model
