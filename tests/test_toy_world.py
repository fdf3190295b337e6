"""The toy world's generator, split and captions (pure numpy/torch, no weights)."""

from __future__ import annotations

import numpy as np
import torch

from hyperlora_core.toy import world
from hyperlora_core.toy.caption import UNSPECIFIED, CaptionEncoder, caption_tokens, parse_caption, token_ids


def test_identity_index_round_trip_covers_all_identities():
    table = world.all_attributes()
    assert table.shape == (world.NUM_IDENTITIES, world.NUM_ATTRIBUTES) == (1728, 6)
    assert len({tuple(r) for r in table}) == 1728
    for i in (0, 1, 77, 1727):
        assert world.identity_index(world.identity_attributes(i)) == i
    assert abs(world.CHANCE_MATCH - np.mean([1 / 4, 1 / 4, 1 / 3, 1 / 4, 1 / 3, 1 / 3])) < 1e-12


def test_heldout_split_is_fixed_disjoint_and_covers_every_value_in_training():
    held, train = world.heldout_identities(), world.train_identities()
    assert len(held) == 346 and len(train) == 1382
    assert not set(held) & set(train)
    assert np.array_equal(np.sort(np.concatenate([held, train])), np.arange(1728))
    assert np.array_equal(held, world.heldout_identities())
    train_attrs = world.all_attributes()[train]
    for a, n in enumerate(world.ATTRIBUTE_SIZES):
        assert set(train_attrs[:, a]) == set(range(n))


def test_renders_are_deterministic_and_base_factors_vary():
    ids = [3, 900]
    a = world.render_set(ids, 3, seed=0)
    b = world.render_set(ids[::-1], 3, seed=0)
    assert a.images.shape == (6, 32, 32, 3) and a.images.dtype == np.uint8
    assert np.array_equal(a.images[:3], b.images[3:])  # a render does not depend on which others are asked for
    assert not np.array_equal(a.images[0], a.images[1])  # same identity, different base
    assert not np.array_equal(a.images, world.render_set(ids, 3, seed=1).images)
    assert (a.attributes[:3] == world.identity_attributes(3)).all()
    assert list(a.render_index) == [0, 1, 2, 0, 1, 2]
    # the face sits inside the mask for every pose shift: mask is 1 at the centre and 0 in the corners
    m = world.face_mask()
    assert m[14, 16] == 1.0 and m[0, 0] == 0.0 and m[31, 31] == 0.0


def test_identity_changes_the_face_not_the_background():
    base = world.Base(background=(10, 200, 30), pattern=0, clothing=2, dx=0, dy=0)
    x = world.render(world.identity_index((0, 0, 0, 0, 0, 0)), base).astype(int)
    y = world.render(world.identity_index((3, 0, 0, 0, 0, 0)), base).astype(int)  # skin only
    changed = np.abs(x - y).sum(-1) > 30
    assert changed[8:24, 10:22].mean() > 0.3  # the face moved
    assert not changed[:3].any() and not changed[:, :3].any()  # the background did not


def test_caption_parser_reads_phrases_and_ignores_everything_else():
    values = parse_caption("fcsks fxhks fhyks, a face, Red Hair,  smiling , nonsense")
    assert values == [UNSPECIFIED, UNSPECIFIED, UNSPECIFIED, 3, UNSPECIFIED, 0]
    assert parse_caption(world.caption((1, 2, 0, 3, 2, 1))) == [1, 2, 0, 3, 2, 1]
    empty = token_ids([None] * 6)
    assert caption_tokens(["", "a face", "fcsks fxhks fhyks, "]).tolist() == [empty] * 3
    ctx, pooled = CaptionEncoder()(caption_tokens(["", "a face, tan skin"]))
    assert ctx.shape == (2, 7, 64) and pooled.shape == (2, 64)
    assert not torch.equal(ctx[0], ctx[1])
