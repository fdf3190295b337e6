"""ComfyUI model folders HyperLoRA uses, registered with `folder_paths` (so extra_model_paths.yaml works).

- ``insightface``: face packs in ``<folder>/models/<pack>/*.onnx`` (``models/insightface`` by default).
- ``hyper_lora``: HyperLoRA checkpoints (published folders in ``hyper_lora/hyper_lora/<name>/`` as the
  authors' README says, or our single ``.safetensors`` files) and the HF-format CLIP folder in
  ``hyper_lora/clip_vit/<name>/``.
- ``clip_vision``: ComfyUI's own folder, for CLIP vision ``.safetensors`` files.
- ``toy_world``: toy worlds (``models/toy_world`` and its sub-folders), for the Toy World Loader.

Call :func:`register_model_folders` once at import of the node pack; it keeps folders that an
extra_model_paths.yaml already registered first in the list.
"""

from __future__ import annotations

import os
from pathlib import Path

import folder_paths

from ..errors import HyperLoRAError
from ..face.analyzer import FaceAnalyzer
from ..face.packs import find_pack, list_packs, pack_choices
from ..file_cache import LOADED
from ..walk import list_dir

INSIGHTFACE = "insightface"
HYPER_LORA = "hyper_lora"
CLIP_VISION = "clip_vision"
TOY_WORLD = "toy_world"
CLIP_SUBFOLDERS = ("clip_vit",)
_EXTENSIONS = {INSIGHTFACE: {".onnx"}, HYPER_LORA: {".safetensors"}, TOY_WORLD: {".safetensors"}}


def register_model_folders() -> None:
    """Add `models/insightface`, `models/hyper_lora` and `models/toy_world` to ComfyUI's folder registry (idempotent)."""
    for name, exts in _EXTENSIONS.items():
        default = os.path.join(folder_paths.models_dir, name)
        folder_paths.add_model_folder_path(name, default)
        paths, known = folder_paths.folder_names_and_paths[name]
        folder_paths.folder_names_and_paths[name] = (paths, set(known) | exts)


def _paths(name: str) -> list[Path]:
    register_model_folders()
    try:
        return [Path(p) for p in folder_paths.get_folder_paths(name)]
    except KeyError:
        return []


def insightface_roots() -> list[Path]:
    return _paths(INSIGHTFACE)


def hyper_lora_roots() -> list[Path]:
    return _paths(HYPER_LORA)


def toy_world_roots() -> list[Path]:
    return _paths(TOY_WORLD)


def face_pack_names() -> list[str]:
    """Pack folders found under every registered insightface folder."""
    return list_packs(insightface_roots())


def face_pack_choices() -> list[str]:
    """Packs as `<pack>/<recognition model>.onnx` (see `face.packs.pack_choices`)."""
    return pack_choices(insightface_roots())


def model_roots() -> dict[str, list[Path]]:
    """Every folder ComfyUI has registered for each model kind HyperLoRA uses (for `hyperlora_core.models`)."""
    from ..models.check import FOLDERS

    return {name: _paths(name) for name in FOLDERS}


def comfyui_folder() -> Path:
    """The ComfyUI folder as `python -m hyperlora_core.models --comfyui` takes it (its base directory: models/
    and extra_model_paths.yaml), for the commands messages print."""
    return Path(folder_paths.base_path)


def find_face_pack(pack: str) -> Path:
    """A pack's folder in the registered insightface folders, or an error saying what to put where."""
    return find_pack(pack, insightface_roots())


def load_face_analyzer(pack: str = "antelopev2", providers: str = "auto") -> FaceAnalyzer:
    """A FaceAnalyzer for a pack in the registered folders; reused while the files are unchanged
    (one pack at a time: its sessions hold hundreds of MB)."""
    folder = find_face_pack(pack)
    return LOADED.get("face_analyzer", folder, lambda f: FaceAnalyzer.load(f, providers=providers), providers)


def _is_hf_clip_folder(path: Path) -> bool:
    try:
        return path.is_dir() and (path / "model.safetensors").is_file()
    except OSError:  # unreadable: Python < 3.12 raises from is_dir
        return False


def clip_vision_choices() -> list[str]:
    """CLIP vision files in models/clip_vision plus HF-format folders (hyper_lora/clip_vit/<name>)."""
    names = [n for n in folder_paths.get_filename_list(CLIP_VISION) if n.lower().endswith((".safetensors", ".sft"))
             and folder_paths.get_full_path(CLIP_VISION, n)]  # a link to nothing is not a choice
    for root in hyper_lora_roots():
        for sub in CLIP_SUBFOLDERS:
            names += [f"{sub}/{d.name}" for d in list_dir(root / sub) if _is_hf_clip_folder(Path(d.path))]
    for root in _paths(CLIP_VISION):
        names += [d.name for d in list_dir(root) if _is_hf_clip_folder(Path(d.path))]
    return list(dict.fromkeys(names))


def resolve_clip_vision(name: str) -> Path:
    """Path of a name from :func:`clip_vision_choices` (file or HF folder)."""
    full = folder_paths.get_full_path(CLIP_VISION, name)
    if full:
        return Path(full)
    for root in [*hyper_lora_roots(), *_paths(CLIP_VISION)]:
        candidate = root / name
        if _is_hf_clip_folder(candidate):
            return candidate
    raise HyperLoRAError(
        f'CLIP vision model "{name}" not found. Put a CLIP ViT-L/14 .safetensors in ComfyUI/models/clip_vision/ '
        "or the HF folder (config.json + model.safetensors) in ComfyUI/models/hyper_lora/clip_vit/<name>/."
    )
