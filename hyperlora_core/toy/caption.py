"""The toy world's text encoder: captions made of phrases -> SDXL-shaped conditioning.

A caption is comma-separated phrases ("a face, tan skin, red hair, smiling, blue shirt, red
striped background"). Every phrase that names an identity attribute value becomes that
attribute's token; "<colour> shirt" names the clothing colour and "[<colour>] [<pattern>]
background" the background colour and/or pattern; everything else (trigger words, "a face", typos)
is ignored, and unsaid factors get an "unspecified" token. So the empty caption is the
unconditional prompt, and a HyperLoRA trigger-word prefix changes nothing, as in the real model
when the words are unknown. Output: `context [B, 10, 64]` (SDXL: `[B, 77, 2048]`) and
`pooled [B, 64]` (SDXL: `[B, 1280]`).
"""

from __future__ import annotations

import torch
from torch import nn

from .world import ATTRIBUTES, BASE_FACTORS, NUM_ATTRIBUTES, NUM_BASE_FACTORS

CONTEXT_DIM = 64
FACTORS = NUM_ATTRIBUTES + NUM_BASE_FACTORS
"""Identity attributes, then background colour, pattern, clothing colour."""
SEQUENCE = 1 + FACTORS
UNSPECIFIED = -1

_SIZES = [len(values) for _, values in ATTRIBUTES] + [len(values) for _, values in BASE_FACTORS]
_PHRASES = {phrase: (a, v) for a, (_, values) in enumerate(ATTRIBUTES) for v, phrase in enumerate(values)}
_BACKGROUND, _PATTERN, _CLOTHING = NUM_ATTRIBUTES, NUM_ATTRIBUTES + 1, NUM_ATTRIBUTES + 2
_COLOURS = {name: v for v, name in enumerate(BASE_FACTORS[0][1])}
_PATTERN_WORDS = {name: v for v, name in enumerate(BASE_FACTORS[1][1])}
_CLOTHES = {name: v for v, name in enumerate(BASE_FACTORS[2][1])}
_OFFSETS = []
_n = 1  # token 0 = BOS
for _size in _SIZES:
    _OFFSETS.append(_n)
    _n += _size + 1  # + "unspecified"
VOCAB = _n


def _base_phrase(words: list[str]) -> list[tuple[int, int]]:
    """("blue", "striped", "background") -> [(background, blue), (pattern, striped)]; [] if not one."""
    if len(words) == 2 and words[1] == "shirt" and words[0] in _CLOTHES:
        return [(_CLOTHING, _CLOTHES[words[0]])]
    if not words or words[-1] != "background" or not 2 <= len(words) <= 3:
        return []
    found = []
    for w in words[:-1]:
        if w in _COLOURS and not any(f == _BACKGROUND for f, _ in found):
            found.append((_BACKGROUND, _COLOURS[w]))
        elif w in _PATTERN_WORDS and not any(f == _PATTERN for f, _ in found):
            found.append((_PATTERN, _PATTERN_WORDS[w]))
        else:
            return []
    return found


def parse_caption(text: str) -> list[int]:
    """Factor values named in `text` (`UNSPECIFIED` where none): the six identity attributes, then
    background colour, pattern, clothing colour. The last mention wins."""
    values = [UNSPECIFIED] * FACTORS
    for raw in text.lower().replace("\n", ",").split(","):
        words = raw.split()
        phrase = " ".join(words)
        if phrase in _PHRASES:
            a, v = _PHRASES[phrase]
            values[a] = v
            continue
        for factor, v in _base_phrase(words):
            values[factor] = v
    return values


def token_ids(values, base=None) -> list[int]:
    """Factor values (or `UNSPECIFIED`/None) -> the 10 token ids [BOS, a1..a6, background, pattern,
    clothing]. Six values leave the base factors unsaid unless `base` gives them."""
    values = list(values)
    if len(values) == NUM_ATTRIBUTES:
        values += list(base) if base is not None else [None] * NUM_BASE_FACTORS
    if len(values) != FACTORS:
        raise ValueError(f"expected {NUM_ATTRIBUTES} or {FACTORS} factor values; got {len(values)}")
    ids = [0]
    for f, v in enumerate(values):
        n = _SIZES[f]
        ids.append(_OFFSETS[f] + (n if v is None or v == UNSPECIFIED else int(v)))
    return ids


def caption_tokens(captions: list[str]) -> torch.Tensor:
    return torch.tensor([token_ids(parse_caption(c)) for c in captions], dtype=torch.long)


IDENTITY_SEQUENCE = 1 + NUM_ATTRIBUTES
"""A caption encoder of the first toy world (identity attributes only) reads BOS + 6 tokens."""


class CaptionEncoder(nn.Module):
    """Token ids `[B, 10]` -> (`context [B, S, 64]`, `pooled [B, 64]`); S = 10, or 7 for an encoder of
    the first toy world, which knew only the identity attributes (it reads the first 7 ids, whose
    vocabulary is the same)."""

    def __init__(self, dim: int = CONTEXT_DIM, sequence: int = SEQUENCE) -> None:
        super().__init__()
        if sequence not in (SEQUENCE, IDENTITY_SEQUENCE):
            raise ValueError(f"a toy caption encoder reads {SEQUENCE} or {IDENTITY_SEQUENCE} tokens, not {sequence}")
        self.sequence = sequence
        vocab = VOCAB if sequence == SEQUENCE else _OFFSETS[NUM_ATTRIBUTES]
        self.embed = nn.Embedding(vocab, dim)
        self.position = nn.Parameter(torch.zeros(1, sequence, dim))
        self.mix = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))
        self.pool = nn.Sequential(nn.Flatten(), nn.Linear(sequence * dim, dim))

    @classmethod
    def for_state_dict(cls, state_dict: dict[str, torch.Tensor]) -> CaptionEncoder:
        """The encoder the weights were saved from (its sequence length read from `position`)."""
        return cls(dim=state_dict["position"].shape[-1], sequence=state_dict["position"].shape[1])

    def forward(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        ids = ids[:, : self.sequence]
        h = self.embed(ids) + self.position
        h = h + self.mix(h)
        return h, self.pool(h)
