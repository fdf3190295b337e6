"""Putting the toy world where ComfyUI finds it, and writing held-out reference photos.

Two ways, both used by `make demo` when no real weights are present:

- `install_toy_world(models_dir)`: links (or copies) the files into a ComfyUI `models` folder:
  `models/toy_world/*` (UNet, VAE, caption encoder, the ArcFace/CLIP analogues, the judge and the
  HyperLoRA, for the Toy World Loader) and `models/hyper_lora/toy_world/toy_hyperlora.safetensors`
  (found by the HyperLoRA Loader); the DiT base's files (`files.DIT_FILES`) too where the world has them.
- `extra_model_paths_yaml()`: the same without copying, as an `extra_model_paths.yaml` section.

`write_reference_photos(folder)` writes PNG photos of held-out identities (never seen in any
training stage) for LoadImage nodes.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import HyperLoRAError
from . import files, world

TOY_FOLDER = "toy_world"
"""ComfyUI model-folder name of the toy world's parts (`models/toy_world`)."""


def install_toy_world(models_dir: str | os.PathLike, source: str | os.PathLike | None = None,
                      mode: str = "link") -> dict[str, Path]:
    """Make the toy world visible to ComfyUI's loaders under `models_dir`; returns part -> path."""
    if mode not in ("link", "copy"):
        raise HyperLoRAError(f"mode must be 'link' or 'copy', not {mode!r}.")
    src_dir = files.world_dir(source)
    models = Path(models_dir)
    placed: dict[str, Path] = {}
    dit = {part: name for part, name in files.DIT_FILES.items() if (src_dir / name).is_file()}  # a DiT, if built
    for part, name in {**files.FILES, **dit}.items():
        src = (src_dir / name).resolve()
        if not src.is_file():
            raise HyperLoRAError(f"{src}: the toy world's {part} is missing; run `make toy-world` first.")
        hyper = name.startswith("hyper_lora/")
        dst = models / "hyper_lora" / TOY_FOLDER / Path(name).name if hyper else models / TOY_FOLDER / Path(name).name
        placed[part] = _place(src, dst, mode)
        if hyper:  # the world folder stays complete too (the Toy World Loader reads it there)
            _place(src, models / TOY_FOLDER / name, mode)
    return placed


def _place(src: Path, dst: Path, mode: str) -> Path:
    """`dst` becomes a link to (or a copy of) `src`, replacing what was there."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.is_symlink() or dst.exists():
        dst.unlink()
    if mode == "link":
        dst.symlink_to(src)
    else:
        shutil.copy2(src, dst)
    return dst


def extra_model_paths_yaml(source: str | os.PathLike | None = None, section: str = "hyperlora_toy_world") -> str:
    """An extra_model_paths.yaml section that points ComfyUI at the toy world in place."""
    src = files.world_dir(source).resolve()
    return (f"{section}:\n"
            f"    base_path: {src}\n"
            f"    {TOY_FOLDER}: .\n"
            f"    hyper_lora: {Path(files.FILES['hyperlora']).parent.as_posix()}\n")


def _pixel_upscale(images: np.ndarray, scale: int) -> np.ndarray:
    """Nearest-neighbour upscaling of `[..., H, W, 3]` by an integer factor (pixel art stays sharp)."""
    return images.repeat(scale, axis=-3).repeat(scale, axis=-2) if scale > 1 else images


def heldout_photos(index: int, count: int = 1, seed: int = 0, scale: int = 1) -> tuple[np.ndarray, int]:
    """`count` photos `[count, 32*scale, 32*scale, 3]` uint8 of the `index`-th held-out identity (never seen
    in any training stage; other seeds give other backgrounds, clothes and poses) and its identity number."""
    held = world.heldout_identities()
    if not 0 <= index < len(held):
        raise HyperLoRAError(f"held-out identity index {index} is out of range; the toy world holds out "
                             f"{len(held)} identities: choose 0 to {len(held) - 1}.")
    if not 1 <= count <= 64 or not 1 <= scale <= 16:
        raise HyperLoRAError(f"photos must be 1 to 64 and scale 1 to 16; got photos={count}, scale={scale}.")
    ident = int(held[index])
    images = world.render_set([ident], count, seed).images
    return _pixel_upscale(images, scale), ident


def write_reference_photos(folder: str | os.PathLike, identities: int = 8, refs: int = 4, seed: int = 0,
                           scale: int = 1) -> tuple[list[Path], np.ndarray]:
    """PNG photos `heldout_<identity>_<j>.png` of held-out identities; returns the paths (identity-major) and
    each photo's named base factors `[N, 3]` (background colour, pattern, shirt)."""
    ids = world.spread_heldout_identities(identities)
    renders = world.render_set(ids, refs, seed)
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for img, ident, j in zip(renders.images, renders.identity, renders.render_index):
        p = out / f"heldout_{int(ident):04d}_{int(j)}.png"
        Image.fromarray(_pixel_upscale(np.asarray(img), scale)).save(p)
        paths.append(p)
    return paths, renders.base_factors


def read_photo(path: str | os.PathLike) -> np.ndarray:
    """A reference photo as `[32, 32, 3]` uint8 (larger photos are resized with area averaging)."""
    img = Image.open(path).convert("RGB")
    if img.size != (world.IMAGE_SIZE, world.IMAGE_SIZE):
        img = img.resize((world.IMAGE_SIZE, world.IMAGE_SIZE), Image.BOX)
    return np.asarray(img, dtype=np.uint8)
