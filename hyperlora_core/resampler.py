"""The perceiver resampler and the ID projector, with the published parameter names.

Learned queries (8 per LoRA'd attention module) read the condition tokens and become the
coefficient tokens over the LoRA basis. Parameter names match `resampler.safetensors` and
`id_projector.safetensors`, so loading is a strict `load_state_dict` with no renaming table.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import IDProjectorConfig, ResamplerConfig


class Attention(nn.Module):
    """Multi-head softmax attention without biases (scale dim_head^-0.5)."""

    def __init__(self, dim: int, heads: int, dim_head: int) -> None:
        super().__init__()
        inner = heads * dim_head
        self.heads = heads
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_k = nn.Linear(dim, inner, bias=False)
        self.to_v = nn.Linear(dim, inner, bias=False)
        self.to_out = nn.ModuleList([nn.Linear(inner, dim, bias=False)])

    def forward(self, queries: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        b = queries.shape[0]
        q = self.to_q(queries).view(b, -1, self.heads, self.to_q.out_features // self.heads).transpose(1, 2)
        k = self.to_k(context).view(b, -1, self.heads, q.shape[-1]).transpose(1, 2)
        v = self.to_v(context).view(b, -1, self.heads, q.shape[-1]).transpose(1, 2)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.to_out[0](out.transpose(1, 2).reshape(b, -1, q.shape[1] * q.shape[-1]))


class _GELUProjection(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.proj = nn.Linear(dim, hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(self.proj(x))


class FeedForward(nn.Module):
    """Linear -> exact GELU -> Linear, named `net.0.proj` and `net.2` as published."""

    def __init__(self, dim: int, mult: int) -> None:
        super().__init__()
        self.net = nn.ModuleList([_GELUProjection(dim, dim * mult), nn.Identity(), nn.Linear(dim * mult, dim)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.net:
            x = layer(x)
        return x


class PerceiverBlock(nn.Module):
    """Pre-norm residual block: self-attention, one cross-attention per condition, feed-forward."""

    def __init__(self, cfg: ResamplerConfig) -> None:
        super().__init__()
        dim = cfg.dim
        self.norm_attn1 = nn.LayerNorm(dim)
        self.norm_attn2_l = nn.LayerNorm(dim)
        self.norm_attn2_x = nn.LayerNorm(dim)
        self.attn1 = Attention(dim, cfg.heads, cfg.dim_head)
        self.attn2 = Attention(dim, cfg.heads, cfg.dim_head)
        if cfg.num_conditions == 2:
            self.norm_attn3_l = nn.LayerNorm(dim)
            self.norm_attn3_y = nn.LayerNorm(dim)
            self.attn3 = Attention(dim, cfg.heads, cfg.dim_head)
        self.norm_ff = nn.LayerNorm(dim)
        self.ff = FeedForward(dim, cfg.ff_mult)

    def forward(self, latents: torch.Tensor, x: torch.Tensor | None, y: torch.Tensor | None) -> torch.Tensor:
        h = self.norm_attn1(latents)
        latents = latents + self.attn1(h, h)
        if x is not None:
            latents = latents + self.attn2(self.norm_attn2_l(latents), self.norm_attn2_x(x))
        if y is not None:
            latents = latents + self.attn3(self.norm_attn3_l(latents), self.norm_attn3_y(y))
        return latents + self.ff(self.norm_ff(latents))


class Resampler(nn.Module):
    """Learned queries -> coefficient tokens `[B, num_queries, output_dim]`, one set per photo.

    Averaging over photos and the L2 normalisation are separate functions
    (`hyperlora_core.coefficients`), so training can average per identity and inference per request.
    """

    def __init__(self, cfg: ResamplerConfig) -> None:
        super().__init__()
        self.config = cfg
        self.latents = nn.Parameter(torch.randn(1, cfg.num_queries, cfg.dim) / cfg.dim**0.5)
        self.proj_in = nn.Linear(cfg.input_dims[0], cfg.dim)
        if cfg.num_conditions == 2:
            self.proj_in_2 = nn.Linear(cfg.input_dims[1], cfg.dim)
        self.layers = nn.ModuleList([PerceiverBlock(cfg) for _ in range(cfg.depth)])
        self.proj_out = nn.Linear(cfg.dim, cfg.output_dim)

    def forward(self, x: torch.Tensor | None, y: torch.Tensor | None = None) -> torch.Tensor:
        """`x` feeds `proj_in`/`attn2`, `y` feeds `proj_in_2`/`attn3` (two-condition models only).

        A two-condition model may get `x=None`: the first stream's cross-attention is skipped,
        which is how the trainer's CLIP-only stage runs the published architecture.
        """
        if (y is not None) != (self.config.num_conditions == 2) or (x is None and y is None):
            raise ValueError(f"this resampler takes {self.config.num_conditions} condition stream(s)")
        batch = (x if x is not None else y).shape[0]
        x = self.proj_in(x) if x is not None else None
        y = self.proj_in_2(y) if y is not None else None
        latents = self.latents.expand(batch, -1, -1)
        for layer in self.layers:
            latents = layer(latents, x, y)
        return self.proj_out(latents)


class IDProjector(nn.Sequential):
    """Face embedding `[B, E]` -> ID tokens `[B, T, D]` (keys `0.*` and `2.*` as published)."""

    def __init__(self, cfg: IDProjectorConfig) -> None:
        super().__init__(
            nn.Linear(cfg.embed_dim, cfg.num_tokens * cfg.token_dim),
            nn.Unflatten(-1, (cfg.num_tokens, cfg.token_dim)),
            nn.LayerNorm(cfg.token_dim),
        )
        self.config = cfg
