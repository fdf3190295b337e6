"""The stacked basis: published views, the batched mix, and the fp16-on-CPU path."""

from __future__ import annotations

import torch

from hyperlora_core.basis import LoRABasis

SHAPES = [(8, 8), (12, 8), (12, 8), (8, 8), (8, 16), (12, 16)]


def _filled(dtype=torch.float32, seed=0):
    b = LoRABasis(SHAPES, basis_size=5, rank=3, dtype=dtype)
    g = torch.Generator().manual_seed(seed)
    b.load_published(lambda layer, part: torch.randn(
        (5, SHAPES[layer][0], 3) if part == "down" else (5, 3, SHAPES[layer][1]), generator=g))
    return b


def test_published_views_round_trip():
    b = _filled()
    exported = {(layer, part): t for layer, part, t in b.iter_published()}
    c = LoRABasis(SHAPES, basis_size=5, rank=3)
    c.load_published(lambda layer, part: exported[(layer, part)])
    assert all(torch.equal(x, y) for x, y in zip(b.parameters(), c.parameters()))
    assert exported[(1, "down")].shape == (5, 12, 3) and exported[(4, "up")].shape == (5, 3, 16)
    assert set(b.down.keys()) == {"in8", "in12"} and set(b.up.keys()) == {"out8", "out16"}


def test_mix_equals_per_layer_einsum():
    b = _filled()
    g = torch.Generator().manual_seed(1)
    cd, cu = torch.randn(2, len(SHAPES), 5, generator=g), torch.randn(2, len(SHAPES), 5, generator=g)
    downs, ups = b.mix(cd, cu)
    for layer in range(len(SHAPES)):
        ref_down = torch.einsum("bk,kir->bri", cd[:, layer], b.published_down(layer))
        ref_up = torch.einsum("bk,kro->bor", cu[:, layer], b.published_up(layer))
        assert torch.allclose(downs[layer], ref_down, atol=1e-6)
        assert torch.allclose(ups[layer], ref_up, atol=1e-6)


def test_fp16_storage_is_mixed_in_fp32_in_chunks(monkeypatch):
    import hyperlora_core.basis as basis_mod

    monkeypatch.setattr(basis_mod, "_CHUNK_ELEMENTS", 1)  # force one layer per chunk
    b32 = _filled()
    b16 = LoRABasis(SHAPES, basis_size=5, rank=3, dtype=torch.float16)
    b16.load_state_dict({k: v.half() for k, v in b32.state_dict().items()})
    cd, cu = torch.randn(1, len(SHAPES), 5), torch.randn(1, len(SHAPES), 5)
    d16, u16 = b16.mix(cd, cu)
    ref = LoRABasis(SHAPES, basis_size=5, rank=3)
    ref.load_state_dict({k: v.half().float() for k, v in b32.state_dict().items()})
    d32, u32 = ref.mix(cd, cu)
    assert d16[0].dtype == torch.float32
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(d16 + u16, d32 + u32))


def test_training_init_and_gradients():
    b = LoRABasis(SHAPES, basis_size=5, rank=3)
    b.reset_for_training(torch.Generator().manual_seed(0))
    assert all(p.abs().sum() > 0 for p in b.down.values()) and all(p.abs().sum() == 0 for p in b.up.values())
    cd = torch.randn(2, len(SHAPES), 5, requires_grad=True)
    cu = torch.randn(2, len(SHAPES), 5, requires_grad=True)
    downs, ups = b.mix(cd, cu)
    loss = sum((u @ d).sum() for d, u in zip(downs, ups))
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in b.up.values())
