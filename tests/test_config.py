"""Module-table parsing and shape inference errors."""

from __future__ import annotations

import pytest

from hyperlora_core import HyperLoRAError
from hyperlora_core.config import HyperLoRAConfig, infer_id_projector, infer_resampler, parse_module_list


def test_module_table_is_validated():
    specs = parse_module_list({"a": {"hidden_size": 8, "cross_attention_dim": None}, "b": {"hidden_size": 8, "cross_attention_dim": 4}}, "m.json")
    assert [x.in_features for x in specs[1].layers] == [8, 4, 4, 8] and [x.in_features for x in specs[0].layers] == [8] * 4
    assert [x.suffix for x in specs[0].layers] == ["to_q", "to_k", "to_v", "to_out_0"] and specs[0].layers[3].key == "to_out"
    with pytest.raises(HyperLoRAError, match='m.json: entry "a" needs an integer "hidden_size"'):
        parse_module_list({"a": {"hidden": 8}}, "m.json")
    with pytest.raises(HyperLoRAError, match="expected a JSON object"):
        parse_module_list([], "m.json")


def _resampler_shapes(dim=16, inner=32, depth=2):
    shapes = {"latents": (1, 16, dim), "proj_in.weight": (dim, 8), "proj_in.bias": (dim,), "proj_out.weight": (4, dim)}
    for j in range(depth):
        shapes[f"layers.{j}.attn1.to_q.weight"] = (inner, dim)
        shapes[f"layers.{j}.ff.net.0.proj.weight"] = (3 * dim, dim)
    return shapes


def test_resampler_inference_and_errors():
    cfg = infer_resampler(_resampler_shapes(), "r.safetensors", dim_head=16)
    assert (cfg.dim, cfg.depth, cfg.heads, cfg.ff_mult, cfg.num_queries, cfg.input_dims) == (16, 2, 2, 3, 16, (8,))
    with pytest.raises(HyperLoRAError, match="not divisible by the head size 64; pass dim_head="):
        infer_resampler(_resampler_shapes(inner=48), "r.safetensors")
    shapes = _resampler_shapes()
    del shapes["latents"]
    with pytest.raises(HyperLoRAError, match="r.safetensors: key 'latents' is missing"):
        infer_resampler(shapes, "r.safetensors")
    with pytest.raises(HyperLoRAError, match="not a multiple of the token width"):
        infer_id_projector({"0.weight": (100, 512), "2.weight": (64,)}, "p.safetensors")


def test_config_json_round_trip():
    from hyperlora_core.standins import small_config

    cfg = small_config(base_rank=2)
    assert HyperLoRAConfig.from_json(cfg.to_json()) == cfg
