"""IDCondition / BaseCondition: shapes are checked, bookkeeping of photos and faces is kept."""

from __future__ import annotations

import pytest
import torch

from hyperlora_core.conditions import BaseCondition, IDCondition
from hyperlora_core.errors import HyperLoRAError


def _id(n: int, counts: tuple[int, ...], indices: tuple[int, ...], weights=None, space="antelopev2") -> IDCondition:
    return IDCondition(
        clip_tokens=torch.randn(n, 257, 1024),
        id_embeds=torch.randn(n, 512),
        weights=weights,
        face_crops=torch.rand(n, 8, 8, 3),
        photo_indices=indices,
        face_counts=counts,
        embedding_space=space,
        warnings=("photo 2 (64x64 px): no face found; skipped.",) if 0 in counts else (),
    )


def test_bookkeeping_and_summary():
    cond = _id(2, (1, 0, 2), (0, 2))
    assert len(cond) == 2 and cond.has_face == (True, False, True)
    assert cond.summary() == "photo 1: 1 face (used); photo 2: 0 faces (skipped); photo 3: 2 faces (used)"


def test_shapes_are_checked():
    with pytest.raises(HyperLoRAError, match="at least one photo with a face"):
        _id(0, (0,), ())
    with pytest.raises(HyperLoRAError, match=r"id_embeds must have 2 dimensions and 2 rows; got \[3, 512\]"):
        IDCondition(torch.randn(2, 257, 1024), torch.randn(3, 512), None, torch.rand(2, 8, 8, 3), (0, 1), (1, 1))
    with pytest.raises(HyperLoRAError, match="weights must have 1 dimensions and 2 rows"):
        _id(2, (1, 1), (0, 1), weights=torch.ones(3))
    with pytest.raises(HyperLoRAError, match="crops must have 4 dimensions"):
        BaseCondition(torch.randn(1, 257, 1024), None, torch.rand(8, 8, 3), (0,), (1,))


def test_base_condition():
    base = BaseCondition(torch.randn(2, 257, 1024), torch.tensor([1.0, 0.5]), torch.rand(2, 8, 8, 3), (1, 2), (0, 1, 3))
    assert base.has_face == (False, True, True) and "photo 3: 3 faces (used)" in base.summary()


def test_face_pack_check():
    cond = _id(1, (1,), (0,), space="buffalo_l")
    with pytest.raises(HyperLoRAError, match='trained on "antelopev2" face embeddings'):
        cond.check_face_pack("antelopev2")
    cond.check_face_pack("antelopev2", allow_mismatch=True)
    cond.check_face_pack("buffalo_l")
