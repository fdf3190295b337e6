"""`finetune`: a generated LoRA refined on one person's photos, loadable by ComfyUI's own LoRA loader."""

from __future__ import annotations

import logging
from pathlib import Path

import comfy.sd
import numpy as np
import pytest
import torch
from fixtures.training import TINY_TRAIN_CONFIG as TINY
from PIL import Image
from safetensors.torch import load_file

from hyperlora_core.comfy_bridge.backbone import tiny_backbone
from hyperlora_core.comfy_bridge.diffusion import Denoiser
from hyperlora_core.errors import HyperLoRAError
from hyperlora_core.lora import save_lora
from hyperlora_core.standins import random_hyperlora, small_config
from hyperlora_core.train.config import load_config
from hyperlora_core.train.finetune import finetune

pytestmark = pytest.mark.usefixtures("one_thread")


def _photos(folder: Path, n: int = 4) -> Path:
    folder.mkdir()
    rng = np.random.default_rng(1)
    y, x = np.mgrid[0:80, 0:96] / 80.0
    for i in range(n):
        img = np.stack([0.5 + 0.4 * np.sin(6 * x + i), 0.3 + 0.2 * y, 0.6 - 0.3 * x], -1) + rng.normal(0, 0.02, (80, 96, 3))
        Image.fromarray((np.clip(img, 0, 1) * 255).astype(np.uint8)).save(folder / f"p{i}.png")
    (folder / "p0.txt").write_text("a photo of a person smiling")
    return folder


def test_finetune_lowers_the_loss_and_loads_in_comfyui(tmp_path, caplog):
    bb = tiny_backbone(0)
    hl = random_hyperlora(small_config(modules=tuple(bb.profile.module_specs(bb.unet)), dim=32, depth=1, clip_dim=32,
                                       basis_size=4, rank=2), seed=3)
    gen = torch.Generator().manual_seed(0)
    lora = hl.generate_id_lora(torch.randn(2, 50, 32, generator=gen), torch.nn.functional.normalize(torch.randn(2, 512, generator=gen)))
    src = save_lora(lora, tmp_path / "generated.safetensors", metadata={"note": "kept"})
    cfg = load_config(TINY, [f"run_dir={tmp_path / 'run'}", f"data.shards={tmp_path}"])

    result = finetune(cfg, src, _photos(tmp_path / "photos"), tmp_path / "refined.safetensors", steps=12, lr=2e-3,
                      batch=2, backbone=bb)

    assert result["loss_after"] < result["loss_before"], result
    before, after = load_file(src), load_file(tmp_path / "refined.safetensors")
    assert after.keys() == before.keys()
    for key in before:
        assert after[key].dtype == before[key].dtype and after[key].shape == before[key].shape
        if key.endswith(".alpha"):
            assert torch.equal(after[key], before[key]), key
    changed = [k for k in before if k.endswith(".weight") and not torch.equal(after[k], before[k])]
    assert len(changed) == len([k for k in before if k.endswith(".weight")])

    den = Denoiser(bb.unet)
    x, sigma = torch.randn(1, 4, 8, 8, generator=gen), den.sigmas[[500]]
    ctx = torch.randn(1, 77, 64, generator=gen)
    inputs = den.inputs({"context": ctx, "pooled": torch.randn(1, 32, generator=gen),
                         "sizes": torch.tensor([[64.0, 64, 0, 0, 64, 64]])})
    with caplog.at_level(logging.WARNING):
        patched, _ = comfy.sd.load_lora_for_models(bb.unet, None, after, 1.0, 0)
    assert not [r for r in caplog.records if "not loaded" in r.getMessage()]
    assert len(patched.patches) == len(before) // 3  # every module of the file became a patch
    outs = []
    for mp in (bb.unet, patched):
        mp.patch_model()
        with torch.no_grad():
            outs.append(Denoiser(mp).denoise(x, sigma, inputs))
        mp.unpatch_model()
    assert (outs[0] - outs[1]).abs().max() > 1e-4


def test_finetune_rejects_a_lora_for_another_model(tmp_path):
    bb = tiny_backbone(0)
    bad = {"lora_unet_nowhere_to_q.lora_down.weight": torch.zeros(2, 4), "lora_unet_nowhere_to_q.lora_up.weight": torch.zeros(4, 2),
           "lora_unet_nowhere_to_q.alpha": torch.tensor(1.0)}
    src = save_lora(bad, tmp_path / "bad.safetensors")
    cfg = load_config(TINY, [f"run_dir={tmp_path / 'run'}", f"data.shards={tmp_path}"])
    with pytest.raises(HyperLoRAError, match="have no layer in this UNet"):
        finetune(cfg, src, _photos(tmp_path / "photos"), tmp_path / "out.safetensors", steps=1, backbone=bb)
    assert not (tmp_path / "out.safetensors").exists()
