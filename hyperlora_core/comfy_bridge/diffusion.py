"""The pieces of a training/sampling step, taken from ComfyUI's own model objects.

The loss is written in x0 space: `x = x0 + sigma * eps` (`noise_scaling`), the model returns its
x0 estimate (`apply_model` runs `calculate_input`, the model and `calculate_denoised`), so the same
code serves EPS, V and EDM checkpoints; objectives differ only by a weight on the x0 error. What the
model is conditioned on is its base profile's business (`bases`): a conditioning mapping becomes
`apply_model`'s keyword arguments through `Denoiser.inputs`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import comfy.sample
import comfy.samplers
import torch

from .bases import Conditioning, profile_of

TRAIN_TIMESTEPS = 1000
"""Training timesteps (the eps models' discrete schedule; flow schedules are sampled at as many)."""


class Denoiser:
    """Thin view of a ComfyUI `ModelPatcher`'s model as the functions a trainer needs."""

    def __init__(self, model_patcher) -> None:
        self.patcher = model_patcher
        self.model = model_patcher.model
        self.profile = profile_of(model_patcher)

    @property
    def sigmas(self) -> torch.Tensor:
        """The schedule at the trainer's `TRAIN_TIMESTEPS` timesteps (`train.loss.t_min`/`t_max` index it):
        SDXL's own 1000; a finer one (FLUX's flow schedule keeps 10000) taken at every n-th step, so timestep
        999 is still the noisiest."""
        sigmas = self.model.model_sampling.sigmas
        step = len(sigmas) // TRAIN_TIMESTEPS
        if step <= 1:
            return sigmas
        return sigmas[step - 1 :: step][:TRAIN_TIMESTEPS]

    @property
    def context_dim(self) -> int:
        return self.profile.context_width(self.model)

    def latent_in(self, latent: torch.Tensor) -> torch.Tensor:
        """VAE latents (as `VAE.encode` returns them) -> the model's latent space (x 0.13025 for SDXL)."""
        return self.model.process_latent_in(latent)

    def latent_out(self, latent: torch.Tensor) -> torch.Tensor:
        return self.model.process_latent_out(latent)

    def noisy(self, sigma: torch.Tensor, noise: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
        return self.model.model_sampling.noise_scaling(sigma, noise, x0)

    def inputs(self, cond: Conditioning) -> dict:
        """A batch's conditioning (the profile's keys) -> `apply_model`'s keyword arguments; computed once
        per batch, outside autocast, and handed to every `denoise` of it."""
        return self.profile.model_inputs(self.model, cond)

    def denoise(self, x: torch.Tensor, sigma: torch.Tensor, inputs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """The model's x0 estimate for noisy latents `x` at noise level `sigma [B]`, given `inputs`."""
        return self.model.apply_model(x, sigma, **inputs)

    def sampling_sigmas(self, steps: int, scheduler: str | None = None) -> torch.Tensor:
        """KSampler's sigmas for `steps` with `scheduler` (None: the base's, `BaseProfile.scheduler`)."""
        return comfy.samplers.calculate_sigmas(self.model.model_sampling, scheduler or self.profile.scheduler, steps)


@torch.no_grad()
def euler_sample(
    denoiser: Denoiser,
    noise: torch.Tensor,
    inputs: Mapping[str, torch.Tensor],
    uncond_inputs: Mapping[str, torch.Tensor] | None = None,
    steps: int = 20,
    cfg: float = 1.0,
    scheduler: str | None = None,
) -> torch.Tensor:
    """KSampler's "euler" from an empty latent, batched with per-sample conditioning; returns the
    denoised latents in the model's space (`Denoiser.latent_out` gives what KSampler outputs).

    The same arithmetic as `comfy.sample.sample` at denoise 1: the start noise is scaled as
    KSampler scales it (`noise_scaling` with its `max_denoise` rule), CFG is `uncond + (cond -
    uncond) * cfg` with cond and uncond in one batch, and at CFG 1 the uncond pass is skipped as
    ComfyUI does. What KSampler cannot do: every sample may carry its own conditioning (`inputs`, from
    `Denoiser.inputs`) and, through `lora_hooks`, its own LoRA (the hooks see the doubled batch and repeat
    each sample's LoRA).
    """
    sampling = denoiser.model.model_sampling
    sigmas = denoiser.sampling_sigmas(steps, scheduler).to(noise.device)
    max_denoise = math.isclose(float(sampling.sigma_max), float(sigmas[0]), rel_tol=1e-05) or float(sigmas[0]) > float(sampling.sigma_max)
    x = sampling.noise_scaling(sigmas[0], noise, torch.zeros_like(noise), max_denoise=max_denoise)
    guided = not math.isclose(cfg, 1.0)
    if guided and uncond_inputs is None:
        raise ValueError("euler_sample: CFG other than 1 needs the unconditional inputs.")
    both = {k: torch.cat([v, uncond_inputs[k]]) for k, v in inputs.items()} if guided else inputs
    for i in range(len(sigmas) - 1):
        if guided:
            s = sigmas[i].expand(x.shape[0] * 2)
            cond, uncond = denoiser.denoise(torch.cat([x, x]), s, both).chunk(2)
            denoised = uncond + (cond - uncond) * cfg
        else:
            denoised = denoiser.denoise(x, sigmas[i].expand(x.shape[0]), both)
        d = (x - denoised) / sigmas[i]
        x = x + d * (sigmas[i + 1] - sigmas[i])
    return sampling.inverse_noise_scaling(sigmas[-1], x)


def encode_prompt(clip, text: str) -> list:
    """ComfyUI CONDITIONING for a prompt, as `CLIPTextEncode` makes it."""
    cond, pooled = clip.encode_from_tokens(clip.tokenize(text), return_pooled=True)
    return [[cond, {"pooled_output": pooled}]]


def ksampler_noise(latent: torch.Tensor, seed: int) -> torch.Tensor:
    """The noise the KSampler node draws for `latent` and `seed`."""
    return comfy.sample.prepare_noise(latent, seed)


def ksample(model_patcher, positive: list, negative: list, latent: torch.Tensor, seed: int, steps: int = 20,
            cfg: float = 1.0, sampler: str = "euler", scheduler: str = "karras",
            noise: torch.Tensor | None = None) -> torch.Tensor:
    """What the KSampler node does at denoise 1 (`comfy.sample.sample`); returns the latents it outputs."""
    noise = ksampler_noise(latent, seed) if noise is None else noise
    return comfy.sample.sample(model_patcher, noise, steps, cfg, sampler, scheduler, positive, negative, latent,
                               disable_pbar=True, seed=seed)
