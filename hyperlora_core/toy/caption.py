"""The toy world's text encoder: captions made of attribute phrases -> SDXL-shaped conditioning.

A caption is comma-separated phrases ("a face, tan skin, red hair, smiling"); every phrase that
names an attribute value becomes that attribute's token, everything else (trigger words, "a face",
typos) is ignored, and unsaid attributes get an "unspecified" token. So the empty caption is the
unconditional prompt, and a HyperLoRA trigger-word prefix changes nothing, as in the real model
when the words are unknown. Output: `context [B, 7, 64]` (SDXL: `[B, 77, 2048]`) and
`pooled [B, 64]` (SDXL: `[B, 1280]`).
"""

from __future__ import annotations

import torch
from torch import nn

from .world import ATTRIBUTES, NUM_ATTRIBUTES

CONTEXT_DIM = 64
SEQUENCE = 1 + NUM_ATTRIBUTES
UNSPECIFIED = -1

_PHRASES = {phrase: (a, v) for a, (_, values) in enumerate(ATTRIBUTES) for v, phrase in enumerate(values)}
_OFFSETS = []
_n = 1  # token 0 = BOS
for _, _values in ATTRIBUTES:
    _OFFSETS.append(_n)
    _n += len(_values) + 1  # + "unspecified"
VOCAB = _n


def parse_caption(text: str) -> list[int]:
    """Attribute values named in `text` (`UNSPECIFIED` where none); the last mention wins."""
    values = [UNSPECIFIED] * NUM_ATTRIBUTES
    for raw in text.lower().replace("\n", ",").split(","):
        phrase = " ".join(raw.split())
        if phrase in _PHRASES:
            a, v = _PHRASES[phrase]
            values[a] = v
    return values


def token_ids(values) -> list[int]:
    """Attribute values (or `UNSPECIFIED`) -> the 7 token ids [BOS, a1..a6]."""
    ids = [0]
    for a, v in enumerate(values):
        n = len(ATTRIBUTES[a][1])
        ids.append(_OFFSETS[a] + (n if v is None or v == UNSPECIFIED else int(v)))
    return ids


def caption_tokens(captions: list[str]) -> torch.Tensor:
    return torch.tensor([token_ids(parse_caption(c)) for c in captions], dtype=torch.long)


class CaptionEncoder(nn.Module):
    """Token ids `[B, 7]` -> (`context [B, 7, 64]`, `pooled [B, 64]`)."""

    def __init__(self, dim: int = CONTEXT_DIM) -> None:
        super().__init__()
        self.embed = nn.Embedding(VOCAB, dim)
        self.position = nn.Parameter(torch.zeros(1, SEQUENCE, dim))
        self.mix = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))
        self.pool = nn.Sequential(nn.Flatten(), nn.Linear(SEQUENCE * dim, dim))

    def forward(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.embed(ids) + self.position
        h = h + self.mix(h)
        return h, self.pool(h)
