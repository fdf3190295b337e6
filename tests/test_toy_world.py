"""The toy world's generator, split and captions (pure numpy/torch, no weights)."""

from __future__ import annotations

import numpy as np
import torch

from hyperlora_core.toy import world
from hyperlora_core.toy.caption import SEQUENCE, UNSPECIFIED, CaptionEncoder, caption_tokens, parse_caption, token_ids


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
    assert values == [UNSPECIFIED, UNSPECIFIED, UNSPECIFIED, 3, UNSPECIFIED, 0] + [UNSPECIFIED] * 3
    assert parse_caption(world.caption((1, 2, 0, 3, 2, 1)))[:6] == [1, 2, 0, 3, 2, 1]
    empty = token_ids([None] * 6)
    assert len(empty) == SEQUENCE == 10
    assert caption_tokens(["", "a face", "fcsks fxhks fhyks, "]).tolist() == [empty] * 3
    ctx, pooled = CaptionEncoder()(caption_tokens(["", "a face, tan skin"]))
    assert ctx.shape == (2, 10, 64) and pooled.shape == (2, 64)
    assert not torch.equal(ctx[0], ctx[1])


def test_captions_name_background_pattern_and_shirt():
    """The base factors as a user writes them, in any order, and the phrases the world writes itself."""
    bg, pattern, shirt = (dict(zip(values, range(len(values)))) for _, values in world.BASE_FACTORS)
    assert parse_caption("red shirt, blue striped background")[6:] == [bg["blue"], pattern["striped"], shirt["red"]]
    assert parse_caption("dotted  Teal background")[6:] == [bg["teal"], pattern["dotted"], UNSPECIFIED]
    assert parse_caption("grey background")[6:] == [bg["grey"], UNSPECIFIED, UNSPECIFIED]
    assert parse_caption("blue striped dotted background, shirt, red hair shirt")[6:] == [UNSPECIFIED] * 3
    for factors in ((0, 0, 0), (7, 2, 7), (3, 1, 5)):
        text = world.caption(None, base=factors)
        assert parse_caption(text)[6:] == list(factors)
        assert token_ids([None] * 6, base=factors) == caption_tokens([text])[0].tolist()
    assert world.base_phrases((None, 2, None)) == ["dotted background"]


def test_named_base_factors_are_what_is_drawn():
    """A render's recorded background colour, pattern and shirt are the drawn ones, and every value occurs."""
    r = world.render_set(world.train_identities()[:40], 6, seed=0)
    f = r.base_factors
    assert f.shape == (240, 3)
    for k, n in enumerate(world.BASE_FACTOR_SIZES):
        assert set(f[:, k]) == set(range(n))
    corner = r.images[:, 0, 0].astype(int)  # the top-left pixel is background (pattern marks are darker)
    palette = np.array(world._BACKGROUNDS)
    plain = f[:, 1] == 0
    nearest = np.abs(corner[plain, None, :] - palette[None]).sum(-1).argmin(1)
    assert (nearest == f[plain, 0]).all()
    same = world.render(7, world.sample_base(np.random.default_rng(1), factors=(2, 1, 4)))
    assert world.sample_base(np.random.default_rng(1), factors=(2, 1, 4)).factors == (2, 1, 4)
    assert same.shape == (32, 32, 3)


def test_face_blur_keeps_background_and_clothes_and_removes_the_face():
    r = world.render_set([5, 1200], 2, seed=0)
    blurred = world.face_blurred(r.images).astype(int)
    images = r.images.astype(int)
    assert np.abs(blurred[:, :2] - images[:, :2]).max() <= 1  # top rows: background untouched
    assert np.abs(blurred[:, -2:] - images[:, -2:]).max() <= 1  # bottom rows: clothes untouched
    eyes = (slice(12, 17), slice(9, 23))
    assert images[:, eyes[0], eyes[1]].std(axis=(1, 2)).mean() > 2 * blurred[:, eyes[0], eyes[1]].std(axis=(1, 2)).mean()
    x = torch.from_numpy(r.images).permute(0, 3, 1, 2).float() / 255
    assert torch.allclose(world.face_blurred(tensor=x) * 255, torch.from_numpy(blurred).permute(0, 3, 1, 2).float(),
                          atol=0.51)
