"""`HyperLoRA`: face conditions in, a kohya LoRA state dict out.

This is the public entry point of the core::

    hl = HyperLoRA.from_pretrained("models/hyper_lora/sdxl_hyper_id_lora_v1_fidelity")
    lora = hl.generate_id_lora(clip_tokens, id_embeds)        # [B,257,1024], [B,512]
    comfy.sd.load_lora_for_models(model, None, lora, 0.85, 0)
"""

from __future__ import annotations

import os
from collections.abc import Callable

import torch
from torch import nn

from .basis import LoRABasis
from .coefficients import photo_weights, pool_photos
from .config import LORA_SCALE, HyperLoRAConfig
from .errors import HyperLoRAError
from .lora import GeneratedLoRA, LoRASpace, check_finite
from .resampler import IDProjector, Resampler


def _to_cpu(tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    """CPU copies of same-dtype tensors; from a GPU in one transfer, not one synchronising copy each
    (1,120 separate copies took most of an SDXL ID-LoRA's generation time on an H200)."""
    if not tensors or any(t.device != tensors[0].device for t in tensors) or tensors[0].device.type == "cpu":
        return [t.cpu() for t in tensors]
    flat = torch.cat([t.reshape(-1) for t in tensors]).cpu()
    parts = flat.split([t.numel() for t in tensors])
    return [p.view(t.shape).clone() for p, t in zip(parts, tensors)]  # own storage each: safetensors refuses shared


class HyperLoRA(nn.Module):
    """Hypernetwork: ID projector + resampler(s) + LoRA basis (+ optional Base-LoRA branch)."""

    def __init__(
        self,
        config: HyperLoRAConfig,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        small_dtype: torch.dtype | None = None,
    ) -> None:
        """`dtype` is the basis storage; `small_dtype` the resampler/projector (fp32 by default)."""
        super().__init__()
        self.config = config
        self.space: LoRASpace | None = None
        """Which checkpoint this is (set when loaded from a file); every LoRA it makes carries it."""
        shapes = config.layer_shapes()
        small = {"device": device, "dtype": small_dtype or torch.float32}
        with torch.device(device or "cpu"):
            self.id_projector = IDProjector(config.id_projector).to(**small) if config.id_projector else None
            self.resampler = Resampler(config.resampler).to(**small)
            self.id_basis = LoRABasis(shapes, config.basis_size, config.rank, device=device, dtype=dtype)
            if config.has_base:
                self.base_resampler = Resampler(config.base_resampler).to(**small)
                self.base_basis = LoRABasis(shapes, config.basis_size, config.base_rank, device=device, dtype=dtype)
            else:
                self.base_resampler = None
                self.base_basis = None

    # -- loading and saving (see checkpoint.py) ------------------------------------------------
    @classmethod
    def from_pretrained(
        cls,
        path: str | os.PathLike,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        dim_head: int | None = None,
    ) -> HyperLoRA:
        """Load a published checkpoint folder or one of our single `.safetensors` files."""
        from .checkpoint import load_hyperlora

        return load_hyperlora(path, device=device, dtype=dtype, dim_head=dim_head)

    def save_pretrained(self, folder: str | os.PathLike, dtype: torch.dtype | None = torch.float16) -> None:
        """Write the published folder layout (JSON + four .safetensors)."""
        from .checkpoint import save_published

        save_published(self, folder, dtype=dtype)

    def save_single_file(self, path: str | os.PathLike, dtype: torch.dtype | None = torch.float16) -> None:
        """Write every part into one `.safetensors` with the config in its metadata."""
        from .checkpoint import save_single_file

        save_single_file(self, path, dtype=dtype)

    @property
    def device(self) -> torch.device:
        return self.resampler.latents.device

    # -- conditions -> tokens ------------------------------------------------------------------
    def _check_conditions(self, clip_tokens: torch.Tensor | None, id_embeds: torch.Tensor | None) -> int:
        rs = self.config.resampler
        batch = None
        if clip_tokens is not None:
            width = rs.input_dims[-1] if rs.num_conditions == 2 or self.id_projector is None else None
            if clip_tokens.ndim != 3 or (width is not None and clip_tokens.shape[-1] != width):
                raise HyperLoRAError(
                    f"clip_tokens must be [photos, tokens, {width}] (CLIP penultimate-layer tokens); got "
                    f"{list(clip_tokens.shape)}. Use the CLIP vision model this checkpoint was trained with "
                    "(ViT-L/14 for the published weights)."
                )
            batch = clip_tokens.shape[0]
        if id_embeds is not None:
            e = self.config.id_projector.embed_dim if self.config.id_projector else None
            if id_embeds.ndim != 2 or id_embeds.shape[-1] != e:
                raise HyperLoRAError(
                    f"id_embeds must be [photos, {e}] (normalised face embeddings); got {list(id_embeds.shape)}."
                )
            if batch is not None and id_embeds.shape[0] != batch:
                raise HyperLoRAError(
                    f"got {batch} photos of CLIP tokens but {id_embeds.shape[0]} face embeddings; they must pair up."
                )
            batch = id_embeds.shape[0]
        if not batch:
            raise HyperLoRAError("no photos: give at least one photo's conditions.")
        for name, t in (("clip_tokens", clip_tokens), ("id_embeds", id_embeds)):
            if t is not None and not torch.isfinite(t).all():
                raise HyperLoRAError(f"{name} contain NaN or infinite values; check the input photos.")
        return batch

    def id_tokens(self, clip_tokens: torch.Tensor | None, id_embeds: torch.Tensor | None) -> torch.Tensor:
        """Per-photo ID coefficient tokens `[B, Q, K]` (before averaging and normalisation).

        With two condition streams the face tokens go to the first and CLIP to the second, as
        published; `id_embeds=None` skips the face stream (the trainer's CLIP-only stage).
        """
        self._check_conditions(clip_tokens, id_embeds)
        rs = self.resampler
        dtype, device = rs.latents.dtype, rs.latents.device
        id_in = None
        if id_embeds is not None:
            if self.id_projector is None:
                raise HyperLoRAError("this checkpoint has no ID projector, so it takes no face embeddings.")
            id_in = self.id_projector(id_embeds.to(device=device, dtype=dtype))
        clip_in = clip_tokens.to(device=device, dtype=dtype) if clip_tokens is not None else None
        if rs.config.num_conditions == 2:
            return rs(id_in, clip_in)
        stream = clip_in if self.id_projector is None else id_in
        if stream is None:
            raise HyperLoRAError("this checkpoint needs " + ("CLIP tokens." if self.id_projector is None else "face embeddings."))
        return rs(stream)

    def base_tokens(self, clip_tokens: torch.Tensor) -> torch.Tensor:
        """Per-photo Base-LoRA coefficient tokens from CLIP tokens of the face-blurred crop."""
        if self.base_resampler is None:
            raise HyperLoRAError(
                "this checkpoint has no Base-LoRA (the published ones distilled 0.25x of it into the ID-LoRA); "
                "remove the Base-LoRA nodes or load a checkpoint trained with one."
            )
        rs = self.base_resampler
        if clip_tokens.ndim != 3 or clip_tokens.shape[-1] != rs.config.input_dims[0]:
            raise HyperLoRAError(
                f"base clip_tokens must be [photos, tokens, {rs.config.input_dims[0]}]; got {list(clip_tokens.shape)}."
            )
        return rs(clip_tokens.to(device=rs.latents.device, dtype=rs.latents.dtype))

    # -- tokens -> LoRA ------------------------------------------------------------------------
    def lora_factors(
        self, coeffs: torch.Tensor, kind: str = "id"
    ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Normalised coefficient tokens `[B, Q, K]` -> per-layer `downs [B,r,in]`, `ups [B,out,r]`."""
        basis = self.id_basis if kind == "id" else self.base_basis
        if basis is None:
            raise HyperLoRAError("this checkpoint has no Base-LoRA basis.")
        return basis.mix(coeffs[:, 0::2], coeffs[:, 1::2])

    def lora_state_dict(self, coeffs: torch.Tensor, kind: str = "id") -> dict[str, torch.Tensor]:
        """One normalised coefficient set `[1, Q, K]` -> kohya LoRA state dict (CPU tensors)."""
        downs, ups = self.lora_factors(coeffs, kind)
        downs, ups = _to_cpu([d[0] for d in downs]), _to_cpu([u[0] for u in ups])
        rank = self.config.rank if kind == "id" else self.config.base_rank
        alpha = torch.tensor(rank * LORA_SCALE)
        out: dict[str, torch.Tensor] = {}
        for layer, key in enumerate(self.config.layer_names()):
            out[f"{key}.alpha"] = alpha.clone()
            out[f"{key}.lora_down.weight"] = downs[layer]
            out[f"{key}.lora_up.weight"] = ups[layer]
        check_finite(
            out, f"generated {kind.upper() if kind == 'id' else 'Base'}-LoRA",
            "The checkpoint and the photos' conditions are finite, so the computation overflowed: load the "
            "HyperLoRA checkpoint with dtype fp32.",
        )
        return GeneratedLoRA(out, self.space, self.config.base_name)

    def id_factors(
        self, clip_tokens: torch.Tensor, id_embeds: torch.Tensor | None
    ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Many people's ID-LoRA factors at once: conditions of R photos each (`clip_tokens [I, R, T, C]`,
        `id_embeds [I, R, E]`) -> per-layer `downs [I, r, in]`, `ups [I, out, r]`; person i's are
        `generate_id_lora`'s for their R photos (equal weights)."""
        count, refs = clip_tokens.shape[:2]
        embeds = id_embeds.flatten(0, 1) if id_embeds is not None else None
        tokens = self.id_tokens(clip_tokens.flatten(0, 1), embeds).float()
        return self.lora_factors(pool_photos(tokens.view(count, refs, *tokens.shape[1:]))[:, 0], "id")

    def base_factors(self, clip_tokens: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Many people's Base-LoRA factors at once from `[I, R, T, C]` CLIP tokens of their face-blurred
        crops; person i's are `generate_base_lora`'s for their R crops (equal weights)."""
        count, refs = clip_tokens.shape[:2]
        tokens = self.base_tokens(clip_tokens.flatten(0, 1)).float()
        return self.lora_factors(pool_photos(tokens.view(count, refs, *tokens.shape[1:]))[:, 0], "base")

    @staticmethod
    def _per_photo(
        run: Callable[[slice], torch.Tensor], count: int, progress: Callable[[int, int], object] | None
    ) -> torch.Tensor:
        """All photos in one batch, or one at a time with a progress call after each (+1 for the mix)."""
        if progress is None:
            return run(slice(None)).float()
        parts = []
        for i in range(count):
            parts.append(run(slice(i, i + 1)).float())
            progress(i + 1, count + 1)
        return torch.cat(parts)

    @torch.no_grad()
    def generate_id_lora(
        self,
        clip_tokens: torch.Tensor,
        id_embeds: torch.Tensor | None,
        weights: torch.Tensor | list[float] | None = None,
        progress: Callable[[int, int], object] | None = None,
    ) -> dict[str, torch.Tensor]:
        """ID-LoRA for one person from B photos; equal weights reproduce the published mean.

        `progress(done, total)` is called after each photo and after the basis mix (then the
        photos run one at a time, which also keeps memory flat for long photo lists).
        """
        batch = self._check_conditions(clip_tokens, id_embeds)
        w = photo_weights(weights, batch) if weights is not None else None

        def run(sel: slice) -> torch.Tensor:
            return self.id_tokens(clip_tokens[sel], id_embeds[sel] if id_embeds is not None else None)

        lora = self.lora_state_dict(pool_photos(self._per_photo(run, batch, progress), w), "id")
        if progress is not None:
            progress(batch + 1, batch + 1)
        return lora

    @torch.no_grad()
    def generate_base_lora(
        self,
        clip_tokens: torch.Tensor,
        weights: torch.Tensor | list[float] | None = None,
        progress: Callable[[int, int], object] | None = None,
    ) -> dict[str, torch.Tensor]:
        """Base-LoRA (background, clothing) from CLIP tokens of the face-blurred crops."""
        count = clip_tokens.shape[0] if clip_tokens.ndim == 3 else 0
        if count == 0:
            raise HyperLoRAError("no photos: give the CLIP tokens of at least one face-blurred crop.")
        w = photo_weights(weights, count) if weights is not None else None
        tokens = self._per_photo(lambda sel: self.base_tokens(clip_tokens[sel]), count, progress)
        lora = self.lora_state_dict(pool_photos(tokens, w), "base")
        if progress is not None:
            progress(count + 1, count + 1)
        return lora
