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


class PhotoRows:
    """What ID and Base conditions share: one row per input photo that had a face, in input order.

    Subclasses are frozen dataclasses with `clip_tokens`, `weights`, `photo_indices`, `face_counts`
    and a preview (the crops CLIP saw), and call `_check_rows` with their per-row tensors."""

    clip_tokens: torch.Tensor
    weights: torch.Tensor | None
    photo_indices: tuple[int, ...]
    face_counts: tuple[int, ...]
    what = "condition"

    def _check_rows(self, **tensors: tuple[torch.Tensor | None, int]) -> None:
        """Every `name=(tensor, ndim)` has one row per photo with a face (and at least one such photo)."""
        n = len(self.photo_indices)
        if n == 0:
            raise HyperLoRAError(f"{self.what} needs at least one photo with a face.")
        for name, (tensor, ndim) in tensors.items():
            if tensor is not None and (tensor.ndim != ndim or tensor.shape[0] != n):
                raise HyperLoRAError(f"{name} must have {ndim} dimensions and {n} rows; got {list(tensor.shape)}.")

    def __len__(self) -> int:
        return len(self.photo_indices)

    @property
    def has_face(self) -> tuple[bool, ...]:
        """For each INPUT photo, whether it contributed (had a usable face)."""
        used = set(self.photo_indices)
        return tuple(i in used for i in range(len(self.face_counts)))

    def summary(self) -> str:
        parts = []
        for i, n in enumerate(self.face_counts):
            state = "used" if i in self.photo_indices else "skipped"
            parts.append(f"photo {i + 1}: {n} face{'s' if n != 1 else ''} ({state})")
        return "; ".join(parts)

    @property
    def preview(self) -> torch.Tensor:
        """`[N, H, W, 3]` float 0..1: the crops CLIP saw (an IMAGE output)."""
        raise NotImplementedError


@dataclass(frozen=True)
class IDCondition(PhotoRows):
    """Per-photo ID conditions of one person (rows = photos with a face, in input order)."""

    clip_tokens: torch.Tensor
    """[N, 257, 1024] CLIP ViT-L/14 penultimate-layer tokens of the face crops."""
    id_embeds: torch.Tensor
    """[N, 512] L2-normalised ArcFace embeddings."""
    weights: torch.Tensor | None
    """[N] per-photo weights as given (normalised later by the model), or None for equal weights."""
    face_crops: torch.Tensor
    """[N, 224, 224, 3] float 0..1: the crops CLIP saw, for a preview IMAGE output."""
    photo_indices: tuple[int, ...]
    """For each row, the 0-based index of the input photo it came from."""
    face_counts: tuple[int, ...]
    """For each INPUT photo, how many faces the detector found."""
    embedding_space: str = "antelopev2"
    """The face pack whose ArcFace model made `id_embeds` (see face/packs.py)."""
    warnings: tuple[str, ...] = field(default=())
    what = "an ID condition"

    def __post_init__(self) -> None:
        self._check_rows(clip_tokens=(self.clip_tokens, 3), id_embeds=(self.id_embeds, 2), weights=(self.weights, 1),
                         face_crops=(self.face_crops, 4))

    @property
    def preview(self) -> torch.Tensor:
        return self.face_crops

    def check_face_pack(self, expected: str, allow_mismatch: bool = False) -> None:
        """Refuse embeddings from another ArcFace space than the checkpoint's `config.face_pack`."""
        from .face.packs import check_embedding_space

        check_embedding_space(self.embedding_space, expected, allow_mismatch)


@dataclass(frozen=True)
class BaseCondition(PhotoRows):
    """Per-photo Base-LoRA conditions: CLIP tokens of crops whose face is blurred out."""

    clip_tokens: torch.Tensor
    """[N, 257, 1024] CLIP penultimate-layer tokens of the face-blurred crops."""
    weights: torch.Tensor | None
    crops: torch.Tensor
    """[N, 224, 224, 3] float 0..1: the part of each blurred crop CLIP saw (preview)."""
    photo_indices: tuple[int, ...]
    face_counts: tuple[int, ...]
    warnings: tuple[str, ...] = field(default=())
    what = "a Base condition"

    def __post_init__(self) -> None:
        self._check_rows(clip_tokens=(self.clip_tokens, 3), weights=(self.weights, 1), crops=(self.crops, 4))

    @property
    def preview(self) -> torch.Tensor:
        return self.crops
