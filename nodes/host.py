"""The few host services node files use: model folders, the output folder, progress bars.

Kept in one module so node files stay declarative and so the classic/V3 choice, the folder
registration and the output-path rules live in one place.
"""

from __future__ import annotations

import datetime
import logging
import os
import re
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

import folder_paths

from hyperlora_core.checkpoint import BASIS_FILE, MODULES_JSON, PART_FILES, read_config
from hyperlora_core.comfy_bridge import folders, input_photos
from hyperlora_core.errors import DamagedFileError, HyperLoRAError, os_error_message
from hyperlora_core.models.check import FETCH_NODE, PUBLISHED_SUBFOLDER, check_file, item_for, missing_message
from hyperlora_core.models.command import models_command
from hyperlora_core.walk import unreadable_message, unreadable_part, walk

log = logging.getLogger("HyperLoRA")

NOT_FOUND = "(none found)"
_PART_NAMES = {BASIS_FILE, *PART_FILES.values()}
_NOT_CHECKPOINTS = {"clip_vit", "clip_processor"}
_REQUIRED_PARTS = (MODULES_JSON, BASIS_FILE, PART_FILES["resampler"])
INCOMPLETE = " (incomplete: no "


def hyper_lora_roots() -> list[Path]:
    return folders.hyper_lora_roots()


def list_checkpoints() -> list[str]:
    """Checkpoints under models/hyper_lora, relative to their root: a published folder by its main file
    (`<folder>/hyper_lora_modules.safetensors`, the name the workflows' download entries carry, so the
    frontend can tell when it is missing) and our single files by their name.

    The published pack's place (`hyper_lora/hyper_lora/<name>/`) lists under the same name as
    `hyper_lora/<name>/`. Its CLIP folders (`clip_vit/`, `clip_processor/`) and any HF-format model
    folder (with a config.json) are not checkpoints and are skipped. A folder holding some of a
    checkpoint's files but not all is listed as `<name> (incomplete: no <file>)`, so it does not
    vanish: choosing it gives the message that says what to copy where. Symlinks are followed,
    each real folder once (a link loop is logged, never walked forever).
    """
    found: set[str] = set()
    for root in hyper_lora_roots():
        if not os.path.isdir(root):  # False, not PermissionError, for a root behind a closed folder
            continue
        for here, dirnames, filenames in walk(root):
            dirnames[:] = [d for d in dirnames if not d.startswith(".") and not (here == root and d in _NOT_CHECKPOINTS)]
            listed = _listed_name(here.relative_to(root))
            missing = [f for f in _REQUIRED_PARTS if f not in filenames]
            if len(missing) < len(_REQUIRED_PARTS):
                if here != root:
                    found.add(f"{listed}/{BASIS_FILE}" if not missing else f"{listed}{INCOMPLETE}{', '.join(missing)})")
                dirnames[:] = []
                continue
            if "config.json" in filenames:
                continue
            for name in filenames:
                if name.endswith(".safetensors") and name not in _PART_NAMES and not name.startswith("."):
                    found.add((here / name).relative_to(root).as_posix())
    return sorted(found) or [NOT_FOUND]


def _listed_name(folder: PurePosixPath | Path) -> str:
    parts = PurePosixPath(folder.as_posix()).parts
    return "/".join(parts[1:] if len(parts) > 1 and parts[0] == PUBLISHED_SUBFOLDER else parts)


def resolve_in(roots: list[Path], name: str, what: str, where: str) -> Path:
    """`name` (from a widget) inside one of `roots`, never outside them. The name itself may not climb
    out ('..', absolute paths); symlinked files and folders inside a root are fine, as in ComfyUI."""
    if not name or name == NOT_FOUND:
        raise HyperLoRAError(f"no {what} selected: put one into {where} and press 'r' (refresh) in ComfyUI.")
    for root in roots:
        base = os.path.abspath(root)
        candidate = os.path.normpath(os.path.join(base, name))
        if os.path.commonpath([base, candidate]) == base and os.path.exists(candidate):
            return Path(candidate).resolve()
    for root in roots:
        blocked = unreadable_part(root, name) if not os.path.isabs(name) and ".." not in name else None
        if blocked is not None:
            raise DamagedFileError("unreadable", unreadable_message(*blocked))
    raise HyperLoRAError(f"{what} '{name}' not found in {where} ({', '.join(str(r) for r in roots)}).")


