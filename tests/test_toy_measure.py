"""`toy/measure.py`: the shipped toy HyperLoRA transfers identity to people it never saw (the end-to-end proof),
and the batched sampler every toy measurement uses makes the KSampler path's images.

Held-out identities (never used by any training stage), reference photos with other backgrounds,
clothes and poses; samples from the EMPTY caption, so only the LoRA can carry identity; judged by
the attribute classifier, a network the hypernetwork never reads. Measured through the code a
user's graph runs: `generate_id_lora` -> `apply_lora` (ComfyUI weight patches) -> KSampler
(`comfy.sample.sample`) -> the toy VAE's decode. The batched sampler `measure` uses (the trainer's
per-sample hooks + the bridge's Euler) is checked against it on every one of them, and with ID + Base,
a caption and CFG.

"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from fixtures.toy import assert_hook_sampler_equals_ksampler

from hyperlora_core.toy import world

IDENTITIES = 48
# Thresholds sit far from the measured values (48 identities x 6 attributes = 288 judgements, one
# judgement = 0.0035): another CPU's rounding may flip a few near-tie judgements. Measured for the shipped
# world's build (64 identities, the batched sampler): LoRA from 1 photo 0.714-0.732 over the last 3 checkpoints,
# 0.732 [0.685, 0.781] at the end; no LoRA 0.273 (chance 0.292).
HELDOUT_MATCH_MIN = 0.65
pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: a second thread only fights other jobs


@pytest.fixture(scope="module")
def toy():
    from hyperlora_core.toy.world_loader import ToyWorld

    return ToyWorld.load()


@pytest.fixture(scope="module")
def held(toy):
    from hyperlora_core.toy.measure import Heldout

    return Heldout.make(toy.conditioner, count=IDENTITIES, refs=4)


@pytest.fixture(scope="module")
def judges(toy):
    from hyperlora_core.toy.measure import Judges

    return Judges.load(attribute=toy.judge)


CONDITIONS = ("no LoRA", 0), ("ID-LoRA x1", 1), ("ID-LoRA x4", 4)


@pytest.fixture(scope="module")
def result(toy, held, judges):
    """The KSampler-path table: no LoRA, LoRA from 1 photo, LoRA from 4 photos (same noise), judged."""
    from hyperlora_core.toy.measure import ID, Condition, Judgements, ksampler_images

    j = Judgements(held)
    for name, refs in CONDITIONS:
        j.add(name, ksampler_images(toy, held, Condition(name, (ID(refs),) if refs else ())), judges, keep=True)
    return j


def test_lora_lifts_heldout_identity_match_far_above_no_lora(result):
    none, one = result.mean("no LoRA"), result.mean("ID-LoRA x1")
    assert none < world.CHANCE_MATCH + 0.1  # about 0.30: the empty caption carries no identity
    assert one >= HELDOUT_MATCH_MIN, f"held-out match with a 1-photo LoRA {one:.3f} (no LoRA {none:.3f})"
    assert result.all6("ID-LoRA x1").mean() > result.all6("no LoRA").mean() + 0.05
    # every attribute moves towards the reference, not just the easy ones
    gain = result.identity["ID-LoRA x1"].mean(0) - result.identity["no LoRA"].mean(0)
    assert (gain > 0.08).all(), dict(zip(world.ATTRIBUTE_NAMES, gain.round(2)))
    assert result.difference("ID-LoRA x1", "no LoRA").low > 0.2


def test_four_references_cost_at_most_a_small_loss(result):
    """The paper's claim "more photos help" is not established on the toy world: on these 48 identities 4 photos
    measured +0.000 over 1, paired 95 % interval [-0.021, +0.021] (not distinguishable). What is asserted is the
    weaker claim the interval supports with room for another CPU's rounding (one judgement = 0.0035): averaging
    4 photos in token space loses at most 0.06 against 1 photo, and 4 photos alone clear the held-out bound."""
    gain = result.difference("ID-LoRA x4", "ID-LoRA x1")
    assert gain.low > -0.06, f"4 photos lose more than 0.06 against 1: {gain}"
    assert result.mean("ID-LoRA x4") >= HELDOUT_MATCH_MIN


def test_batched_hook_sampler_gives_the_ksampler_path_images(toy, held, judges, result):
    """`measure` samples many identities in one batch (per-sample LoRA hooks, the bridge's Euler); on all 48
    identities, with and without a LoRA, it makes the KSampler path's images."""
    from hyperlora_core.toy.measure import ID, Condition, measure

    batched = measure(toy, held, [Condition(name, (ID(refs),) if refs else ()) for name, refs in CONDITIONS], judges,
                      keep_images=True)
    for name, _ in CONDITIONS:
        diff = (torch.from_numpy(batched.images[name]).float() - torch.from_numpy(result.images[name]).float()).abs()
        # measured: identical but for one level on a handful of the 147,456 values
        assert diff.max() <= 8 and diff.mean() < 0.01, (name, diff.max().item(), diff.mean().item())


def test_lora_follows_the_reference_not_the_identity_slot(toy, held, judges):
    """Shuffled control: LoRAs of identity i-1 used for identity i match the donor, not the target."""
    import dataclasses

    from hyperlora_core.toy.measure import ID, Condition, Judgements, measure

    n = 16
    roll = lambda t: torch.roll(t[:n], 1, dims=0)  # noqa: E731
    sub = held.head(n)
    shuffled = dataclasses.replace(sub, clip_tokens=roll(held.clip_tokens), id_embeds=roll(held.id_embeds))
    images = measure(toy, shuffled, [Condition("donor's LoRA", (ID(1),))], judges, keep_images=True).images["donor's LoRA"]
    donor = Judgements(dataclasses.replace(sub, attributes=np.roll(sub.attributes, 1, axis=0))).add("x", images, judges)
    target = Judgements(sub).add("x", images, judges)
    assert donor.mean("x") > target.mean("x") + 0.25


def test_batched_sampler_gives_the_ksampler_images_with_base_caption_and_cfg(toy):
    """ID-LoRA + Base-LoRA from one photo at two strengths, an editing caption and CFG 2, and the bare model: the
    batch equals Apply (both LoRAs) -> KSampler -> VAEDecode per identity (`ksampler_images`, which builds the
    LoRA files the Generate nodes make)."""
    assert_hook_sampler_equals_ksampler(toy, identities=6)
