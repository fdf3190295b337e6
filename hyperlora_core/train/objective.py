"""One training step's maths: conditions -> per-sample LoRAs -> ComfyUI's model -> weighted x0 loss.

`HyperStep` is the module handed to DDP / FSDP2: every use of the hypernetwork's parameters
happens inside its `forward`, which is what both wrappers need to synchronise and unshard.
"""

from __future__ import annotations

import dataclasses
from contextlib import nullcontext
from dataclasses import dataclass

import torch
from torch import nn

from ..coefficients import group_mean, normalize
from ..comfy_bridge.backbone import Backbone
from ..comfy_bridge.diffusion import Denoiser
from ..comfy_bridge.lora_hooks import LoRAHookState, LoRASet
from ..errors import HyperLoRAError
from ..lora import sample_scales
from ..model import HyperLoRA
from .config import STAGE, FitConfig, LossConfig, StageSpec
from .data import Batch


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


@dataclass
class Conditions:
    """A batch's frozen-encoder features and identity groups: what the hypernetwork reads.

    `face_tokens` None: no ID-LoRA is made; `arcface` None: the face stream is off; `base_tokens`
    None: no Base-LoRA."""

    face_tokens: torch.Tensor | None
    arcface: torch.Tensor | None
    base_tokens: torch.Tensor | None
    groups: torch.Tensor
    num_groups: int


class HyperStep(nn.Module):
    """Root module for the distributed wrappers: conditions in, per-sample LoRA factors out."""

    def __init__(self, hyperlora: HyperLoRA) -> None:
        super().__init__()
        self.hl = hyperlora

    def forward(self, cond: Conditions, references: str) -> dict[str, tuple[list[torch.Tensor], list[torch.Tensor]]]:
        """`references` (`train.references`) says which photos of a group make a target's ID-LoRA."""
        out = {}
        if cond.face_tokens is not None:
            tokens = self.hl.id_tokens(cond.face_tokens, cond.arcface).float()
            coeffs = reference_coefficients(tokens, cond.groups, cond.num_groups, references)
            out["id"] = self.hl.lora_factors(coeffs, "id")
        if cond.base_tokens is not None:
            trained = any(p.requires_grad for m in (self.hl.base_resampler, self.hl.base_basis) for p in m.parameters())
            with torch.set_grad_enabled(trained and torch.is_grad_enabled()):  # a frozen branch builds no graph
                coeffs = normalize(self.hl.base_tokens(cond.base_tokens).float())
                out["base"] = self.hl.lora_factors(coeffs, "base")
        return out


def uses_base_lora(spec: StageSpec, cfg: FitConfig) -> bool:
    """Whether a stage computes the Base-LoRA (in the model or, for `teacher`, in its teacher)."""
    if cfg.hypernetwork.base_rank is None:
        return False
    return spec.base_lora != "frozen" or cfg.stages[spec.name].base_strength != 0


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
        self.spec = STAGE[stage]
        self.cfg, self.backbone, self.denoiser = cfg, backbone, denoiser
        self.state, self.device, self.teacher = hook_state, device, teacher
        self.stage_cfg = cfg.stages[stage]
        self.use_base = uses_base_lora(self.spec, cfg)
        if self.spec.teacher and teacher is None:
            raise HyperLoRAError(f"stage '{stage}' distils from a teacher ({self.spec.teacher}'s result); pass it.")

    def conditions(self, batch: Batch) -> Conditions:
        """Frozen-encoder features of the batch: CLIP tokens of the crops, the ArcFace embedding
        (zeroed where `dropout.face` dropped it)."""
        spec = self.spec
        with torch.no_grad():
            face_tokens = self.backbone.clip_tokens(batch.face).to(self.device) if spec.id_lora else None
            base_tokens = self.backbone.clip_tokens(batch.base).to(self.device) if self.use_base else None
        arcface = None
        if spec.face_embedding:
            arcface = batch.arcface * (~batch.drop_face).to(batch.arcface.dtype).unsqueeze(1)
        return Conditions(face_tokens, arcface, base_tokens, batch.groups, batch.num_groups)

    def _base_scale(self, batch: Batch) -> torch.Tensor:
        """Base-LoRA scale per sample: full when the stage trains it alone; strength x (not dropped) beside an ID-LoRA."""
        if self.spec.base_lora == "trained":
            return sample_scales(batch.size, device=self.device)
        keep = (~batch.drop_base).float().to(self.device)
        return sample_scales(batch.size, self.stage_cfg.base_strength, device=self.device) * keep

    def loss(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        cond = self.conditions(batch)
        autocast = autocast_for(self.device, self.cfg.train.precision)
        den = self.denoiser
        sigma = den.sigmas.to(self.device)[batch.timesteps]
        x0 = den.latent_in(batch.latents)
        x = den.noisy(sigma, batch.noise, x0)
        inputs = den.inputs(batch.cond)
        full = sample_scales(batch.size, device=self.device)
        references = self.cfg.train.references
        with autocast:
            if self.spec.teacher:  # the student is the ID-LoRA alone; the teacher adds a Base-LoRA fraction
                factors = model(dataclasses.replace(cond, base_tokens=None), references)
                with torch.no_grad():
                    t = self.teacher(cond, references)
                    self.state.sets = [
                        LoRASet(*t["id"], scale=full),
                        LoRASet(*t["base"], scale=sample_scales(batch.size, self.stage_cfg.base_fraction, device=self.device)),
                    ]
                    target = den.denoise(x, sigma, inputs).float()
                self.state.sets = [LoRASet(*factors["id"], scale=full)]
            else:
                factors = model(cond, references)
                target = x0.float()
                sets = []
                if "id" in factors:
                    sets.append(LoRASet(*factors["id"], scale=full))
                if "base" in factors:
                    sets.append(LoRASet(*factors["base"], scale=self._base_scale(batch)))
                self.state.sets = sets
            pred = den.denoise(x, sigma, inputs).float()
        err = (pred - target).pow(2).mean(dim=tuple(range(1, pred.ndim)))
        return (loss_weights(sigma, self.cfg.loss_for(self.spec.name)) * err).mean()
