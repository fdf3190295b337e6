"""The pieces of an SDXL training/sampling step, taken from ComfyUI's own model objects.

The loss is written in x0 space: `x = x0 + sigma * eps` (`noise_scaling`), the model returns its
x0 estimate (`apply_model` runs `calculate_input`, the UNet and `calculate_denoised`), so the same
code serves EPS, V and EDM checkpoints; objectives differ only by a weight on the x0 error.
"""

from __future__ import annotations

import comfy.samplers
import torch


class Denoiser:
    """Thin view of a ComfyUI `ModelPatcher`'s model as the functions a trainer needs."""

    def __init__(self, model_patcher) -> None:
        self.patcher = model_patcher
        self.model = model_patcher.model

    @property
    def sigmas(self) -> torch.Tensor:
        """The discrete schedule, one sigma per training timestep (1000 for SDXL)."""
        return self.model.model_sampling.sigmas

    @property
    def context_dim(self) -> int:
        return int(self.model.model_config.unet_config["context_dim"])

    def latent_in(self, latent: torch.Tensor) -> torch.Tensor:
        """VAE latents (as `VAE.encode` returns them) -> the model's latent space (x 0.13025 for SDXL)."""
        return self.model.process_latent_in(latent)

    def latent_out(self, latent: torch.Tensor) -> torch.Tensor:
        return self.model.process_latent_out(latent)

    def noisy(self, sigma: torch.Tensor, noise: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
        return self.model.model_sampling.noise_scaling(sigma, noise, x0)

    def adm(self, pooled: torch.Tensor, sizes: torch.Tensor) -> torch.Tensor:
        """SDXL's `y`: pooled text + size embeddings, per sample.

        `sizes [B, 6]` = (height, width, crop_top, crop_left, target_height, target_width) in pixels.
        ComfyUI broadcasts one size over the batch, so this calls `encode_adm` per sample.
        """
        rows = []
        for i in range(pooled.shape[0]):
            h, w, ct, cl, th, tw = (float(v) for v in sizes[i].tolist())
            rows.append(
                self.model.encode_adm(
                    pooled_output=pooled[i : i + 1], width=w, height=h, crop_w=cl, crop_h=ct,
                    target_width=tw, target_height=th,
                )
            )
        return torch.cat(rows).to(pooled.device)

    def denoise(self, x: torch.Tensor, sigma: torch.Tensor, context: torch.Tensor, adm: torch.Tensor) -> torch.Tensor:
        """The model's x0 estimate for noisy latents `x` at noise level `sigma [B]`."""
        return self.model.apply_model(x, sigma, c_crossattn=context, y=adm)

    def sampling_sigmas(self, steps: int, scheduler: str = "karras") -> torch.Tensor:
        return comfy.samplers.calculate_sigmas(self.model.model_sampling, scheduler, steps)


@torch.no_grad()
def euler_sample(
    denoiser: Denoiser,
    noise: torch.Tensor,
    context: torch.Tensor,
    adm: torch.Tensor,
    uncond_context: torch.Tensor,
    uncond_adm: torch.Tensor,
    steps: int = 8,
    cfg: float = 4.0,
    scheduler: str = "karras",
) -> torch.Tensor:
    """Plain Euler with classifier-free guidance (cond and uncond in one batch); returns latents.

    Small and deterministic for preview grids during training; the hooks see a batch of 2B and
    repeat each sample's LoRA for both halves.
    """
    sigmas = denoiser.sampling_sigmas(steps, scheduler).to(noise.device)
    x = noise * sigmas[0]
    ctx = torch.cat([context, uncond_context])
    y = torch.cat([adm, uncond_adm])
    for i in range(len(sigmas) - 1):
        s = sigmas[i].expand(x.shape[0] * 2)
        den = denoiser.denoise(torch.cat([x, x]), s, ctx, y)
        cond, uncond = den.chunk(2)
        guided = uncond + cfg * (cond - uncond)
        d = (x - guided) / sigmas[i]
        x = x + d * (sigmas[i + 1] - sigmas[i])
    return x
