"""The toy world's small image networks: the judge and the two frozen encoders HyperLoRA reads.

Three different networks with three different training signals, so the judge is independent of
what the hypernetwork sees:

- `AttributeJudge`: a CNN with one softmax head per identity attribute. Used ONLY to score
  generated images (the toy stand-in for a face-recognition evaluation model).
- `ToyArcFace`: the ArcFace analogue. A residual CNN trained contrastively on pairs of renders of
  the same identity with different base factors; its output is a 512-d L2-normalised identity
  embedding that never saw an attribute label.
- `ToyCLIP`: the CLIP-vision analogue. A conv stem + small transformer trained CLIP-style against
  full captions (identity AND background, pattern, clothing), so its tokens carry base factors as
  real CLIP tokens do; HyperLoRA reads its penultimate hidden states (`hidden_states[-2]`) of the
  background-greyed reference, as the published model reads CLIP ViT-L/14's.

All take `[B, 3, 32, 32]` images in 0..1 (`to_tensor` makes them from renders). `Conditioner`
turns photos into what HyperLoRA reads, as face analysis + CLIP vision do for real photos.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import world
from .world import ATTRIBUTE_SIZES, NUM_ATTRIBUTES

ID_EMBED_DIM = 512
CLIP_WIDTH = 64
CLIP_TOKENS = 65  # 8 x 8 patches + class token


def _conv(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1), nn.GroupNorm(8, cout), nn.SiLU())


class AttributeJudge(nn.Module):
    """Image -> one logit vector per attribute (list of `[B, n_values]`)."""

    def __init__(self, width: int = 24) -> None:
        super().__init__()
        w = width
        self.features = nn.Sequential(
            _conv(3, w), _conv(w, w), _conv(w, 2 * w, 2), _conv(2 * w, 2 * w), _conv(2 * w, 4 * w, 2),
            _conv(4 * w, 4 * w), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
        )
        self.heads = nn.ModuleList([nn.Linear(16 * w, n) for n in ATTRIBUTE_SIZES])

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        h = self.features(images * 2 - 1)
        return [head(h) for head in self.heads]

    @torch.no_grad()
    def predict(self, images: torch.Tensor, batch: int = 256) -> torch.Tensor:
        """`[B, 6]` predicted attribute values."""
        out = []
        for s in range(0, images.shape[0], batch):
            out.append(torch.stack([lg.argmax(-1) for lg in self(images[s : s + batch])], dim=1))
        return torch.cat(out) if out else torch.zeros((0, NUM_ATTRIBUTES), dtype=torch.long)


class _ResBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(cin, cout, 3, stride, 1), nn.BatchNorm2d(cout), nn.ReLU(),
            nn.Conv2d(cout, cout, 3, 1, 1), nn.BatchNorm2d(cout),
        )
        self.skip = nn.Conv2d(cin, cout, 1, stride) if (stride != 1 or cin != cout) else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.body(x) + self.skip(x))


class ToyArcFace(nn.Module):
    """Image -> 512-d L2-normalised identity embedding (the ArcFace `normed_embedding` analogue)."""

    def __init__(self, width: int = 16) -> None:
        super().__init__()
        w = width
        self.stem = nn.Sequential(nn.Conv2d(3, w, 3, 1, 1), nn.BatchNorm2d(w), nn.ReLU())
        self.blocks = nn.Sequential(_ResBlock(w, w, 1), _ResBlock(w, 2 * w, 2), _ResBlock(2 * w, 4 * w, 2))
        self.embed = nn.Sequential(
            nn.Conv2d(4 * w, 32, 1), nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(32 * 16, ID_EMBED_DIM)
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.embed(self.blocks(self.stem(images * 2 - 1))), dim=-1)


class _Block(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        return x + self.mlp(self.norm2(x))


class ToyCLIP(nn.Module):
    """Image -> token hidden states `[B, 65, 64]` per layer, and a projected image embedding."""

    def __init__(self, width: int = CLIP_WIDTH, layers: int = 3, heads: int = 4, embed_dim: int = 64) -> None:
        super().__init__()
        self.stem = nn.Sequential(_conv(3, 32), _conv(32, width, 2), nn.Conv2d(width, width, 3, 2, 1))
        self.class_embedding = nn.Parameter(torch.randn(1, 1, width) * 0.02)
        self.position = nn.Parameter(torch.randn(1, CLIP_TOKENS, width) * 0.02)
        self.pre_norm = nn.LayerNorm(width)
        self.layers = nn.ModuleList([_Block(width, heads) for _ in range(layers)])
        self.post_norm = nn.LayerNorm(width)
        self.proj = nn.Linear(width, embed_dim, bias=False)

    def hidden_states(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Token states after the embedding and after every layer (as HF's `hidden_states`)."""
        x = self.stem(images * 2 - 1).flatten(2).transpose(1, 2)
        x = torch.cat([self.class_embedding.expand(x.shape[0], -1, -1), x], dim=1) + self.position
        states = [self.pre_norm(x)]
        for layer in self.layers:
            states.append(layer(states[-1]))
        return states

    def penultimate(self, images: torch.Tensor) -> torch.Tensor:
        """`hidden_states[-2]`: what HyperLoRA reads (the published model's CLIP input)."""
        return self.hidden_states(images)[-2]

    def image_embeds(self, images: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.proj(self.post_norm(self.hidden_states(images)[-1][:, 0])), dim=-1)


class CaptionTower(nn.Module):
    """The text side of ToyCLIP's contrastive training (not shipped): factor labels -> embedding."""

    def __init__(self, vocab_sizes: tuple[int, ...], embed_dim: int = 64, width: int = 128) -> None:
        super().__init__()
        self.tables = nn.ModuleList([nn.Embedding(n, width) for n in vocab_sizes])
        self.mlp = nn.Sequential(nn.GELU(), nn.Linear(width, width), nn.GELU(), nn.Linear(width, embed_dim))

    def forward(self, labels: torch.Tensor) -> torch.Tensor:
        h = sum(table(labels[:, i]) for i, table in enumerate(self.tables))
        return F.normalize(self.mlp(h), dim=-1)


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 `[N, H, W, 3]` -> float `[N, 3, H, W]` in 0..1."""
    return torch.from_numpy(images).permute(0, 3, 1, 2).float().div_(255.0)


def masked_reference(images: torch.Tensor) -> torch.Tensor:
    """The background-greyed reference (`remove_background` analogue) that ToyCLIP reads."""
    mask = torch.from_numpy(world.face_mask(images.shape[-1])).to(images)
    return images * mask + 0.5 * (1 - mask)


@dataclass
class Conditioner:
    """The frozen encoders: photo -> (CLIP-analogue tokens of the greyed photo, 512-d ID embedding)."""

    arcface: ToyArcFace
    clip: ToyCLIP

    @torch.no_grad()
    def __call__(self, images01: torch.Tensor, batch: int = 512) -> tuple[torch.Tensor, torch.Tensor]:
        """`[N, 3, 32, 32]` in 0..1 -> (`clip_tokens [N, 65, 64]`, `id_embeds [N, 512]`)."""
        tokens, embeds = [], []
        for s in range(0, len(images01), batch):
            x = images01[s : s + batch]
            tokens.append(self.clip.penultimate(masked_reference(x)))
            embeds.append(self.arcface(x))
        return torch.cat(tokens), torch.cat(embeds)
