"""Toy Encode Base (the Base condition of toy photos) on the shipped world: it reads the background and the
clothes, not the face, and what it reads decides the Base-LoRA that Generate Base LoRA makes.

Photos are rendered by the world's own generator: two identities that differ in every attribute, each
on the same background/pattern/shirt, and the first identity on a second, different base. Distances are
relative, so the checks hold whatever the encoder's scale.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from hyperlora_core.toy import world
from hyperlora_core.toy.files import BUILTIN_WORLD

pytestmark = pytest.mark.usefixtures("one_thread")


def _other_identity(identity: int) -> int:
    """An identity that differs from `identity` in every attribute."""
    attrs = world.identity_attributes(identity)
    return world.identity_index([(a + 1) % n for a, n in zip(attrs, world.ATTRIBUTE_SIZES)])


@pytest.fixture(scope="module")
def photos() -> torch.Tensor:
    """[4, 32, 32, 3] IMAGE: identity A on base 1, identity B on base 1, A on base 2, B on base 2."""
    rng = np.random.default_rng(3)
    a = int(world.heldout_identities()[0])
    b = _other_identity(a)
    base_1 = world.sample_base(rng, factors=(0, 1, 2))  # red background, stripes, green shirt
    base_2 = dataclasses.replace(world.sample_base(rng, factors=(5, 2, 6)),  # blue background, dots, black shirt
                                 dx=base_1.dx, dy=base_1.dy)  # the same pose: only the named factors change
    images = np.stack([world.render(a, base_1), world.render(b, base_1), world.render(a, base_2), world.render(b, base_2)])
    return torch.from_numpy(images).float() / 255.0


@pytest.fixture(scope="module")
def nodes() -> dict:
    """Our registered node classes, loaded the way ComfyUI loads the pack."""
    from fixtures.pack import load_pack

    return load_pack("auto")[1]


def _run(cls, **inputs) -> tuple:
    from fixtures.nodes_env import run_node

    return run_node(cls, **inputs)[0]


def _detail(images: torch.Tensor, region: torch.Tensor) -> float:
    """Mean absolute difference to the 3x3 local mean inside `region`: edges and small features, not tone."""
    x = images.permute(0, 3, 1, 2)
    local = torch.nn.functional.avg_pool2d(torch.nn.functional.pad(x, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
    return (x - local).abs().sum(1)[:, region].mean().item()


def _dist(x: torch.Tensor, i: int, j: int) -> float:
    return (x[i] - x[j]).flatten().norm().item()


def test_toy_encode_base_blurs_the_face_out_of_what_it_encodes(nodes, photos):
    TOY_ENCODE, TOY_ENCODE_BASE = nodes["HyperLoRAToyEncode"], nodes["HyperLoRAToyEncodeBase"]
    base_cond, crops = _run(TOY_ENCODE_BASE, photos=photos, world=BUILTIN_WORLD, weights="")
    id_cond, _ = _run(TOY_ENCODE, photos=photos, world=BUILTIN_WORLD, weights="")
    face = torch.from_numpy(world.face_mask() > 0.99)
    # inside the face disc the crops keep a tone (colour survives a blur, as in the published crop) but no
    # detail: eyes, mouth and hair edges are gone
    assert _detail(crops, face) < 0.3 * _detail(photos, face), (_detail(crops, face), _detail(photos, face))
    # away from the face the crops are the photos: background and clothes are kept
    yy, xx = np.mgrid[0 : world.IMAGE_SIZE, 0 : world.IMAGE_SIZE] + 0.5
    far = torch.from_numpy(np.hypot(xx - world.IMAGE_SIZE * 0.5, yy - world.IMAGE_SIZE * 0.45) > world.IMAGE_SIZE * 0.4)
    assert far.sum() > 0.4 * far.numel() and torch.allclose(crops[:, far], photos[:, far], atol=0.02)
    # what it encodes is those crops: the Base tokens are the world's CLIP analogue of the blurred crops (the
    # tokens of the unblurred photos differ from these by 0.35-0.45 of the two bases' distance)
    from hyperlora_core.toy.conditions import load_conditioner
    from hyperlora_core.toy.files import resolve_world

    t = base_cond.clip_tokens
    with torch.no_grad():
        of_crops = load_conditioner(resolve_world(BUILTIN_WORLD)).clip.penultimate(crops.permute(0, 3, 1, 2))
    assert (t - of_crops).flatten(1).norm(dim=1).max() < 0.01 * _dist(t, 0, 2), "the Base tokens are not the crops'"
    # the Base tokens move with the base, hardly with the face; the ID tokens do the opposite
    assert _dist(t, 0, 1) < 0.5 * _dist(t, 0, 2), (_dist(t, 0, 1), _dist(t, 0, 2))
    assert _dist(t, 2, 3) < 0.5 * _dist(t, 1, 3), (_dist(t, 2, 3), _dist(t, 1, 3))
    e = id_cond.id_embeds
    assert _dist(e, 0, 2) < 0.5 * _dist(e, 0, 1), (_dist(e, 0, 2), _dist(e, 0, 1))


def test_toy_encode_base_decides_the_base_lora(nodes, photos):
    """Generate Base LoRA's result follows the Base photos' background and clothes, not the person in them."""
    GENERATE_BASE, TOY_ENCODE_BASE = nodes["HyperLoRAGenerateBase"], nodes["HyperLoRAToyEncodeBase"]
    TOY_LOADER = nodes["HyperLoRAToyWorldLoader"]
    *_, hyper = _run(TOY_LOADER, world=BUILTIN_WORLD)
    loras = []
    for k in range(4):
        cond, _ = _run(TOY_ENCODE_BASE, photos=photos[k : k + 1], world=BUILTIN_WORLD, weights="")
        (lora,) = _run(GENERATE_BASE, hyper_lora=hyper, base_cond=cond)
        loras.append(torch.cat([v.flatten().float() for _, v in sorted(lora.items())]))
    flat = torch.stack(loras)
    size = flat.norm(dim=1).mean().item()
    assert _dist(flat, 0, 2) > 0.05 * size, "a different background and shirt gave (nearly) the same Base-LoRA"
    assert _dist(flat, 0, 1) < 0.5 * _dist(flat, 0, 2), (_dist(flat, 0, 1), _dist(flat, 0, 2))
    assert _dist(flat, 2, 3) < 0.5 * _dist(flat, 1, 3), (_dist(flat, 2, 3), _dist(flat, 1, 3))