def resolve_checkpoint(name: str) -> Path:
    """A Loader value (a listed name, or a published folder's name as older workflows have it) -> its path
    (an incomplete folder resolves, so loading it explains)."""
    if isinstance(name, str) and INCOMPLETE in name:
        name = name.split(INCOMPLETE)[0]
    roots = hyper_lora_roots()
    return resolve_in(roots + [r / PUBLISHED_SUBFOLDER for r in roots], name, "HyperLoRA checkpoint", "models/hyper_lora")


def checkpoint_files(name: str) -> Path:
    """What a Loader value loads from: a published folder (every part in it) or our single file."""
    path = resolve_checkpoint(name)
    return path.parent if path.name in _PART_NAMES or path.name == MODULES_JSON else path


def missing_model(folder: str, value: str, what: str) -> str:
    """`missing_message` for a loader's value in ComfyUI's registered folders, its command for this install."""
    return missing_message(folder, value, folders.model_roots(), what, folders.comfyui_folder())


def checkpoint_problem(name: str) -> str | None:
    """Why a Loader value cannot be loaded (checked when the prompt is queued), or None."""
    if not name or name == NOT_FOUND:
        return (f"no HyperLoRA checkpoint in models/hyper_lora yet: run the node {FETCH_NODE} (accept the licence) or "
                f"`{models_command('fetch', 'hyperlora-fidelity', comfyui=folders.comfyui_folder())}`, then press 'r' "
                "(refresh) in ComfyUI and pick it.")
    try:
        path = resolve_checkpoint(name)
    except DamagedFileError as err:  # there, but the server may not open its folder
        return str(err)
    except HyperLoRAError:
        return missing_model("hyper_lora", name, "HyperLoRA checkpoint")
    try:
        read_config(path)
    except HyperLoRAError as err:
        roots = folders.model_roots()
        known = item_for("hyper_lora", name)
        if known is not None and not all(check_file(known, f, roots).ok for f in known.files):
            return missing_model("hyper_lora", name, "HyperLoRA checkpoint")
        return str(err)
    return None


# -- output files ---------------------------------------------------------------------------------
_UNSAFE = re.compile(r"[^\w\-. %]")  # % keeps ComfyUI's %year%, %month%, ... variables
MAX_NAME_BYTES = 200
"""Longest folder or file name in a prefix: file systems allow 255 bytes, and the number, the
extension and the temporary file's tag need the rest."""
NUMBERS_TRIED = 10_000


def check_filename_prefix(prefix: str) -> str | None:
    """None if `prefix` names a place inside the output folder, else the reason it does not."""
    if not isinstance(prefix, str) or not prefix.strip():
        return "filename_prefix is empty; give a name such as 'hyperlora/my_face'."
    p = prefix.replace("\\", "/")
    if p.startswith("/") or re.match(r"^[A-Za-z]:", p):
        return f"filename_prefix '{prefix}' is an absolute path; LoRAs are saved inside ComfyUI's output folder only. Use a relative name such as 'hyperlora/my_face'."
    if any(part == ".." for part in p.split("/")):
        return f"filename_prefix '{prefix}' points outside the output folder ('..'); use a relative name such as 'hyperlora/my_face'."
    long = [part for part in p.split("/") if len(part.encode("utf-8")) > MAX_NAME_BYTES]
    if long:
        return (f"filename_prefix: the name '{long[0][:40]}...' is {len(long[0].encode('utf-8'))} bytes long; "
                f"each folder or file name may have at most {MAX_NAME_BYTES}. Use a shorter name.")
    return None


_REPLACEMENT = re.compile(r"%([^%]+)%")
_DATE_TOKEN = re.compile(r"dd?|MM?|hh?|mm?|ss?|yyy?y?")
_NOT_IN_NAMES = re.compile(r'[/?<>\\:*|"\x00-\x1f\x7f]')


def _format_date(fmt: str, now: datetime.datetime) -> str:
    """The frontend's `%date:FORMAT%`: d, M, h, m, s (doubled = two digits), yy, yyyy."""
    fields = {"d": now.day, "M": now.month, "h": now.hour, "m": now.minute, "s": now.second}

    def one(token: re.Match) -> str:
        t = token.group(0)
        if t in ("yy", "yyyy"):
            return str(now.year)[-2:] if t == "yy" else str(now.year)
        return str(fields[t[0]]).zfill(len(t)) if t[0] in fields else t

    return _DATE_TOKEN.sub(one, fmt)


