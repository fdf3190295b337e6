"""`prepare`: photos -> shards with everything the frozen encoders produce, computed once.

Input: a folder (photos in sub-folders named after the person; photos at the top level are each
their own identity) or a JSONL file of `{"image": path, "caption": str, "identity": str}` (paths
relative to the file). A caption comes from the JSONL, else a `.txt` next to the photo, else
"a photo of a person"; the trigger words are put in front, as the published models were trained.

Per photo: face analysis with the pack's published preprocessing (`analyze_face` below: the ID
crop on grey, the ArcFace embedding from the 2x crop, the face-blurred Base crop), a
face-centred square crop of the photo at the training resolution through the VAE, the caption
through both text encoders. Photos with no face, several faces or that cannot be read are listed
in `prepare_report.json` and on the console, and left out.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

from ..config import TRIGGER_WORDS
from ..errors import HyperLoRAError
from ..walk import walk
from .config import FitConfig
from .shards import SampleRecord, ShardWriter

log = logging.getLogger("hyperlora.train")
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp"}
DEFAULT_CAPTION = "a photo of a person"
REPORT = "prepare_report.json"


@dataclass(frozen=True)
class PhotoItem:
    path: Path
    identity: str
    caption: str


@dataclass
class PrepareReport:
    out: Path
    kept: int = 0
    identities: set[str] = field(default_factory=set)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        lines = [f"{self.out}: {self.kept} photos of {len(self.identities)} identities prepared; "
                 f"{len(self.skipped)} left out."]
        lines += [f"  left out {p}: {why}" for p, why in self.skipped]
        return "\n".join(lines)

    def write(self) -> None:
        data = {"kept": self.kept, "identities": len(self.identities), "skipped": [{"photo": p, "reason": r} for p, r in self.skipped],
                "notes": self.notes}
        (self.out / REPORT).write_text(json.dumps(data, indent=1), encoding="utf-8")


def _caption(text: str | None) -> str:
    text = (text or DEFAULT_CAPTION).strip()
    return text if text.startswith(TRIGGER_WORDS.strip()) else TRIGGER_WORDS + text


def list_photos(source: Path) -> list[PhotoItem]:
    """The photos of a folder or JSONL, with identity and caption (see the module docstring)."""
    if source.is_file() and source.suffix == ".jsonl":
        items = []
        for n, line in enumerate(source.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                image = Path(row["image"])
            except (ValueError, KeyError, TypeError):
                raise HyperLoRAError(f'{source}, line {n}: expected {{"image": path, "caption": ..., "identity": ...}}.') from None
            path = image if image.is_absolute() else source.parent / image
            items.append(PhotoItem(path, str(row.get("identity") or path.stem), _caption(row.get("caption"))))
        return items
    if not source.is_dir():
        raise HyperLoRAError(f"{source}: not a folder of photos or a .jsonl file.")
    items = []
    for path in sorted(here / f for here, _, files in walk(source) for f in files):
        if path.suffix.lower() not in IMAGE_SUFFIXES or not path.is_file():
            continue
        rel = path.relative_to(source)
        identity = rel.parts[0] if len(rel.parts) > 1 else path.stem
        side = path.with_suffix(".txt")
        items.append(PhotoItem(path, identity, _caption(side.read_text(encoding="utf-8") if side.is_file() else None)))
    return items


@dataclass
class FaceData:
    """What the face step yields for one photo (one face): crops, embedding, landmarks."""

    face_pixels: np.ndarray  # [224, 224, 3] uint8, ID crop on grey (CLIP input)
    base_pixels: np.ndarray  # [224, 224, 3] uint8, face-blurred crop (Base-LoRA CLIP input)
    arcface: np.ndarray  # [512] float32, L2-normalised
    landmarks: np.ndarray  # [106, 2]
    bbox: np.ndarray  # [4]
    note: str | None = None


def analyze_face(rgb: np.ndarray, analyzer, number: int) -> FaceData | str:
    """The published preprocessing for one photo, or the reason it cannot be used.

    This is the one place that calls the face pipeline (`hyperlora_core.encode` / `face.crops`).
    """
    from ..encode import analyze_photo, arcface_embedding
    from ..face.clip_pixels import clip_pixels
    from ..face.crops import base_crop, blur_face, id_crop

    analysis = analyze_photo(rgb, analyzer, number)
    if analysis.face_count == 0:
        return "no face found"
    if analysis.face_count > 1:
        return f"{analysis.face_count} faces found (training photos need exactly one)"
    image = Image.fromarray(rgb)
    face = clip_pixels(id_crop(image, analysis.landmarks, True, False))
    embedding, note = arcface_embedding(image, analysis, analyzer)
    base = clip_pixels(base_crop(blur_face(image, analysis.landmarks), analysis.landmarks))
    return FaceData(face, base, np.asarray(embedding, np.float32), analysis.landmarks, analysis.face.bbox, note)


def target_crop(rgb: np.ndarray, bbox: np.ndarray, resolution: int) -> tuple[np.ndarray, list[int], list[int]]:
    """The largest square of the photo centred on the face (clamped), resized to `resolution`.

    Returns the image in 0..1 and the crop's geometry (SDXL's micro-conditioning; each base's profile decides
    what it adds): original size (h, w) and the crop's top-left in the photo scaled so its short side is
    `resolution` (as peers compute it).
    """
    h, w = rgb.shape[:2]
    side = min(h, w)
    cx, cy = (bbox[0] + bbox[2]) / 2, (bbox[1] + bbox[3]) / 2
    left = int(np.clip(round(cx - side / 2), 0, w - side))
    top = int(np.clip(round(cy - side / 2), 0, h - side))
    crop = Image.fromarray(rgb).crop((left, top, left + side, top + side)).resize((resolution, resolution), Image.BICUBIC)
    scale = resolution / side
    return np.asarray(crop, np.float32) / 255.0, [h, w], [round(top * scale), round(left * scale)]


def _read(path: Path) -> np.ndarray | str:
    try:
        with Image.open(path) as img:
            return np.asarray(ImageOps.exif_transpose(img).convert("RGB"))
    except (OSError, ValueError) as exc:
        return f"cannot be read as an image ({exc})"


def _load_analyzer(face_models: str | None):
    from ..face.analyzer import DEFAULT_PACK, FaceAnalyzer

    if face_models:
        folder = Path(face_models)
        for inner in (folder / DEFAULT_PACK, folder / "models" / DEFAULT_PACK):  # a folder holding the pack
            if not any(folder.glob("*.onnx")) and inner.is_dir():
                folder = inner
                break
        return FaceAnalyzer.load(folder, providers="auto")
    from ..comfy_bridge.folders import load_face_analyzer

    return load_face_analyzer("antelopev2")


def _records(items: list[PhotoItem], analyzer, backbone, resolution: int, report: PrepareReport) -> Iterator[SampleRecord]:
    for n, item in enumerate(items, 1):
        rgb = _read(item.path)
        if isinstance(rgb, str):
            report.skipped.append((str(item.path), rgb))
            continue
        face = analyze_face(rgb, analyzer, n)
        if isinstance(face, str):
            report.skipped.append((str(item.path), face))
            continue
        if face.note:
            report.notes.append(f"{item.path}: {face.note}")
        target, orig_hw, crop_tl = target_crop(rgb, face.bbox, resolution)
        latent = backbone.encode_images(torch.from_numpy(target)[None])[0]
        cond = backbone.encode_text([item.caption])
        meta = {"identity": item.identity, "caption": item.caption, "orig_hw": orig_hw, "crop_tl": crop_tl,
                "target_hw": [resolution, resolution], "face_bbox": [float(v) for v in face.bbox],
                "landmarks": np.round(face.landmarks, 2).tolist(), "source": str(item.path)}
        report.kept += 1
        report.identities.add(item.identity)
        yield SampleRecord(key=f"p{n:07d}", meta=meta, latent=latent.numpy(), cond={k: v[0].numpy() for k, v in cond.items()},
                           arcface=face.arcface, face=face.face_pixels, base=face.base_pixels)


def prepare(
    cfg: FitConfig,
    source: str | Path | None,
    out: str | Path | None = None,
    synthetic: bool = False,
    resolution: int | None = None,
    face_models: str | None = None,
    per_shard: int = 1000,
    backbone=None,
    analyzer=None,
) -> PrepareReport:
    """Write the dataset `fit` reads (default: the config's data.shards)."""
    from ..comfy_bridge.backbone import backbone_kind
    from ..face.packs import is_standin_space
    from .fit import build_backbone
    from .synthetic import write_synthetic_dataset

    folder = Path(out or cfg.data.shards)
    resolution = resolution or backbone_kind(cfg.model.backbone).resolution
    if resolution % 8:
        raise HyperLoRAError(f"prepare: resolution {resolution} is not a multiple of 8 (the VAE's factor).")
    backbone = backbone or build_backbone(cfg, ("text_encoders", "vae"))  # latents and captions: no denoiser
    report = PrepareReport(folder)
    if synthetic:
        write_synthetic_dataset(folder, backbone, size=resolution)
        samples = json.loads((folder / "index.json").read_text())["samples"]
        report.kept = len(samples)
        report.identities = {s["identity"] for s in samples}
        report.write()
        return report
    items = list_photos(Path(source))
    if not items:
        raise HyperLoRAError(f"{source}: no photos found ({', '.join(sorted(IMAGE_SUFFIXES))}).")
    analyzer = analyzer or _load_analyzer(face_models)
    folder.mkdir(parents=True, exist_ok=True)
    writer = ShardWriter(folder, per_shard=per_shard)
    for rec in _records(items, analyzer, backbone, resolution, report):
        writer.add(rec)
    for path, why in report.skipped:
        log.warning("prepare: left out %s: %s", path, why)
    if report.kept == 0:
        report.write()
        raise HyperLoRAError(
            f"prepare: none of the {len(items)} photos is usable, so no dataset was written "
            f"(see {folder / REPORT}). Training photos need exactly one visible face."
        )
    info = {"backbone": backbone.name, "resolution": resolution, "source": str(source), "samples": report.kept,
            "face_pack": getattr(analyzer, "pack_name", "?"), "embedding_space": getattr(analyzer, "embedding_space", "?"),
            "standin_face_models": is_standin_space(getattr(analyzer, "embedding_space", ""))}
    writer.finish(backbone.encode_text([""]), info, backbone.profile.name)
    report.write()
    return report
