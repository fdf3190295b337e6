"""The shipped SDXL module table is what ComfyUI's SDXL UNet actually has; SDXL's batched `y` is ComfyUI's."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from hyperlora_core.comfy_bridge.bases import SDXL, sdxl

ROOT = Path(__file__).resolve().parents[1]


def test_shipped_sdxl_module_table_matches_comfyui():
    specs = SDXL.module_specs(SDXL.build(device="meta"))
    shipped = json.loads((ROOT / "models" / "sdxl_hyper_lora_modules.json").read_text())
    assert [(s.name, *s.attention_widths) for s in specs] == [
        (k, v["hidden_size"], v["cross_attention_dim"]) for k, v in shipped.items()
    ]
    assert len(specs) == 140
    assert sum(s.attention_widths[0] == 640 for s in specs) == 20  # 10 transformer blocks x attn1/attn2 at width 640
    assert specs[0].name == "lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn1"
    assert specs[-1].name.startswith("lora_unet_mid_block_attentions_0_transformer_blocks_9_attn2")


def test_tiny_sdxl_keeps_the_block_layout():
    specs = SDXL.module_specs(SDXL.build(sdxl.unet_config(**sdxl.TINY_OVERRIDES), device="meta"))
    assert len(specs) == 22  # one transformer block per attention level: 2+2 down, 3+3 up, 1 mid; x2
    assert {s.attention_widths[1] for s in specs} == {None, 64}
    assert {s.attention_widths[0] for s in specs} == {64, 128}


def test_the_batched_y_is_comfyuis_encode_adm_per_sample_bit_for_bit():
    """The profile's `y` for a batch (one call of the size embedder, which the trainer, the samplers and the toy
    world's UNet loops use) is what ComfyUI's `encode_adm` makes of each sample, exactly."""
    model = SDXL.build(SDXL.tiny_config(), device="cpu").model
    pooled = torch.randn(5, sdxl.TINY_TEXT_WIDTH, generator=torch.Generator().manual_seed(0))
    sizes = torch.tensor([[1024, 1024, 0, 0, 1024, 1024], [768, 1344, 12, 40, 1024, 1024], [128, 128, 0, 0, 128, 128],
                          [1, 2, 3, 4, 5, 6], [2048, 512, 100, 7, 960, 544]], dtype=torch.float32)
    embedded = SDXL.size_embedding(model, sizes)
    assert embedded.shape == (5, sdxl.SIZE_EMBEDDING)
    batched = SDXL.adm(model, pooled, sizes)
    for i in range(5):
        h, w, ct, cl, th, tw = sizes[i].tolist()
        one = model.encode_adm(pooled_output=pooled[i : i + 1], width=w, height=h, crop_w=cl, crop_h=ct,
                               target_width=tw, target_height=th)
        assert torch.equal(batched[i : i + 1], one), i
        assert torch.equal(embedded[i : i + 1], one[:, sdxl.TINY_TEXT_WIDTH :]), i
    inputs = SDXL.model_inputs(model, {"context": torch.zeros(5, 3, 64), "pooled": pooled, "sizes": sizes})
    assert torch.equal(inputs["y"], batched)
