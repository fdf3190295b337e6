"""The shipped toy HyperLoRA transfers identity to people it never saw (the end-to-end proof).

Held-out identities (never used by any training stage), reference photos with other backgrounds,
clothes and poses; samples from the EMPTY caption, so only the LoRA can carry identity; judged by
the attribute classifier, a network the hypernetwork never reads. Measured through the code a
user's graph runs: `generate_id_lora` -> `apply_lora` (ComfyUI weight patches) -> KSampler
(`comfy.sample.sample`) -> the toy VAE's decode. The batched sampler the build's curve uses (the
trainer's per-sample hooks + the bridge's Euler) is checked against it on every one of them.

"""

from __future__ import annotations

import pytest
import torch

from hyperlora_core.toy import world

IDENTITIES = 48
# Thresholds sit far from the measured values (48 identities x 6 attributes = 288 judgements, one
# judgement = 0.0035): another CPU's rounding may flip a few near-tie judgements. Measured for the shipped
# world's build (64 identities, the batched sampler): LoRA from 1 photo 0.61-0.63 over the last checkpoints,
# no LoRA 0.284 (chance 0.292).
HELDOUT_MATCH_MIN = 0.55
pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: a second thread only fights other jobs


@pytest.fixture(scope="module")
def toy():
    from hyperlora_core.toy.world_loader import ToyWorld

    return ToyWorld.load()


@pytest.fixture(scope="module")
def held(toy):
    from hyperlora_core.toy.evaluate import HeldoutSet

    return HeldoutSet.make(toy.conditioner, count=IDENTITIES, refs=4)


@pytest.fixture(scope="module")
def result(toy):
    """The KSampler-path table: no LoRA, LoRA from 1 photo, LoRA from 4 photos (same noise)."""
    from hyperlora_core.toy.evaluate import evaluate

    return evaluate(toy, identities=IDENTITIES, refs=(1, 4))


def test_lora_lifts_heldout_identity_match_far_above_no_lora(result):
    none, one = result.row("no LoRA", 0, 0.0), result.row("ID-LoRA", 1)
    assert none.mean < world.CHANCE_MATCH + 0.1  # about 0.30: the empty caption carries no identity
    assert one.mean >= HELDOUT_MATCH_MIN, f"held-out match with a 1-photo LoRA {one.mean:.3f} (no LoRA {none.mean:.3f})"
    assert one.all6 > none.all6 + 0.05
    # every attribute moves towards the reference, not just the easy ones
    gain = one.matches.mean(0) - none.matches.mean(0)
    assert (gain > 0.08).all(), dict(zip(world.ATTRIBUTE_NAMES, gain.round(2)))


def test_four_references_cost_at_most_a_small_loss(result):
    """The paper's claim "more photos help" is not established on the toy world: on these 48 identities 4 photos
    measured +0.000 over 1, paired 95 % interval [-0.021, +0.021] (not distinguishable). What is asserted is the
    weaker claim the interval supports with room for another CPU's rounding (one judgement = 0.0035): averaging
    4 photos in token space loses at most 0.06 against 1 photo, and 4 photos alone clear the held-out bound."""
    from hyperlora_core.eval.intervals import difference_interval

    one, four = result.row("ID-LoRA", 1), result.row("ID-LoRA", 4)
    gain = difference_interval(four.matches, one.matches)
    assert gain.low > -0.06, f"4 photos lose more than 0.06 against 1: {gain}"
    assert four.mean >= HELDOUT_MATCH_MIN


def test_batched_hook_sampler_gives_the_ksampler_path_images(toy, held, result):
    """The build's held-out curve samples many identities in one batch (per-sample LoRA hooks, the
    bridge's Euler); on all 48 identities, with and without a LoRA, it makes the KSampler path's images."""
    from hyperlora_core.toy.evaluate import HookedSampler

    assert list(held.identities) == list(result.identities)
    with HookedSampler(toy, held) as sampler:
        for label, hl, refs in (("no LoRA", None, 1), ("ID-LoRA x1", toy.hyperlora, 1), ("ID-LoRA x4", toy.hyperlora, 4)):
            batched = (sampler.images(hl, refs=refs).permute(0, 2, 3, 1) * 255).round()  # the table's uint8 images
            diff = (batched - torch.from_numpy(result.images[label]).float()).abs()
            # measured: identical but for one level on a handful of the 147,456 values
            assert diff.max() <= 8 and diff.mean() < 0.01, (label, diff.max().item(), diff.mean().item())


def test_lora_follows_the_reference_not_the_identity_slot(toy, held):
    """Shuffled control: LoRAs of identity i-1 used for identity i match the donor, not the target."""
    from hyperlora_core.toy.evaluate import HeldoutSet, HookedSampler, match

    n = 16
    roll = lambda t: torch.roll(t[:n], 1, dims=0)  # noqa: E731
    shuffled = HeldoutSet(held.identities[:n], held.attributes[:n], roll(held.references), roll(held.clip_tokens),
                          roll(held.id_embeds))
    with HookedSampler(toy, shuffled) as sampler:
        images = sampler.images(toy.hyperlora)
    donor = match(toy.judge, images, roll(held.attributes)).mean()
    target = match(toy.judge, images, held.attributes[:n]).mean()
    assert donor > target + 0.25
