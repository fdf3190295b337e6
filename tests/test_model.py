"""`HyperLoRA.generate_id_lora` against an independent computation of the published semantics."""

from __future__ import annotations

import pytest
import torch
from reference_impl import reference_id_lora

from hyperlora_core import HyperLoRA, HyperLoRAError
from hyperlora_core.standins import random_hyperlora, small_config


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ckpt")
    random_hyperlora(small_config(), seed=3).save_pretrained(folder, dtype=torch.float32)
    return folder, HyperLoRA.from_pretrained(folder)


def _conditions(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    clip = torch.randn(n, 257, 1024, generator=g)
    ids = torch.nn.functional.normalize(torch.randn(n, 512, generator=g), dim=-1)
    return clip, ids


def _max_diff(a, b):
    assert a.keys() == b.keys()
    return max((a[k].float() - b[k].float()).abs().max().item() for k in a)


@pytest.mark.parametrize("photos,weights", [(1, None), (2, None), (3, [0.2, 0.5, 0.3])])
def test_generate_id_lora_matches_reference(published, photos, weights):
    folder, hl = published
    clip, ids = _conditions(photos, seed=photos)
    ours = hl.generate_id_lora(clip, ids, weights=weights)
    ref = reference_id_lora(folder, clip, ids, weights)
    assert len(ours) == 140 * 4 * 3
    assert _max_diff(ours, ref) < 1e-5
    key = "lora_unet_mid_block_attentions_0_transformer_blocks_0_attn2_to_k"
    assert ours[f"{key}.lora_down.weight"].shape == (4, 2048)
    assert ours[f"{key}.lora_up.weight"].shape == (1280, 4)
    assert ours[f"{key}.alpha"].item() == 2.0


def test_weights_change_result_and_equal_weights_reproduce_mean(published):
    _, hl = published
    clip, ids = _conditions(2, seed=9)
    plain = hl.generate_id_lora(clip, ids)
    equal = hl.generate_id_lora(clip, ids, weights=[1.0, 1.0])
    skewed = hl.generate_id_lora(clip, ids, weights=[1.0, 0.0])
    first_only = hl.generate_id_lora(clip[:1], ids[:1])
    assert _max_diff(plain, equal) < 1e-6
    assert _max_diff(skewed, first_only) < 1e-5
    assert _max_diff(plain, first_only) > 1e-3


def test_fp16_storage_computes_in_fp32_on_cpu(published, tmp_path):
    folder, hl32 = published
    hl16 = HyperLoRA.from_pretrained(folder, dtype=torch.float16)
    assert hl16.id_basis.down["in640"].dtype == torch.float16
    assert hl16.resampler.latents.dtype == torch.float32
    clip, ids = _conditions(2, seed=4)
    a, b = hl32.generate_id_lora(clip, ids), hl16.generate_id_lora(clip, ids)
    assert all(v.dtype == torch.float32 for v in b.values())
    assert _max_diff(a, b) < 2e-3  # only the basis storage was rounded to fp16


def test_base_lora_generation(tmp_path):
    model = random_hyperlora(small_config(base_rank=2), seed=5)
    model.save_pretrained(tmp_path, dtype=torch.float32)
    hl = HyperLoRA.from_pretrained(tmp_path)
    assert hl.config.base_rank == 2 and hl.config.base_resampler.num_conditions == 1
    base = hl.generate_base_lora(torch.randn(2, 257, 1024))
    key = "lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn1_to_q"
    assert base[f"{key}.lora_down.weight"].shape == (2, 640)
    assert base[f"{key}.alpha"].item() == 1.0


@pytest.mark.parametrize(
    "clip,ids,message",
    [
        (torch.randn(1, 257, 768), torch.randn(1, 512), "clip_tokens must be"),
        (torch.randn(2, 257, 1024), torch.randn(1, 512), "must pair up"),
        (torch.randn(1, 257, 1024), torch.randn(1, 128), "id_embeds must be"),
        (torch.full((1, 257, 1024), float("nan")), torch.randn(1, 512), "NaN"),
        (torch.randn(0, 257, 1024), torch.randn(0, 512), "no photos"),
    ],
)
def test_bad_conditions_are_explained(published, clip, ids, message):
    _, hl = published
    with pytest.raises(HyperLoRAError, match=message):
        hl.generate_id_lora(clip, ids)


def test_bad_weights_are_explained(published):
    _, hl = published
    clip, ids = _conditions(2)
    with pytest.raises(HyperLoRAError, match="2 photos"):
        hl.generate_id_lora(clip, ids, weights=[1.0])
    with pytest.raises(HyperLoRAError, match="all zero"):
        hl.generate_id_lora(clip, ids, weights=[0.0, 0.0])
    with pytest.raises(HyperLoRAError, match="no Base-LoRA"):
        hl.generate_base_lora(clip)


def test_progress_runs_photo_by_photo_with_the_same_result(published):
    _, hl = published
    clip, ids = _conditions(3, seed=8)
    calls = []
    stepped = hl.generate_id_lora(clip, ids, weights=[1, 2, 3], progress=lambda done, total: calls.append((done, total)))
    assert calls == [(1, 4), (2, 4), (3, 4), (4, 4)]
    assert _max_diff(stepped, hl.generate_id_lora(clip, ids, weights=[1, 2, 3])) < 1e-5