def _widget_text(prompt: dict, node: str, widget: str) -> str | None:
    """Widget `widget` of the first node whose type, else whose title, is `node` (None: no such value)."""
    nodes = [n for n in prompt.values() if isinstance(n, dict)]
    found = [n for n in nodes if n.get("class_type") == node] or \
            [n for n in nodes if (n.get("_meta") or {}).get("title") == node]
    value = (found[0].get("inputs") or {}).get(widget) if found else None
    if value is None or isinstance(value, (list, dict)):  # absent, or a link: nothing to print
        return None
    text = str(value).lower() if isinstance(value, bool) else f"{value:g}" if isinstance(value, float) else str(value)
    return _NOT_IN_NAMES.sub("_", text)


def format_filename_prefix(prefix: str, prompt: dict | None, now: datetime.datetime | None = None) -> str:
    """ComfyUI's frontend formatting of a `filename_prefix`, done here so the API gets it too:
    `%date:yyyy-MM-dd%` and `%NodeName.widget%` (a node by its type, else its title; the value with
    characters that cannot be in a name made `_`). Unknown patterns stay for ComfyUI's own
    `%year%`, `%month%`, ... in `get_save_image_path`."""
    now = now or datetime.datetime.now()

    def one(match: re.Match) -> str:
        parts = match.group(1).split(".")
        if len(parts) != 2:
            return _format_date(parts[0][5:], now) if parts[0].startswith("date:") else match.group(0)
        text = _widget_text(prompt, *parts) if isinstance(prompt, dict) else None
        return match.group(0) if text is None else text

    return _REPLACEMENT.sub(one, prefix) if isinstance(prefix, str) else prefix


def output_candidates(prefix: str, suffix: str = ".safetensors") -> Iterator[Path]:
    """`<output>/<sub>/<name>_00001_<suffix>`, `..._00002_...`: ComfyUI's folder rule and first free
    number (`folder_paths.get_save_image_path`), then the next numbers, for an atomic claim."""
    reason = check_filename_prefix(prefix)
    if reason:
        raise HyperLoRAError(reason)
    output = folder_paths.get_output_directory()
    parts = [_UNSAFE.sub("_", part).strip() or "_" for part in prefix.replace("\\", "/").split("/") if part not in ("", ".")]
    try:
        folder, name, counter, _, _ = folder_paths.get_save_image_path("/".join(parts), output)
    except OSError as exc:
        raise HyperLoRAError(f"filename_prefix '{prefix}': {os_error_message(exc.filename or output, exc, 'write')}") from None
    except Exception:  # noqa: BLE001 - ComfyUI raises a bare Exception for a place outside the output folder
        raise HyperLoRAError(f"filename_prefix '{prefix}' resolves outside the output folder ({output}).") from None
    return (Path(folder) / f"{name}_{n:05d}_{suffix}" for n in range(counter, counter + NUMBERS_TRIED))


def output_relative(path: Path) -> tuple[str, str]:
    """(subfolder, filename) relative to the output folder, as ComfyUI's UI results name files."""
    output = Path(folder_paths.get_output_directory()).resolve()
    rel = path.resolve().relative_to(output)
    return (rel.parent.as_posix() if rel.parent.as_posix() != "." else ""), rel.name


# -- progress -------------------------------------------------------------------------------------
class Progress:
    """ComfyUI's progress bar for the running node, as the core's `progress(done, total)` callback.

    The bar is made on the first report, when the total is known, and driven only through
    `ProgressBar`'s public `update_absolute`. Newer hosts throttle what reaches the browser (updates
    >= 0.1 s and >= 0.5 % apart), so nothing here counts on every update arriving. Outside an execution ComfyUI's hook is unset and updates go nowhere.
    """

    def __init__(self) -> None:
        self._bar = None

    def __call__(self, done: int, total: int) -> None:
        import comfy.utils

        total = max(1, int(total))
        if self._bar is None:
            self._bar = comfy.utils.ProgressBar(total)
        self._bar.update_absolute(min(int(done), total), total)


def custom_node_dirs() -> list[Path]:
    try:
        return [Path(p) for p in folder_paths.get_folder_paths("custom_nodes")]
    except KeyError:
        return []


# -- sample photos --------------------------------------------------------------------------------
SAMPLE_PHOTOS = Path(__file__).resolve().parents[1] / "workflows" / "photos"
"""The templates' sample photos (made by `workflows/sample_photos.py`), shipped with the pack."""


def place_sample_photos() -> list[str]:
    """Inside a running ComfyUI server, put the templates' sample photos into its input folder (where LoadImage
    finds them), never over a file of the same name; returns the names placed."""
    if not input_photos.serving() or not SAMPLE_PHOTOS.is_dir():
        return []
    return input_photos.place_input_photos(sorted(p for p in SAMPLE_PHOTOS.iterdir() if p.is_file()))
