"""Photos -> `IDCondition` / `BaseCondition`: face analysis, the published crops, CLIP and ArcFace.

Nodes and scripts need two calls::

    analyzer = FaceAnalyzer.load("antelopev2", roots=[".../models/insightface"])
    cond = encode_id(photos, analyzer, clip)       # photos: IMAGE [B,H,W,C] 0..1, or a list
    base = encode_base(photos, analyzer, clip)     # Base-LoRA condition (face blurred out)

`clip` is a `ClipEncoder`: any callable mapping uint8 pixels `[N, S, S, 3]` (S = its `image_size`,
default 224) to tokens `[N, T, D]`. For ComfyUI's CLIP_VISION, wrap it in
`comfy_bridge.clip_vision.ComfyClipEncoder` (this module never imports ComfyUI).
`prepare_id` / `prepare_base` stop before CLIP (for caching datasets, tests and benchmarks).

Per photo the ID branch runs: detection (640, then 512, 384, 256 until a face is found), 106-point
landmarks of the chosen face, then on the 2x crop of the original photo a second detection at 640
and the ArcFace model: 4 model runs, exactly the published embedding. `reuse_keypoints=True` skips
the second detection (3 runs) by mapping the first detection's keypoints into the crop; the
aligned face then differs slightly from the published one, so it is off by default.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch
from PIL import Image

from .conditions import BaseCondition, IDCondition
from .errors import HyperLoRAError
from .face.analyzer import DET_SIZES, DetectedFace, FaceAnalyzer, select_face
from .face.clip_pixels import CLIP_SIZE, clip_pixels
from .face.crops import arcface_crop, base_crop, blur_face, check_crop_scales, id_crop, preview
from .face.images import photo_list

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]
ON_NO_FACE = ("error", "skip")
MIN_IOU = 0.3
"""The face found again in the 2x crop must overlap the chosen face this much (else: another face)."""


class ClipEncoder(Protocol):
    """uint8 pixels `[N, S, S, 3]` (already resized and cropped) -> tokens `[N, T, D]`."""

    image_size: int

    def __call__(self, pixels: np.ndarray) -> torch.Tensor: ...


def as_clip_encoder(clip: Any) -> ClipEncoder:
    """Check that `clip` is a `ClipEncoder` (a callable over uint8 pixels)."""
    if hasattr(clip, "encode_image"):
        raise HyperLoRAError(
            "got ComfyUI's CLIP_VISION model itself; wrap it as hyperlora_core.comfy_bridge.clip_vision."
            "ComfyClipEncoder(clip_vision) (the nodes do) so its pixels go through the published preprocessing."
        )
    if callable(clip):
        return clip
    raise HyperLoRAError(
        f"expected a CLIP vision model (ComfyUI CLIP_VISION) but got {type(clip).__name__}; "
        "connect a CLIP ViT-L/14 vision model."
    )


# -- face analysis of one photo ------------------------------------------------------------------
@dataclass(frozen=True)
class PhotoAnalysis:
    """The faces of one photo and the one that will be used (None when no face was found)."""

    number: int
    width: int
    height: int
    faces: list[DetectedFace]
    det_size: int | None
    sizes_tried: tuple[int, ...]
    face: DetectedFace | None
    landmarks: np.ndarray | None

    @property
    def face_count(self) -> int:
        return len(self.faces)

    def no_face_message(self) -> str:
        sizes = ", ".join(str(s) for s in self.sizes_tried)
        return (
            f"no face found in photo {self.number} ({self.width}x{self.height} px; detector sizes tried: {sizes}). "
            "Use a photo where the face is clearly visible (not tiny, not cut off, not turned away) or remove "
            'this photo. (HyperLoRA Encode ID can leave such photos out: set its on_no_face to "skip".)'
        )


def _bgr(rgb: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(rgb[:, :, ::-1])


def analyze_photo(rgb: np.ndarray, analyzer: FaceAnalyzer, number: int = 1, face_index: int | None = None) -> PhotoAnalysis:
    """Detect faces (with the size fallback), pick one, and get its 106 landmarks."""
    bgr = _bgr(rgb)
    detection = analyzer.detect(bgr)
    face = landmarks = None
    if detection.faces:
        face = select_face(detection.faces, face_index, number)
        landmarks = analyzer.landmarks(bgr, face)
    h, w = rgb.shape[:2]
    return PhotoAnalysis(number, w, h, detection.faces, detection.det_size, detection.sizes_tried, face, landmarks)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def arcface_embedding(
    image: Image.Image, analysis: PhotoAnalysis, analyzer: FaceAnalyzer, reuse_keypoints: bool = False
) -> tuple[np.ndarray, str | None]:
    """The published ArcFace embedding: detect again at 640 on the 2x crop, embed that face.

    Of the faces found in the crop we take the one overlapping the chosen face (the authors take
    the best-scored one, the same face whenever the crop holds one face). Returns the embedding
    and a note when we had to fall back to the first detection's keypoints.
    """
    crop, (ox, oy) = arcface_crop(image, analysis.landmarks)
    bgr = _bgr(np.asarray(crop))
    expected = analysis.face.shifted(ox, oy)
    if reuse_keypoints:
        return analyzer.embedding(bgr, expected), None
    found = analyzer.detect(bgr, sizes=DET_SIZES[:1]).faces
    best = max(found, key=lambda f: _iou(f.bbox, expected.bbox)) if found else None
    if best is None or _iou(best.bbox, expected.bbox) < MIN_IOU:
        note = (
            f"photo {analysis.number}: the face was not found again in its enlarged crop; its face embedding "
            "uses the keypoints of the first detection."
        )
        return analyzer.embedding(bgr, expected), note
    return analyzer.embedding(bgr, best), None


# -- preparing photos (everything but CLIP) ---------------------------------------------------------
@dataclass(frozen=True)
class PreparedPhotos:
    """Per kept photo: CLIP input pixels, preview, (ArcFace embedding); per input photo: face counts."""

    pixels: np.ndarray  # [N, S, S, 3] uint8
    previews: np.ndarray  # [N, PREVIEW_SIZE, PREVIEW_SIZE, 3] uint8
    id_embeds: np.ndarray | None  # [N, 512] float32 (ID branch only)
    photo_indices: tuple[int, ...]
    face_counts: tuple[int, ...]
    warnings: tuple[str, ...]


def _check_policy(on_no_face: str) -> None:
    if on_no_face not in ON_NO_FACE:
        raise HyperLoRAError(f'on_no_face must be "error" or "skip"; got "{on_no_face}".')


def _prepare(
    photos: Any,
    analyzer: FaceAnalyzer,
    per_photo: Callable[[np.ndarray, PhotoAnalysis], tuple[np.ndarray, np.ndarray, np.ndarray | None, str | None]],
    face_index: int | None,
    on_no_face: str,
    progress: Progress | None,
    extra_steps: int,
) -> PreparedPhotos:
    _check_policy(on_no_face)
    if face_index is not None and (not isinstance(face_index, (int, np.integer)) or face_index < 0):
        raise HyperLoRAError(f"face index must be empty (largest face) or an integer >= 0; got {face_index!r}.")
    rgbs = photo_list(photos)
    total = len(rgbs) + extra_steps
    pixels, previews, embeds, kept, counts, notes = [], [], [], [], [], []
    for i, rgb in enumerate(rgbs):
        analysis = analyze_photo(rgb, analyzer, i + 1, face_index)
        counts.append(analysis.face_count)
        if analysis.face is None:
            if on_no_face == "error":
                raise HyperLoRAError(analysis.no_face_message())
            notes.append(f"photo {i + 1} ({analysis.width}x{analysis.height} px): no face found; skipped.")
        else:
            px, pv, emb, note = per_photo(rgb, analysis)
            pixels.append(px)
            previews.append(pv)
            if emb is not None:
                embeds.append(emb)
            if note:
                notes.append(note)
            kept.append(i)
        if progress is not None:
            progress(i + 1, total)
    if not kept:
        raise HyperLoRAError(
            f"no face found in any of the {len(rgbs)} photo(s); "
            + " ".join(f"photo {i + 1}: {w}x{h} px." for i, (h, w) in enumerate(r.shape[:2] for r in rgbs))
            + " Use photos where the face is clearly visible."
        )
    for note in notes:
        log.warning("HyperLoRA: %s", note)
    return PreparedPhotos(
        pixels=np.stack(pixels),
        previews=np.stack(previews),
        id_embeds=np.stack(embeds).astype(np.float32) if embeds else None,
        photo_indices=tuple(kept),
        face_counts=tuple(counts),
        warnings=tuple(notes),
    )


def prepare_id(
    photos: Any,
    face_analyzer: FaceAnalyzer,
    *,
    remove_background: bool = True,
    grayscale: bool = False,
    face_index: int | None = None,
    on_no_face: str = "error",
    clip_size: int = CLIP_SIZE,
    reuse_keypoints: bool = False,
    progress: Progress | None = None,
    _extra_steps: int = 0,
) -> PreparedPhotos:
    """ID crops (CLIP pixels), ArcFace embeddings and previews of every photo with a face."""

    def one(rgb: np.ndarray, analysis: PhotoAnalysis):
        image = Image.fromarray(rgb)
        crop = id_crop(image, analysis.landmarks, remove_background, grayscale)
        embed, note = arcface_embedding(image, analysis, face_analyzer, reuse_keypoints)
        return clip_pixels(crop, clip_size), preview(crop), embed, note

    return _prepare(photos, face_analyzer, one, face_index, on_no_face, progress, _extra_steps)


def prepare_base(
    photos: Any,
    face_analyzer: FaceAnalyzer,
    *,
    crop_scales: Sequence[float] | str | None = (1.0, 1.0, 1.0, 1.0),
    clamp_to_image: bool = True,
    face_index: int | None = None,
    on_no_face: str = "error",
    clip_size: int = CLIP_SIZE,
    progress: Progress | None = None,
    _extra_steps: int = 0,
) -> PreparedPhotos:
    """Face-blurred crops (per-side scales of the CLIP half-side, `None` = whole photo) for the Base-LoRA."""
    scales = None if crop_scales is None else check_crop_scales(crop_scales)

    def one(rgb: np.ndarray, analysis: PhotoAnalysis):
        blurred = blur_face(Image.fromarray(rgb), analysis.landmarks)
        crop = base_crop(blurred, analysis.landmarks, scales, clamp_to_image)
        return clip_pixels(crop, clip_size), preview(crop), None, None

    return _prepare(photos, face_analyzer, one, face_index, on_no_face, progress, _extra_steps)


# -- with CLIP: the conditions ---------------------------------------------------------------------
def _check_weights(weights: Any, count: int) -> torch.Tensor | None:
    if weights is None:
        return None
    try:
        w = torch.as_tensor(weights, dtype=torch.float32).flatten()
    except (TypeError, ValueError):
        raise HyperLoRAError(f"photo weights must be numbers, one per photo; got {weights!r}.") from None
    if w.numel() != count:
        raise HyperLoRAError(f"got {w.numel()} photo weights for {count} photos; give one weight per photo.")
    if not torch.isfinite(w).all() or (w < 0).any():
        raise HyperLoRAError(f"photo weights must be finite and >= 0; got {w.tolist()}.")
    return w


def _kept_weights(w: torch.Tensor | None, kept: tuple[int, ...]) -> torch.Tensor | None:
    if w is None:
        return None
    kept_w = w[list(kept)]
    if kept_w.sum() <= 0:
        raise HyperLoRAError("every photo with a face has weight 0; give at least one of them a positive weight.")
    return kept_w


def _encode(encoder: ClipEncoder, pixels: np.ndarray) -> torch.Tensor:
    tokens = encoder(pixels)
    if not isinstance(tokens, torch.Tensor) or tokens.ndim != 3 or tokens.shape[0] != pixels.shape[0]:
        shape = list(tokens.shape) if isinstance(tokens, torch.Tensor) else type(tokens).__name__
        raise HyperLoRAError(f"the CLIP vision encoder returned {shape}; expected [{pixels.shape[0]}, tokens, width].")
    return tokens.detach().float().cpu()


def _previews(arr: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(arr).float().div(255.0)


def _with_clip(prepare: Callable[..., PreparedPhotos], photos: Any, face_analyzer: FaceAnalyzer, clip: Any,
               weights: Any, progress: Progress | None, **options) -> tuple[PreparedPhotos, torch.Tensor, torch.Tensor | None]:
    """What both conditions do: check the weights, prepare the crops, run CLIP on them (one more
    progress step), keep the weights of the photos that had a face."""
    encoder = as_clip_encoder(clip)
    rgbs = photo_list(photos)
    all_weights = _check_weights(weights, len(rgbs))
    prepared = prepare(rgbs, face_analyzer, clip_size=int(getattr(encoder, "image_size", CLIP_SIZE)),
                       progress=progress, _extra_steps=1, **options)
    kept_weights = _kept_weights(all_weights, prepared.photo_indices)
    tokens = _encode(encoder, prepared.pixels)
    total = len(prepared.face_counts) + 1
    if progress is not None:
        progress(total, total)
    return prepared, tokens, kept_weights


def encode_id(
    photos: Any,
    face_analyzer: FaceAnalyzer,
    clip: Any,
    *,
    weights: Sequence[float] | torch.Tensor | None = None,
    remove_background: bool = True,
    grayscale: bool = False,
    face_index: int | None = None,
    on_no_face: str = "error",
    reuse_keypoints: bool = False,
    progress: Progress | None = None,
) -> IDCondition:
    """Photos of one person -> `IDCondition` (CLIP tokens + ArcFace embeddings + weights + previews).

    `weights` has one entry per input photo (photos skipped for having no face drop theirs).
    `face_index`: None = the largest face, else the n-th face from the left (0-based).
    `on_no_face`: "error" (default) names the photo; "skip" leaves it out with a warning while at
    least one photo has a face. `progress(done, total)` is called after each photo and after CLIP.
    """
    prepared, tokens, kept_weights = _with_clip(
        prepare_id, photos, face_analyzer, clip, weights, progress, remove_background=remove_background,
        grayscale=grayscale, face_index=face_index, on_no_face=on_no_face, reuse_keypoints=reuse_keypoints,
    )
    return IDCondition(
        clip_tokens=tokens,
        id_embeds=torch.from_numpy(prepared.id_embeds),
        weights=kept_weights,
        face_crops=_previews(prepared.previews),
        photo_indices=prepared.photo_indices,
        face_counts=prepared.face_counts,
        embedding_space=face_analyzer.embedding_space,
        warnings=prepared.warnings,
    )


def encode_base(
    photos: Any,
    face_analyzer: FaceAnalyzer,
    clip: Any,
    *,
    weights: Sequence[float] | torch.Tensor | None = None,
    crop_scales: Sequence[float] | str | None = (1.0, 1.0, 1.0, 1.0),
    clamp_to_image: bool = True,
    face_index: int | None = None,
    on_no_face: str = "error",
    progress: Progress | None = None,
) -> BaseCondition:
    """Photos -> `BaseCondition` (CLIP tokens of crops with the face blurred out)."""
    prepared, tokens, kept_weights = _with_clip(
        prepare_base, photos, face_analyzer, clip, weights, progress, crop_scales=crop_scales,
        clamp_to_image=clamp_to_image, face_index=face_index, on_no_face=on_no_face,
    )
    return BaseCondition(
        clip_tokens=tokens,
        weights=kept_weights,
        crops=_previews(prepared.previews),
        photo_indices=prepared.photo_indices,
        face_counts=prepared.face_counts,
        warnings=prepared.warnings,
    )
