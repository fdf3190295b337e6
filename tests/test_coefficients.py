"""Averaging and normalising coefficient tokens."""

from __future__ import annotations

import pytest
import torch

from hyperlora_core import HyperLoRAError
from hyperlora_core.coefficients import group_mean, normalize, photo_weights, weighted_mean


def test_normalize_matches_published_formula():
    t = torch.randn(3, 5, 7)
    ref = t / torch.sqrt((t**2).sum(-1, keepdim=True) + 1e-8)
    assert torch.allclose(normalize(t), ref, atol=1e-7)
    assert torch.allclose(normalize(t).norm(dim=-1), torch.ones(3, 5), atol=1e-5)


def test_weighted_and_group_means():
    t = torch.randn(4, 2, 3)
    assert torch.allclose(weighted_mean(t), t.mean(0, keepdim=True))
    w = photo_weights([1, 3, 0, 0], 4)
    assert torch.allclose(weighted_mean(t, w)[0], 0.25 * t[0] + 0.75 * t[1], atol=1e-6)
    groups = torch.tensor([0, 1, 1, 0])
    g = group_mean(t, groups, 2)
    assert torch.allclose(g[0], (t[0] + t[3]) / 2) and torch.allclose(g[1], (t[1] + t[2]) / 2)


@pytest.mark.parametrize("weights,message", [([1.0], "2 photos"), ([-1.0, 2.0], ">= 0"), ([0.0, 0.0], "all zero"),
                                              ([float("nan"), 1.0], "finite")])
def test_bad_weights(weights, message):
    with pytest.raises(HyperLoRAError, match=message):
        photo_weights(weights, 2)
