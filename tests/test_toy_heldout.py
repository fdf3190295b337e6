"""The shipped toy HyperLoRA transfers identity to people it never saw (the end-to-end proof).

Held-out identities (never used by any training stage), reference photos with other backgrounds,
clothes and poses; samples from the EMPTY caption, so only the LoRA can carry identity; judged by
the attribute classifier, a network the hypernetwork never reads. The batched sampler with
per-sample LoRA hooks is checked against ComfyUI's own path (LoRA file -> weight patches ->
KSampler) on a few identities, so the fast numbers are the numbers a user's graph gets.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hyperlora_core.toy import world

IDENTITIES = 48
# Thresholds sit far from the measured values (48 identities x 6 attributes = 288 judgements, one
# judgement = 0.0035): another CPU's rounding may flip a few near-tie judgements. Measured on the CI
# machine: no LoRA 0.264, LoRA from 1 photo 0.729, from 4 photos 0.736 (chance 0.292).
HELDOUT_MATCH_MIN = 0.6


@pytest.fixture(scope="module")
def toy():
    from hyperlora_core.toy.evaluate import ToyWorld

    return ToyWorld.load()


@pytest.fixture(scope="module")
def held(toy):
    from hyperlora_core.toy.hyper import HeldoutSet

    return HeldoutSet.make(toy.conditioner, count=IDENTITIES, refs=4)


@pytest.fixture(scope="module")
def matches(toy, held):
    """Judge matches `[I, 6]` for: no LoRA, LoRA from 1 photo, LoRA from 4 photos (same noise)."""
    from hyperlora_core.toy.hyper import LoRAHooks, generate_heldout

    captions = toy.clip.cond_stage_model.encoder
    hooks = LoRAHooks(toy.unet, toy.hyperlora.config)
    try:
        out = {"none": generate_heldout(None, None, toy.unet, captions, _raw_vae(toy), held)}
        for k in (1, 4):
            out[k] = generate_heldout(toy.hyperlora, hooks, toy.unet, captions, _raw_vae(toy), held, refs=k)
    finally:
        hooks.remove()
    return {k: (toy.judge.predict(v) == held.attributes).numpy() for k, v in out.items()}


def _raw_vae(toy):
    return toy.vae.first_stage_model


def test_lora_lifts_heldout_identity_match_far_above_no_lora(matches):
    none, one = matches["none"].mean(), matches[1].mean()
    assert none < world.CHANCE_MATCH + 0.15  # about 0.31: the empty caption carries no identity
    assert one >= HELDOUT_MATCH_MIN, f"held-out match with a 1-photo LoRA {one:.3f} (no LoRA {none:.3f})"
    assert matches[1].all(1).mean() > matches["none"].all(1).mean()
    # every attribute moves towards the reference, not just the easy ones
    assert (matches[1].mean(0) > matches["none"].mean(0) + 0.15).all()


def test_four_references_do_at_least_as_well_as_one(matches):
    assert matches[4].mean() >= matches[1].mean() - 0.05  # measured +0.007
    assert matches[4].mean() >= HELDOUT_MATCH_MIN


def test_lora_follows_the_reference_not_the_identity_slot(toy, held):
    """Shuffled control: LoRAs of identity i-1 used for identity i match the donor, not the target."""
    from hyperlora_core.toy.hyper import HeldoutSet, LoRAHooks, generate_heldout

    n = 16
    roll = lambda t: torch.roll(t[:n], 1, dims=0)  # noqa: E731
    shuffled = HeldoutSet(held.identities[:n], held.attributes[:n], roll(held.references), roll(held.clip_tokens),
                          roll(held.id_embeds))
    hooks = LoRAHooks(toy.unet, toy.hyperlora.config)
    try:
        images = generate_heldout(toy.hyperlora, hooks, toy.unet, toy.clip.cond_stage_model.encoder, _raw_vae(toy),
                                  shuffled)
    finally:
        hooks.remove()
    pred = toy.judge.predict(images)
    donor = (pred == roll(held.attributes)).float().mean().item()
    target = (pred == held.attributes[:n]).float().mean().item()
    assert donor > target + 0.25


def test_hook_sampler_matches_comfyui_lora_path(toy, held):
    """Per-sample hooks == the LoRA state dict through apply_lora + comfy.sample (KSampler)."""
    from hyperlora_core.comfy_bridge import apply_lora
    from hyperlora_core.toy.bridge import LATENT_SCALE, comfy_sample, euler_sample, toy_noise
    from hyperlora_core.toy.hyper import LoRAHooks, coefficients, empty_condition

    captions = toy.clip.cond_stage_model.encoder
    model = toy.unet.model
    for i in (0, 1):
        noise = toy_noise(1, 100 + i)
        lora = toy.hyperlora.generate_id_lora(held.clip_tokens[i, :2], held.id_embeds[i, :2])
        comfy_latent = comfy_sample(apply_lora(toy.unet, lora, 1.0), toy.encode_text(""), toy.encode_text(""), noise)
        hooks = LoRAHooks(toy.unet, toy.hyperlora.config)
        try:
            with torch.no_grad():
                groups = torch.zeros(2, dtype=torch.long)
                downs, ups = toy.hyperlora.lora_factors(
                    coefficients(toy.hyperlora, held.clip_tokens[i, :2], held.id_embeds[i, :2], groups, 1))
            hooks.set(downs, ups)
            ctx, adm = empty_condition(captions, model)
            hook_latent = euler_sample(model, noise, ctx, adm) / LATENT_SCALE
        finally:
            hooks.remove()
        diff = (hook_latent - comfy_latent).abs().max().item()
        assert diff < 0.05 * comfy_latent.abs().max().item(), f"identity {i}: max latent difference {diff:.4f}"
        a = toy.vae.decode(comfy_latent).permute(0, 3, 1, 2)
        b = toy.vae.decode(hook_latent).permute(0, 3, 1, 2)
        assert np.array_equal(toy.judge.predict(a).numpy(), toy.judge.predict(b).numpy())
