"""From per-photo coefficient tokens to the normalised tokens that mix the basis.

The published model averages the resampler output over the reference photos and then
L2-normalises every token (`t / sqrt(sum(t^2) + 1e-8)`). These two steps are kept apart from the
resampler so inference (one request) and training (several identities per batch) share them.
"""

from __future__ import annotations

import torch

from .errors import HyperLoRAError

NORM_EPS = 1e-8


def photo_weights(weights: torch.Tensor | list[float] | None, count: int) -> torch.Tensor:
    """Validate per-photo weights and return them normalised to sum to one (float32)."""
    if weights is None:
        return torch.full((count,), 1.0 / count)
    w = torch.as_tensor(weights, dtype=torch.float32).flatten()
    if w.numel() != count:
        raise HyperLoRAError(f"got {w.numel()} photo weights for {count} photos; give one weight per photo.")
    if not torch.isfinite(w).all() or (w < 0).any():
        raise HyperLoRAError(f"photo weights must be finite and >= 0; got {w.tolist()}.")
    total = w.sum()
    if total <= 0:
        raise HyperLoRAError("photo weights are all zero; give at least one photo a positive weight.")
    return w / total


def weighted_mean(tokens: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Mean of `[..., B, Q, K]` tokens over the B photos (weighted if given) -> `[..., 1, Q, K]`."""
    if weights is None:
        return tokens.mean(dim=-3, keepdim=True)
    w = weights.to(device=tokens.device, dtype=tokens.dtype).view(-1, 1, 1)
    return (tokens * w).sum(dim=-3, keepdim=True)


def pool_photos(tokens: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """One person's coefficient tokens from their photos': `[..., B, Q, K]` -> `[..., 1, Q, K]`, the
    (weighted) mean over the B photos, L2-normalised. Every LoRA HyperLoRA makes for a user goes
    through here (one person, or many at once in the toy study)."""
    return normalize(weighted_mean(tokens, weights))


def group_mean(tokens: torch.Tensor, groups: torch.Tensor, num_groups: int) -> torch.Tensor:
    """Mean of `[B, Q, K]` tokens within each identity group -> `[num_groups, Q, K]` (training)."""
    sums = torch.zeros((num_groups, *tokens.shape[1:]), device=tokens.device, dtype=tokens.dtype)
    sums = sums.index_add(0, groups, tokens)
    counts = torch.bincount(groups, minlength=num_groups).clamp_min(1).to(tokens.dtype)
    return sums / counts.view(-1, 1, 1)


def normalize(tokens: torch.Tensor) -> torch.Tensor:
    """L2-normalise every coefficient token, as the published model does."""
    return tokens * torch.rsqrt(tokens.pow(2).sum(dim=-1, keepdim=True) + NORM_EPS)
