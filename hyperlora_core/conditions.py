"""What the encoders hand to the hypernetwork: one value per request, ready for `HyperLoRA`.

`IDCondition` carries, for each photo that had a face, the CLIP tokens of its face crop, its
ArcFace embedding and its weight, plus a preview of the crops and which input photos had faces.
`BaseCondition` carries the CLIP tokens of the face-blurred crops for the Base-LoRA. Typical use::

    cond = encode_id(photos, analyzer, clip_vision)            # hyperlora_core.encode
    cond.check_face_pack(hyperlora.config.face_pack)           # refuses e.g. buffalo_l embeddings
    lora = hyperlora.generate_id_lora(cond.clip_tokens, cond.id_embeds, cond.weights)

All tensors are float32 on the CPU; the generator moves them where the model lives.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .errors import HyperLoRAError


def _check_rows(name: str, tensor: torch.Tensor | None, rows: int, ndim: int) -> None:
    if tensor is None:
        return
    if tensor.ndim != ndim or tensor.shape[0] != rows:
        raise HyperLoRAError(f"{name} must have {ndim} dimensions and {rows} rows; got {list(tensor.shape)}.")


def _describe_faces(face_counts: tuple[int, ...], used: tuple[int, ...]) -> str:
    parts = []
    for i, n in enumerate(face_counts):
        state = "used" if i in used else "skipped"
        parts.append(f"photo {i + 1}: {n} face{'s' if n != 1 else ''} ({state})")
    return "; ".join(parts)


@dataclass(frozen=True)
class IDCondition:
    """Per-photo ID conditions of one person (rows = photos with a face, in input order)."""

    clip_tokens: torch.Tensor
    """[N, 257, 1024] CLIP ViT-L/14 penultimate-layer tokens of the face crops."""
    id_embeds: torch.Tensor
    """[N, 512] L2-normalised ArcFace embeddings."""
    weights: torch.Tensor | None
    """[N] per-photo weights as given (normalised later by the model), or None for equal weights."""
    face_crops: torch.Tensor
    """[N, 512, 512, 3] float 0..1: the crops CLIP saw, for a preview IMAGE output."""
    photo_indices: tuple[int, ...]
    """For each row, the 0-based index of the input photo it came from."""
    face_counts: tuple[int, ...]
    """For each INPUT photo, how many faces the detector found."""
    embedding_space: str = "antelopev2"
    """The face pack whose ArcFace model made `id_embeds` (see face/packs.py)."""
    warnings: tuple[str, ...] = field(default=())
    standin_face_models: bool = False
    """True when the embeddings came from the random stand-in pack (tests, demo)."""

    def __post_init__(self) -> None:
        n = len(self.photo_indices)
        if n == 0:
            raise HyperLoRAError("an ID condition needs at least one photo with a face.")
        _check_rows("clip_tokens", self.clip_tokens, n, 3)
        _check_rows("id_embeds", self.id_embeds, n, 2)
        _check_rows("weights", self.weights, n, 1)
        _check_rows("face_crops", self.face_crops, n, 4)

    def __len__(self) -> int:
        return len(self.photo_indices)

    @property
    def has_face(self) -> tuple[bool, ...]:
        """For each INPUT photo, whether it contributed (had a usable face)."""
        used = set(self.photo_indices)
        return tuple(i in used for i in range(len(self.face_counts)))

    def summary(self) -> str:
        return _describe_faces(self.face_counts, self.photo_indices)

    def check_face_pack(self, expected: str, allow_mismatch: bool = False) -> None:
        """Refuse embeddings from another ArcFace space than the checkpoint's `config.face_pack`."""
        from .face.packs import check_embedding_space

        check_embedding_space(self.embedding_space, expected, allow_mismatch, self.standin_face_models)

    @staticmethod
    def concat(conditions: list[IDCondition]) -> IDCondition:
        """Join conditions of the same person (e.g. two photo batches); weights default to 1."""
        if not conditions:
            raise HyperLoRAError("nothing to combine: give at least one ID condition.")
        spaces = {c.embedding_space for c in conditions}
        if len(spaces) > 1:
            raise HyperLoRAError(f"cannot combine ID conditions from different face packs: {sorted(spaces)}.")
        weights = None
        if any(c.weights is not None for c in conditions):
            weights = torch.cat([c.weights if c.weights is not None else torch.ones(len(c)) for c in conditions])
        offsets, indices, counts = 0, [], []
        for c in conditions:
            indices += [offsets + i for i in c.photo_indices]
            counts += list(c.face_counts)
            offsets += len(c.face_counts)
        return IDCondition(
            clip_tokens=torch.cat([c.clip_tokens for c in conditions]),
            id_embeds=torch.cat([c.id_embeds for c in conditions]),
            weights=weights,
            face_crops=torch.cat([c.face_crops for c in conditions]),
            photo_indices=tuple(indices),
            face_counts=tuple(counts),
            embedding_space=spaces.pop(),
            warnings=tuple(w for c in conditions for w in c.warnings),
            standin_face_models=any(c.standin_face_models for c in conditions),
        )


@dataclass(frozen=True)
class BaseCondition:
    """Per-photo Base-LoRA conditions: CLIP tokens of crops whose face is blurred out."""

    clip_tokens: torch.Tensor
    """[N, 257, 1024] CLIP penultimate-layer tokens of the face-blurred crops."""
    weights: torch.Tensor | None
    crops: torch.Tensor
    """[N, 512, 512, 3] float 0..1: the part of each blurred crop CLIP saw (preview)."""
    photo_indices: tuple[int, ...]
    face_counts: tuple[int, ...]
    warnings: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        n = len(self.photo_indices)
        if n == 0:
            raise HyperLoRAError("a Base condition needs at least one photo with a face.")
        _check_rows("clip_tokens", self.clip_tokens, n, 3)
        _check_rows("weights", self.weights, n, 1)
        _check_rows("crops", self.crops, n, 4)

    def __len__(self) -> int:
        return len(self.photo_indices)

    @property
    def has_face(self) -> tuple[bool, ...]:
        used = set(self.photo_indices)
        return tuple(i in used for i in range(len(self.face_counts)))

    def summary(self) -> str:
        return _describe_faces(self.face_counts, self.photo_indices)
