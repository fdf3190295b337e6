"""Where each file HyperLoRA needs is, or should be, and what is wrong with it.

Works on plain folders (a ComfyUI install and its extra_model_paths.yaml, or the folders ComfyUI
has registered, passed in by the Model Check node), so the command runs without starting ComfyUI.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import yaml

from ..errors import HyperLoRAError
from ..face.packs import find_pack, is_standin_pack, list_packs
from .command import models_command
from .files import file_problem
from .manifest import Item, ModelFile, items

Roots = Mapping[str, Sequence[Path]]
"""ComfyUI model folder name -> the directories registered for it, the default one first."""

FOLDERS = ("hyper_lora", "clip_vision", "insightface", "checkpoints", "controlnet")
PUBLISHED_SUBFOLDER = "hyper_lora"
"""The published pack keeps checkpoints in models/hyper_lora/hyper_lora/<name>/; the Loader reads both places."""
_SEARCH_DEPTH = 4
FETCH_NODE = "HyperLoRA Fetch Models"
"""The node that downloads what is missing from inside the editor (the queue-time messages point to it)."""

STATUS_TEXT = {
    "ok": "ok",
    "missing": "missing",
    "misplaced": "in the wrong place",
    "lfs_pointer": "Git-LFS pointer, not the file",
    "web_page": "an HTML page, not the file",
    "truncated": "truncated (download stopped)",
    "empty": "empty",
    "invalid": "damaged",
    "wrong_pack": "another face pack instead",
    "standin": "a stand-in (tests, demo), not the model",
}


@dataclass(frozen=True)
class FileStatus:
    item: Item
    file: ModelFile
    status: str
    """A key of STATUS_TEXT."""
    where: Path
    """Where the file is (ok or damaged) or should go (missing, misplaced)."""
    detail: str = ""
    """What was found and what to do, for anything but "ok"."""

    @property
    def ok(self) -> bool:
        return self.status == "ok"


@dataclass(frozen=True)
class Report:
    roots: Roots
    files: tuple[FileStatus, ...]

    def for_item(self, item_id: str) -> tuple[FileStatus, ...]:
        return tuple(f for f in self.files if f.item.id == item_id)

    @property
    def ready(self) -> bool:
        """Everything required (the manifest's default items) is in place."""
        return all(f.ok for f in self.files if f.item.default)

    def text(self, comfyui: Path | None = None) -> str:
        """The report; each fix names the exact command for the ComfyUI at `comfyui` (None: without --comfyui)."""
        lines = []
        for it in dict.fromkeys(f.item for f in self.files):
            rows = self.for_item(it.id)
            state = "ok" if all(r.ok for r in rows) else ("needed" if it.default else "optional")
            lines.append(f"[{state}] {it.title} ({it.id}; licence: {it.licence})")
            for r in rows:
                lines.append(f"    {STATUS_TEXT[r.status]:<30} {r.where}")
                if r.detail:
                    lines.append(f"    {'':<30} {r.detail}")
            if state != "ok":
                if it.manual is not None:
                    lines.append(f"    -> by hand: {it.manual_steps(str(pack_folder(it, self.roots)))}")
                else:
                    lines.append(f"    -> {models_command('fetch', it.id, comfyui=comfyui)}")
        verdict = "everything HyperLoRA needs is in place." if self.ready else "something HyperLoRA needs is missing (see above)."
        return "\n".join([*lines, "", verdict])


def comfyui_roots(comfyui: Path) -> dict[str, list[Path]]:
    """The model folders of a ComfyUI install: models/<name>, then its extra_model_paths.yaml entries."""
    roots = {name: [comfyui / "models" / name] for name in FOLDERS}
    config = comfyui / "extra_model_paths.yaml"
    if config.is_file():
        for name, paths in extra_model_paths(config).items():
            if name in roots:
                roots[name] += [p for p in paths if p not in roots[name]]
    return roots


def extra_model_paths(config: Path) -> dict[str, list[Path]]:
    """The folders an extra_model_paths.yaml adds, read as ComfyUI reads it."""
    data = yaml.safe_load(config.read_text(encoding="utf-8")) or {}
    out: dict[str, list[Path]] = {}
    for section in data.values():
        if not isinstance(section, dict):
            continue
        base = section.get("base_path")
        if base:
            base = Path(os.path.expandvars(os.path.expanduser(str(base))))
            base = base if base.is_absolute() else (config.parent / base)
        for name, value in section.items():
            if name in ("base_path", "is_default") or not isinstance(value, str):
                continue
            for line in filter(None, value.split("\n")):
                p = Path(line.strip())
                p = (base / p) if base else (p if p.is_absolute() else config.parent / p)
                out.setdefault(name, []).append(Path(os.path.normpath(p)))
    return out


def pack_folder(it: Item, roots: Roots) -> Path:
    """Where a face pack item's files go (its main file's folder under the default insightface root)."""
    return _default_root(it, roots) / Path(it.main.target).parent


def _default_root(it: Item, roots: Roots) -> Path:
    return Path(roots[it.folder][0])


def _places(it: Item, f: ModelFile, roots: Roots) -> Iterable[Path]:
    for root in roots.get(it.folder, ()):
        yield Path(root) / f.target
        if it.folder == "hyper_lora":
            yield Path(root) / PUBLISHED_SUBFOLDER / f.target


def _search(roots: Iterable[Path], f: ModelFile) -> list[Path]:
    """Copies of `f` elsewhere under `roots` (matched on its name and, if any, its folder's name)."""
    want = Path(f.target)
    hits = []
    for root in roots:
        root = Path(root)
        if not root.is_dir():
            continue
        for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
            here = Path(dirpath)
            depth = len(here.relative_to(root).parts)
            dirnames[:] = sorted(d for d in dirnames if not d.startswith(".")) if depth < _SEARCH_DEPTH else []
            if want.name in filenames and (len(want.parts) == 1 or here.name == want.parent.name):
                hits.append(here / want.name)
    return hits


def check_file(it: Item, f: ModelFile, roots: Roots) -> FileStatus:
    places = list(_places(it, f, roots))
    for place in places:
        if place.exists():
            problem = file_problem(place)
            if problem is None:
                return FileStatus(it, f, "ok", place)
            return FileStatus(it, f, problem.kind, place, str(problem))
    expected = places[0]
    if it.folder == "insightface":
        return _face_pack_file(it, f, roots, expected)
    search_roots = list(roots.get(it.folder, ())) + [Path(roots[it.folder][0]).parent]
    elsewhere = [p for p in _search(search_roots, f) if p not in places]
    if elsewhere:
        return FileStatus(it, f, "misplaced", expected, f"found at {elsewhere[0]}; move it to {expected}.")
    root = _default_root(it, roots)
    others = sorted(p.name for p in root.glob("*.safetensors")) if root.is_dir() and it.folder != "hyper_lora" else []
    hint = f"other files there: {', '.join(others[:5])} (select one in the node if it is the same model)." if others else ""
    return FileStatus(it, f, "missing", expected, hint)


def _face_pack_file(it: Item, f: ModelFile, roots: Roots, expected: Path) -> FileStatus:
    """A face-pack file that is not where insightface reads it: nested, one level too high, or another pack."""
    pack = expected.parent.name
    try:
        folder = find_pack(pack, roots[it.folder])
    except HyperLoRAError as err:
        others = [p for p in list_packs(roots[it.folder]) if p != pack]
        if "not found" in str(err) and others:
            return FileStatus(it, f, "wrong_pack", expected,
                              f"found only {', '.join(others)}: the published checkpoints need {pack}; another pack's "
                              "ArcFace model embeds faces in another space, so the ID-LoRA would come out wrong.")
        if "not found" in str(err):
            return FileStatus(it, f, "missing", expected)
        return FileStatus(it, f, "misplaced", expected, str(err))
    if is_standin_pack(folder):
        return FileStatus(it, f, "standin", folder, "random stand-in models: everything runs, faces mean nothing.")
    return FileStatus(it, f, "missing", expected, f"the {pack} folder exists but lacks {expected.name}.")


def check(roots: Roots, only: Sequence[str] | None = None) -> Report:
    """Every file of every manifest item (or of the items named in `only`)."""
    chosen = [it for it in items() if only is None or it.id in only]
    return Report(roots, tuple(check_file(it, f, roots) for it in chosen for f in it.files))


def _tails(path: PurePosixPath) -> set[str]:
    return {str(PurePosixPath(*path.parts[k:])) for k in range(len(path.parts))}


def item_for(folder: str, value: str) -> Item | None:
    """The manifest item a loader's value names (its main file or folder, or a tail of them), if any."""
    value = value.replace("\\", "/").strip("/")
    for it in items():
        main = PurePosixPath(it.main.target)
        if it.folder == folder and value in _tails(main) | _tails(main.parent):
            return it
    return None


def missing_message(folder: str, value: str, roots: Roots, what: str, comfyui: Path | None = None) -> str:
    """Why a loader's value names nothing usable and how to get it: the error a loader gives when a prompt is queued.

    Its first sentence names what is missing and the one action that fixes it (the Fetch node, or the exact
    command for this install), because the newer frontend's issues list shows little more; details follow."""
    places = ", ".join(str(r) for r in roots.get(folder, ()))
    it = item_for(folder, value)
    if it is None:
        return (f"{what} '{value}' is not in models/{folder}: put it there and press 'r' to refresh ComfyUI's model "
                f"lists, or pick one that is there. Searched: {places}.")
    bad = [r for r in (check_file(it, f, roots) for f in it.files) if not r.ok]
    missing = bool(bad) and all(r.status == "missing" for r in bad)
    if missing and not any(r.detail for r in bad):
        found = f"{', '.join(r.where.name for r in bad)} missing from {bad[0].where.parent}"
    else:
        found = "; ".join(f"{r.where} is {STATUS_TEXT[r.status]}" + (f" ({r.detail})" if r.detail else "") for r in bad)
    state = (f"is missing ({len(bad)} of {len(it.files)} files)" if missing
             else f"is not usable ({STATUS_TEXT[bad[0].status]})" if bad else "is not usable")
    if it.manual is not None:
        folder_path = pack_folder(it, roots)
        return (f"{what} '{value}' {state} and must be placed by hand: download {it.manual.url.rsplit('/', 1)[-1]} "
                f"and unzip it into {folder_path}. {found or 'not found'}. {it.manual.why} "
                f"By hand: {it.manual_steps(str(folder_path))}")
    return (f"{what} '{value}' {state}: run the node {FETCH_NODE} (accept the licence) or "
            f"`{models_command('fetch', it.id, comfyui=comfyui)}`, then press 'r'. {found or 'not found'}. "
            f"{it.title}, licence {it.licence}, from https://huggingface.co/{it.hub.repo}.")
