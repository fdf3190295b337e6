"""Finding and checking an insightface model pack before insightface sees it.

insightface downloads a pack it cannot find (which fails offline with a network traceback) and
answers a folder without a detector with a bare `AssertionError`. We look first and say what to
put where. Packs live in ``<root>/models/<pack>/*.onnx`` where ``<root>`` is ComfyUI's
``models/insightface`` (plus any `insightface:` entry of extra_model_paths.yaml).

A pack also fixes the ArcFace embedding space: antelopev2 uses glintr100 (ResNet-100 trained on
Glint360K), buffalo_l uses w600k_r50 (ResNet-50 on WebFace600K). A checkpoint trained on one
space gets meaningless embeddings from the other, so :func:`check_embedding_space` refuses it
unless the user overrides.

Stand-in packs (random tiny models for tests and demos, `hyperlora_core.standins`) carry a marker
file; their embedding space is `standin:<folder>`, which every check accepts. That is the one place
the real path knows about stand-ins.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from ..errors import DamagedFileError, HyperLoRAError
from ..walk import list_dir, unreadable_message, unreadable_part, walk

DEFAULT_PACK = "antelopev2"

REQUIRED_TASKS: dict[str, str] = {
    "detection": "face detector (SCRFD)",
    "landmark_2d_106": "106-point 2D landmark model",
    "recognition": "ArcFace recognition model",
}
"""The three models HyperLoRA runs; the others in a pack (3D landmarks, gender/age) are skipped."""

KNOWN_FILES: dict[str, dict[str, str]] = {
    "antelopev2": {
        "detection": "scrfd_10g_bnkps.onnx",
        "landmark_2d_106": "2d106det.onnx",
        "recognition": "glintr100.onnx",
    },
    "buffalo_l": {"detection": "det_10g.onnx", "landmark_2d_106": "2d106det.onnx", "recognition": "w600k_r50.onnx"},
    "buffalo_m": {"detection": "det_2.5g.onnx", "landmark_2d_106": "2d106det.onnx", "recognition": "w600k_r50.onnx"},
    "buffalo_s": {"detection": "det_500m.onnx", "landmark_2d_106": "2d106det.onnx", "recognition": "w600k_mbf.onnx"},
}

RECOGNIZER_SPACE: dict[str, str] = {
    "glintr100.onnx": "antelopev2",
    "w600k_r50.onnx": "buffalo_l",
    "w600k_mbf.onnx": "buffalo_s",
}
"""Recognition file -> the embedding space it produces (named after the pack that ships it)."""

WHERE = "ComfyUI/models/insightface/models/"


def _files_hint(name: str) -> str:
    files = KNOWN_FILES.get(name, KNOWN_FILES[DEFAULT_PACK])
    return ", ".join(files.values())


def _onnx(folder: Path) -> list[Path]:
    return [Path(e.path) for e in list_dir(folder) if e.name.lower().endswith(".onnx") and _is_file(e)]


def list_packs(roots: Sequence[str | os.PathLike]) -> list[str]:
    """Pack folder names under every `<root>/models/` (for a node's drop-down)."""
    names: list[str] = []
    for root in roots:
        for child in list_dir(Path(root) / "models"):
            if _is_dir(child) and child.name not in names and not child.name.startswith("."):
                names.append(child.name)
    return names


def _is_dir(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir()
    except OSError:
        return False


def _is_file(entry: os.DirEntry) -> bool:
    try:
        return entry.is_file()  # False for a link to nothing
    except OSError:
        return False


def main_file(folder: Path) -> str | None:
    """The file a pack is listed by: its ArcFace recognition model (which fixes the embedding space)."""
    files = [p.name for p in _onnx(folder)]
    preferred = [KNOWN_FILES.get(folder.name, {}).get("recognition"), *RECOGNIZER_SPACE]
    return next((name for name in preferred if name in files), files[0] if files else None)


def pack_choices(roots: Sequence[str | os.PathLike]) -> list[str]:
    """`<pack>/<recognition model>.onnx` for every pack with models directly in its folder, relative to
    `<root>/models/` (a loader's drop-down: a file name, so ComfyUI's frontends can tell when it is missing)."""
    out = []
    for name in list_packs(roots):
        folder = next(Path(r) / "models" / name for r in roots if os.path.isdir(Path(r) / "models" / name))
        main = main_file(folder)
        if main:
            out.append(f"{name}/{main}")
    return out


def pack_name(value: str) -> str:
    """The pack folder a loader value names: 'antelopev2/glintr100.onnx', or 'antelopev2' as older workflows have it."""
    return value.replace("\\", "/").split("/")[0]


def find_pack(name: str | os.PathLike, roots: Sequence[str | os.PathLike]) -> Path:
    """Resolve a pack name (or a folder path) to a folder with `.onnx` files, or explain the problem.

    Checks, in order: the folder exists (else: where to put it); it is not the nested
    `<pack>/<pack>/` layout an unzip often leaves; it holds `.onnx` files.
    """
    direct = Path(name)
    if direct.is_absolute() or os.sep in str(name) or (os.altsep and os.altsep in str(name)):
        candidates = [direct]
        pack = direct.name
    else:
        pack = str(name)
        candidates = [Path(r) / "models" / pack for r in roots]
    folder = next((c for c in candidates if os.path.isdir(c)), None)
    if folder is None:
        misplaced = [Path(r) / pack for r in roots if os.path.isdir(Path(r) / pack)]
        searched = "; ".join(str(c) for c in candidates) or "(no insightface folder is registered)"
        blocked = next((b for r in roots if (b := unreadable_part(r, f"models/{pack}"))), None)
        if blocked is not None and not direct.is_absolute():
            raise DamagedFileError("unreadable", unreadable_message(*blocked))
        if misplaced:
            raise HyperLoRAError(
                f'face model pack "{pack}" is at {misplaced[0]}, one level too high. Move it to '
                f"{Path(misplaced[0]).parent / 'models' / pack} (the layout is models/insightface/models/{pack}/*.onnx)."
            )
        raise HyperLoRAError(
            f'face model pack "{pack}" not found (looked in: {searched}). Download {pack}.zip '
            f"(from the insightface model zoo) and unzip it so that {WHERE}{pack}/ holds {_files_hint(pack)}."
        )
    files = _onnx(folder)
    if files:
        return folder
    nested = folder / folder.name
    if nested.is_dir() and _onnx(nested):
        raise HyperLoRAError(
            f"the face model pack is nested: the .onnx files are in {nested}. Move them one level up into "
            f"{folder} (so that {folder}/{_onnx(nested)[0].name} exists) and delete the empty inner folder."
        )
    deeper = [here for here, _, files in walk(folder, max_depth=4) if here != folder and any(f.endswith(".onnx") for f in files)]
    if deeper:
        raise HyperLoRAError(
            f'the .onnx files of face model pack "{pack}" are in the sub-folder {deeper[0]}; select that folder '
            f"instead, or move them into {folder}."
        )
    other = sorted(p.name for p in folder.iterdir())[:8]
    raise HyperLoRAError(
        f"face model folder {folder} holds no .onnx files"
        + (f" (found: {', '.join(other)})" if other else " (it is empty)")
        + f". Put the pack's models there: {_files_hint(pack)}."
    )


def missing_tasks_message(folder: Path, found: Sequence[str]) -> str | None:
    """Which of detection / 2D-106 landmarks / recognition is missing, and which file supplies it."""
    missing = [t for t in REQUIRED_TASKS if t not in found]
    if not missing:
        return None
    known = KNOWN_FILES.get(folder.name, KNOWN_FILES[DEFAULT_PACK])
    parts = [f"{REQUIRED_TASKS[t]} (e.g. {known[t]})" for t in missing]
    present = ", ".join(p.name for p in _onnx(folder))
    return (
        f"face model pack {folder} is incomplete: no {' and no '.join(parts)} among its files ({present}). "
        f"Copy the missing file(s) from the complete {folder.name}.zip into that folder."
    )


STANDIN_MARKER = "STANDIN.txt"
"""The file that marks a folder of stand-in face models."""
STANDIN_SPACE = "standin:"
"""Prefix of a stand-in pack's embedding space (accepted by every check: its embeddings mean nothing)."""


def is_standin_pack(folder: str | os.PathLike) -> bool:
    return (Path(folder) / STANDIN_MARKER).is_file()


def is_standin_space(space: str) -> bool:
    return space.startswith(STANDIN_SPACE)


def embedding_space(folder: Path, recognition_file: str | None) -> str:
    """The ArcFace space a pack produces: known from the recognition file, else the folder name
    (`standin:<folder name>` for stand-in models)."""
    if is_standin_pack(folder):
        return STANDIN_SPACE + Path(folder).name
    if recognition_file and Path(recognition_file).name in RECOGNIZER_SPACE:
        return RECOGNIZER_SPACE[Path(recognition_file).name]
    return folder.name


def check_embedding_space(space: str, expected: str, allow_mismatch: bool = False) -> None:
    """Refuse a face pack whose ArcFace space differs from the one the checkpoint was trained on."""
    if space == expected or allow_mismatch or is_standin_space(space):
        return
    raise HyperLoRAError(
        f'this checkpoint was trained on "{expected}" face embeddings, but the selected face models '
        f'produce "{space}" embeddings. Different ArcFace models embed faces in different spaces, so '
        f"the ID-LoRA would come out wrong, not merely worse. Select the {expected} pack "
        f"({WHERE}{expected}/), or override the check if you trained this checkpoint on {space}."
    )
