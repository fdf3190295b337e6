"""One training step's maths: conditions -> per-sample LoRAs -> ComfyUI's SDXL -> weighted x0 loss.

`HyperStep` is the module handed to DDP / FSDP2: every use of the hypernetwork's parameters
happens inside its `forward`, which is what both wrappers need to synchronise and unshard.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass

import torch
from torch import nn

from ..coefficients import group_mean, normalize
from ..comfy_bridge.backbone import Backbone
from ..comfy_bridge.diffusion import Denoiser
from ..comfy_bridge.lora_hooks import LoRAHookState, LoRASet
from ..model import HyperLoRA
from .config import FitConfig, LossConfig
from .data import Batch

LORA_SCALE = 0.5
"""alpha / rank of the exported LoRAs (alpha = rank / 2): training uses the scale users get."""


def reference_coefficients(tokens: torch.Tensor, groups: torch.Tensor, num_groups: int, mode: str) -> torch.Tensor:
    """Per-target normalised coefficient tokens from per-photo tokens `[b, Q, K]`.

    other_photos: mean over the identity's other photos in the batch (the target itself when it
    is alone), so the LoRA must carry identity rather than copy the target photo.
    """
    if mode == "same_photo":
        return normalize(tokens)
    mean = group_mean(tokens, groups, num_groups)
    if mode == "same_identity":
        return normalize(mean[groups])
    n = torch.bincount(groups, minlength=num_groups)[groups].to(tokens.dtype).view(-1, 1, 1)
    others = (mean[groups] * n - tokens) / (n - 1).clamp_min(1)
    return normalize(torch.where(n > 1, others, tokens))


def loss_weights(sigma: torch.Tensor, cfg: LossConfig) -> torch.Tensor:
    """Weight on the x0 error per sample: eps 1/s^2, v 1+1/s^2, x0 1; min-SNR caps at gamma."""
    snr = 1.0 / sigma.float() ** 2
    if cfg.min_snr_gamma is not None:
        return torch.clamp(snr, max=cfg.min_snr_gamma)
    if cfg.objective == "eps":
        return snr
    if cfg.objective == "v":
        return snr + 1.0
    return torch.ones_like(snr)


class HyperStep(nn.Module):
    """Root module for the distributed wrappers: conditions in, per-sample LoRA factors out."""

    def __init__(self, hyperlora: HyperLoRA) -> None:
        super().__init__()
        self.hl = hyperlora

    def forward(
        self,
        face_tokens: torch.Tensor | None,
        arcface: torch.Tensor | None,
        base_tokens: torch.Tensor | None,
        groups: torch.Tensor,
        num_groups: int,
        references: str,
        want_id: bool,
        base_grad: bool,
    ) -> dict[str, tuple[list[torch.Tensor], list[torch.Tensor]]]:
        out = {}
        if want_id:
            tokens = self.hl.id_tokens(face_tokens, arcface).float()
            out["id"] = self.hl.lora_factors(reference_coefficients(tokens, groups, num_groups, references), "id")
        if base_tokens is not None:
            with torch.set_grad_enabled(base_grad and torch.is_grad_enabled()):
                coeffs = normalize(self.hl.base_tokens(base_tokens).float())
                out["base"] = self.hl.lora_factors(coeffs, "base")
        return out


@dataclass
class StepInputs:
    """What a stage feeds the hypernetwork."""

    use_id: bool
    use_arcface: bool
    use_base: bool
    base_trainable: bool


def stage_inputs(stage: str, cfg: FitConfig) -> StepInputs:
    has_base = cfg.hypernetwork.base_rank is not None
    trainable = cfg.trainable(stage)
    base_strength = cfg.stages[stage].base_strength
    if stage == "base":
        return StepInputs(False, False, True, True)
    use_base = has_base and (stage == "distill" or base_strength != 0)
    return StepInputs(True, stage in ("arcface_id", "distill"), use_base, "base_resampler" in trainable or "base_basis" in trainable)


def autocast_for(device: torch.device, precision: str):
    if precision == "fp32":
        return nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16 if precision == "bf16" else torch.float16)


class StepRunner:
    """Computes a stage's loss for a batch; holds the frozen pieces (UNet, CLIP vision, teacher)."""

    def __init__(
        self,
        stage: str,
        cfg: FitConfig,
        backbone: Backbone,
        denoiser: Denoiser,
        hook_state: LoRAHookState,
        device: torch.device,
        teacher: HyperStep | None = None,
    ) -> None:
        self.stage, self.cfg, self.backbone, self.denoiser = stage, cfg, backbone, denoiser
        self.state, self.device, self.teacher = hook_state, device, teacher
        self.inputs = stage_inputs(stage, cfg)
        self.stage_cfg = cfg.stages[stage]

    def conditions(self, batch: Batch) -> dict:
        """Frozen-encoder features of the batch: CLIP tokens of the crops, masked ArcFace."""
        inp = self.inputs
        with torch.no_grad():
            face_tokens = self.backbone.clip_tokens(batch.face).to(self.device) if inp.use_id else None
            base_tokens = self.backbone.clip_tokens(batch.base).to(self.device) if inp.use_base else None
        arcface = None
        if inp.use_arcface:
            arcface = batch.arcface * (~batch.drop_face).to(batch.arcface.dtype).unsqueeze(1)
        return {"face_tokens": face_tokens, "arcface": arcface, "base_tokens": base_tokens}

    def _base_scale(self, batch: Batch) -> torch.Tensor:
        """Base-LoRA scale per sample: full in the base stage; strength x (not dropped) in ID stages."""
        if self.stage == "base":
            return torch.full((batch.size,), LORA_SCALE, device=self.device)
        keep = (~batch.drop_base).float().to(self.device)
        return LORA_SCALE * self.stage_cfg.base_strength * keep

    def loss(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        cond = self.conditions(batch)
        inp = self.inputs
        autocast = autocast_for(self.device, self.cfg.train.precision)
        den = self.denoiser
        sigma = den.sigmas.to(self.device)[batch.timesteps]
        x0 = den.latent_in(batch.latents)
        x = den.noisy(sigma, batch.noise, x0)
        adm = den.adm(batch.pooled, batch.sizes).to(self.device)
        full = torch.full((batch.size,), LORA_SCALE, device=self.device)
        with autocast:
            factors = model(
                cond["face_tokens"], cond["arcface"], cond["base_tokens"] if self.stage != "distill" else None,
                batch.groups, batch.num_groups, self.cfg.train.references, inp.use_id, inp.base_trainable,
            )
            if self.stage == "distill":
                with torch.no_grad():
                    t = self.teacher(
                        cond["face_tokens"], cond["arcface"], cond["base_tokens"], batch.groups, batch.num_groups,
                        self.cfg.train.references, True, False,
                    )
                    self.state.sets = [
                        LoRASet(*t["id"], scale=full),
                        LoRASet(*t["base"], scale=full * self.stage_cfg.base_fraction),
                    ]
                    target = den.denoise(x, sigma, batch.context, adm).float()
                self.state.sets = [LoRASet(*factors["id"], scale=full)]
            else:
                target = x0.float()
                sets = []
                if "id" in factors:
                    sets.append(LoRASet(*factors["id"], scale=full))
                if "base" in factors:
                    sets.append(LoRASet(*factors["base"], scale=self._base_scale(batch)))
                self.state.sets = sets
            pred = den.denoise(x, sigma, batch.context, adm).float()
        err = (pred - target).pow(2).mean(dim=tuple(range(1, pred.ndim)))
        return (loss_weights(sigma, self.cfg.train.loss) * err).mean()
