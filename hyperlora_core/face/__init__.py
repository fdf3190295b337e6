"""Face analysis and the published preprocessing (no ComfyUI imports).

- `packs`: find/check an insightface model pack folder; embedding-space compatibility.
- `analyzer`: `FaceAnalyzer` (detection with size fallback, 106 landmarks, ArcFace), providers.
- `images`: any photo input -> 8-bit RGB, with checks.
- `crops`: the ID / ArcFace / Base crops, pixel-exact with PIL.
- `clip_pixels`: CLIP's resize + centre crop (+ normalisation for non-ComfyUI encoders).
"""

from .analyzer import DET_SIZES, DetectedFace, Detection, FaceAnalyzer, detect_at_size, resolve_providers, select_face
from .clip_pixels import CLIP_MEAN, CLIP_SIZE, CLIP_STD, clip_normalize, clip_pixels
from .images import photo_list, to_rgb8
from .packs import DEFAULT_PACK, find_pack, list_packs

__all__ = [
    "CLIP_MEAN",
    "CLIP_SIZE",
    "CLIP_STD",
    "DEFAULT_PACK",
    "DET_SIZES",
    "DetectedFace",
    "Detection",
    "FaceAnalyzer",
    "clip_normalize",
    "clip_pixels",
    "detect_at_size",
    "find_pack",
    "list_packs",
    "photo_list",
    "resolve_providers",
    "select_face",
    "to_rgb8",
]
