"""The shipped SDXL module table is what ComfyUI's SDXL UNet actually has."""

from __future__ import annotations

import json
from pathlib import Path

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
