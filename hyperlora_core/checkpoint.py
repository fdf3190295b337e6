"""Loading and saving HyperLoRA checkpoints: the published folder layout and our single file.

Published folder (what users already have)::

    hyper_lora_modules.json          ordered module table (LoRA key prefix -> widths)
    hyper_lora_modules.safetensors   LoRA basis, keys "{i}.{to_q|to_k|to_v|to_out}.{id|base}_{down|up}_basis"
    resampler.safetensors            perceiver resampler
    id_projector.safetensors         face embedding -> ID tokens
    base_resampler.safetensors       optional Base-LoRA resampler

Single file (ours): the same tensors in one `.safetensors`, keys prefixed with the part name
(`hyper_lora_modules.`, `resampler.`, `id_projector.`, `base_resampler.`), the module table and
the remaining settings in the header metadata. Both load through the same shape inference.

Both formats record the base model the LoRAs are for (`hyperlora.base` in the safetensors metadata,
a profile name of `comfy_bridge.bases`); a checkpoint without it (the published ones, our files
from before base profiles) is SDXL's (`HyperLoRAConfig.base_name`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from torch import nn

from . import temporaries
from .config import (
    DEFAULT_DIM_HEAD,
    TRIGGER_WORDS,
    HyperLoRAConfig,
    ModuleSpec,
    basis_key,
    basis_layer_keys,
    check_consistency,
    infer_basis,
    infer_id_projector,
    infer_resampler,
    parse_module_list,
)
from .errors import HyperLoRAError, os_error_message
from .lora import LoRASpace
from .model import HyperLoRA
from .safetensors_io import load_tensors, read_metadata, read_shapes, save_tensors_atomic

log = logging.getLogger(__name__)

MODULES_JSON = "hyper_lora_modules.json"
BASIS_FILE = "hyper_lora_modules.safetensors"
PART_FILES = {
    "resampler": "resampler.safetensors",
    "id_projector": "id_projector.safetensors",
    "base_resampler": "base_resampler.safetensors",
}
SINGLE_FORMAT = "hyperlora-single/1"
_BASIS_PART = "hyper_lora_modules"


@dataclass
class _Source:
    """Where each part's tensors live: a file path, and a key prefix inside it."""

    label: str
    modules: tuple[ModuleSpec, ...]
    files: dict[str, tuple[Path, str]]
    metadata: dict[str, str]


def find_checkpoint(path: str | os.PathLike) -> Path:
    """Resolve what the user pointed at: a folder, a file inside one, a nested folder, or a single file."""
    p = Path(path).expanduser()
    if p.is_file():
        if p.name in (BASIS_FILE, MODULES_JSON, *PART_FILES.values()):
            return p.parent
        if p.suffix != ".safetensors":
            raise HyperLoRAError(
                f"{p}: not a HyperLoRA checkpoint. Point at a folder with {MODULES_JSON} or at a single "
                ".safetensors file saved by this pack."
            )
        return p
    if not p.is_dir():
        raise HyperLoRAError(f"{p}: no such file or folder.")
    if (p / MODULES_JSON).is_file() or (p / BASIS_FILE).is_file():
        return p
    nested = sorted({j.parent for j in p.glob(f"*/{MODULES_JSON}")} | {j.parent for j in p.glob(f"*/*/{MODULES_JSON}")})
    if len(nested) == 1:
        log.info("HyperLoRA: using the checkpoint in the nested folder %s", nested[0])
        return nested[0]
    if len(nested) > 1:
        raise HyperLoRAError(
            f"{p}: holds several checkpoints ({', '.join(str(n.relative_to(p)) for n in nested)}); pick one."
        )
    raise HyperLoRAError(
        f"{p}: no {MODULES_JSON} here. A HyperLoRA checkpoint folder holds {MODULES_JSON}, {BASIS_FILE}, "
        f"{PART_FILES['resampler']} and {PART_FILES['id_projector']}; put those four files directly in "
        "this folder (not in a sub-folder), or point at one of our single .safetensors files."
    )


def _published_source(folder: Path) -> _Source:
    json_path = folder / MODULES_JSON
    if not json_path.is_file():
        raise HyperLoRAError(
            f"{folder}: {MODULES_JSON} is missing. It comes with the checkpoint download, next to {BASIS_FILE}; "
            "copy it into this folder."
        )
    try:
        raw = json.loads(json_path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise HyperLoRAError(os_error_message(json_path, exc)) from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise HyperLoRAError(f"{json_path}: not valid JSON ({exc}); download it again.") from None
    modules = parse_module_list(raw, str(json_path))
    files = {}
    for part, name in {_BASIS_PART: BASIS_FILE, **PART_FILES}.items():
        f = folder / name
        if f.exists():
            files[part] = (f, "")
        elif part in (_BASIS_PART, "resampler"):
            raise HyperLoRAError(f"{folder}: {name} is missing; it is part of every HyperLoRA checkpoint.")
    metadata = read_metadata(files["resampler"][0])
    return _Source(label=str(folder), modules=modules, files=files, metadata=metadata)


def _single_source(path: Path) -> _Source:
    metadata = read_metadata(path)
    if metadata.get("hyperlora.format") != SINGLE_FORMAT:
        raise HyperLoRAError(
            f"{path}: not a HyperLoRA single-file checkpoint (no '{SINGLE_FORMAT}' metadata). If this is a "
            "generated LoRA, load it with a LoRA loader; if it is a published checkpoint part, point at its folder."
        )
    try:
        table = json.loads(metadata["hyperlora.modules"])
    except (KeyError, ValueError):
        raise HyperLoRAError(f"{path}: the module table in the metadata is missing or corrupt.") from None
    modules = parse_module_list(table, f"{path} (metadata)")
    prefixes = {k.split(".", 1)[0] for k in read_shapes(path)}
    files = {part: (path, part + ".") for part in (_BASIS_PART, *PART_FILES) if part in prefixes}
    if _BASIS_PART not in files or "resampler" not in files:
        raise HyperLoRAError(f"{path}: the basis or the resampler tensors are missing.")
    return _Source(label=str(path), modules=modules, files=files, metadata=metadata)


def _part_shapes(src: _Source, part: str) -> dict[str, tuple[int, ...]]:
    path, prefix = src.files[part]
    shapes = read_shapes(path)
    return {k[len(prefix):]: v for k, v in shapes.items() if k.startswith(prefix)}


def _label(src: _Source, part: str) -> str:
    path, prefix = src.files[part]
    return f"{path}" if not prefix else f"{path} [{prefix[:-1]}]"


def infer_config(src: _Source, dim_head: int | None = None) -> HyperLoRAConfig:
    """Architecture from shapes alone, validated part against part."""
    meta = src.metadata
    dim_head = dim_head or _metadata_int(src, "hyperlora.dim_head", DEFAULT_DIM_HEAD)
    face_pack = meta.get("hyperlora.face_pack", "antelopev2")
    if not face_pack.strip() or "/" in face_pack or "\\" in face_pack or face_pack.startswith("."):
        raise HyperLoRAError(f"{src.files['resampler'][0]}: metadata 'hyperlora.face_pack' is {face_pack!r}, not a "
                             "face pack folder name (e.g. 'antelopev2'). " + _REEXPORT)
    basis_size, rank, base_rank = infer_basis(_part_shapes(src, _BASIS_PART), src.modules, _label(src, _BASIS_PART))
    resampler = infer_resampler(_part_shapes(src, "resampler"), _label(src, "resampler"), dim_head)
    projector = (
        infer_id_projector(_part_shapes(src, "id_projector"), _label(src, "id_projector"))
        if "id_projector" in src.files
        else None
    )
    base = (
        infer_resampler(_part_shapes(src, "base_resampler"), _label(src, "base_resampler"), dim_head)
        if "base_resampler" in src.files
        else None
    )
    config = HyperLoRAConfig(
        modules=src.modules,
        basis_size=basis_size,
        rank=rank,
        resampler=resampler,
        id_projector=projector,
        base_rank=base_rank,
        base_resampler=base,
        face_pack=face_pack,
        trigger_words=meta.get("hyperlora.trigger_words", TRIGGER_WORDS),
        base=meta.get("hyperlora.base", ""),
    )
    check_consistency(config, src.label)
    if resampler.num_conditions == 2 and projector is None:
        raise HyperLoRAError(
            f"{src.label}: the resampler takes face tokens but {PART_FILES['id_projector']} is missing; "
            "copy it from the checkpoint download."
        )
    return config


_REEXPORT = ("The file's metadata is damaged or was edited: download the checkpoint again, or export your trained "
             "one again.")


def _metadata_int(src: _Source, key: str, default: int) -> int:
    """A positive integer from the checkpoint's metadata (strings in a safetensors header), or our message."""
    raw = src.metadata.get(key)
    if raw is None:
        return default
    try:
        value = int(raw) if str(raw).strip().lstrip("+").isdigit() else None
    except ValueError:
        value = None
    if value is None or value < 1:
        raise HyperLoRAError(f"{src.files['resampler'][0]}: metadata '{key}' is {raw!r}; it must be a positive "
                             f"integer (the published value is {default}). " + _REEXPORT)
    return value


def _load_small_part(module: nn.Module, src: _Source, part: str) -> None:
    path, prefix = src.files[part]
    label = _label(src, part)
    tensors = {k[len(prefix):]: v for k, v in load_tensors(path).items() if k.startswith(prefix)}
    own = module.state_dict()
    missing = sorted(set(own) - set(tensors))
    unexpected = sorted(set(tensors) - set(own))
    if missing or unexpected:
        raise HyperLoRAError(
            f"{label}: keys do not match the architecture inferred from its shapes "
            f"(missing {missing[:6]}, unexpected {unexpected[:6]}). The file is damaged or not a HyperLoRA part."
        )
    for key, t in tensors.items():
        if tuple(t.shape) != tuple(own[key].shape):
            raise HyperLoRAError(
                f"{label}: '{key}' has shape {list(t.shape)}, expected {list(own[key].shape)} "
                "(layers of different widths in one file). The file is damaged or mixed from two checkpoints."
            )
        if not torch.isfinite(t).all():
            raise HyperLoRAError(f"{label}: '{key}' contains NaN or infinite values; the file is damaged.")
    module.load_state_dict({k: v.to(own[k].dtype) for k, v in tensors.items()}, strict=True)


def _source(path: str | os.PathLike) -> _Source:
    where = find_checkpoint(path)
    return _single_source(where) if where.is_file() else _published_source(where)


def read_config(path: str | os.PathLike, dim_head: int | None = None) -> HyperLoRAConfig:
    """A checkpoint's architecture from its file headers alone (no tensor data is read): every part
    present, framed and shaped consistently. Cheap enough to run when a prompt is queued."""
    return infer_config(_source(path), dim_head)


def load_hyperlora(
    path: str | os.PathLike,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    dim_head: int | None = None,
) -> HyperLoRA:
    """Load either format. `dtype` sets the basis storage (default: as stored)."""
    src = _source(path)
    config = infer_config(src, dim_head)
    basis_path, basis_prefix = src.files[_BASIS_PART]
    with safe_open(str(basis_path), framework="pt") as f:
        stored = f.get_slice(basis_prefix + basis_key(*basis_layer_keys(config.modules)[0], "id", "down")).get_dtype()
    stored_dtype = {"F16": torch.float16, "BF16": torch.bfloat16, "F32": torch.float32}.get(stored, torch.float32)
    model = HyperLoRA(config, device="meta", dtype=dtype or stored_dtype).to_empty(device="cpu")
    for part in ("resampler", "id_projector", "base_resampler"):
        if part in src.files:
            _load_small_part(getattr(model, part), src, part)
    _load_basis(model, basis_path, basis_prefix)
    model.space = lora_space(src)
    model.eval().requires_grad_(False)
    if device is not None:
        model.to(device)
    return model


SPACE_SAMPLE = 1 << 20
"""Bytes of tensor data read from each end of the basis file for its digest."""


def lora_space(src: _Source) -> LoRASpace:
    """The checkpoint's `LoRASpace`: its name and a digest of its basis file's header and of the first and
    last MiB of its tensor data -- the same file gives the same digest on every machine and whatever dtype
    the Loader converts to; another training gives another (without reading a gigabyte basis twice)."""
    path, _ = src.files[_BASIS_PART]
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            header = int.from_bytes(f.read(8), "little")
            digest.update(f.read(header))
            digest.update(f.read(SPACE_SAMPLE))
            f.seek(max(8 + header, size - SPACE_SAMPLE))
            digest.update(f.read(SPACE_SAMPLE))
    except OSError as exc:
        raise HyperLoRAError(os_error_message(path, exc)) from None
    return LoRASpace(name=Path(src.label).name, digest=digest.hexdigest()[:12])


def _load_basis(model: HyperLoRA, path: Path, prefix: str) -> None:
    """Read the basis one layer's tensor at a time, checking each for NaN/Inf as it passes (the
    check costs a one-byte mask of that tensor, never a second copy of the basis)."""
    names = basis_layer_keys(model.config.modules)

    def read(f, key: str) -> torch.Tensor:
        t = f.get_tensor(key)
        if not torch.isfinite(t).all():
            raise HyperLoRAError(
                f"{path}: '{key}' contains NaN or infinite values; the file is damaged. Download it again "
                "(or export your trained checkpoint again)."
            )
        return t

    with safe_open(str(path), framework="pt") as f:
        for kind, basis in (("id", model.id_basis), ("base", model.base_basis)):
            if basis is None:
                continue
            basis.load_published(
                lambda layer, part, kind=kind: read(f, prefix + basis_key(*names[layer], kind, part))
            )


# -- saving -------------------------------------------------------------------------------------
def _metadata(model: HyperLoRA) -> dict[str, str]:
    cfg = model.config
    return {
        "hyperlora.dim_head": str(cfg.resampler.dim_head),
        "hyperlora.face_pack": cfg.face_pack,
        "hyperlora.trigger_words": cfg.trigger_words,
        "hyperlora.config": cfg.to_json(),
        **({"hyperlora.base": cfg.base} if cfg.base else {}),
    }


def _module_table(model: HyperLoRA) -> dict[str, dict]:
    return {m.name: m.table_entry() for m in model.config.modules}


def _basis_tensors(model: HyperLoRA, dtype: torch.dtype | None) -> dict[str, torch.Tensor]:
    names = basis_layer_keys(model.config.modules)
    out = {}
    for kind, basis in (("id", model.id_basis), ("base", model.base_basis)):
        if basis is None:
            continue
        for layer, part, t in basis.iter_published():
            out[basis_key(*names[layer], kind, part)] = t.to(dtype or t.dtype).cpu()
    return out


def _small_tensors(module: nn.Module, dtype: torch.dtype | None) -> dict[str, torch.Tensor]:
    return {k: v.detach().to(dtype or v.dtype).cpu().contiguous() for k, v in module.state_dict().items()}


def save_published(model: HyperLoRA, folder: str | os.PathLike, dtype: torch.dtype | None = torch.float16) -> None:
    """Write the published layout; each file lands atomically, the JSON last."""
    folder = Path(folder)
    meta = _metadata(model)
    save_tensors_atomic(_basis_tensors(model, dtype), folder / BASIS_FILE, meta)
    for part, name in PART_FILES.items():
        module = getattr(model, part)
        if module is not None:
            save_tensors_atomic(_small_tensors(module, dtype), folder / name, meta)
    with temporaries.replacing(folder / MODULES_JSON) as tmp:
        tmp.write_text(json.dumps(_module_table(model), indent=2), encoding="utf-8")


def save_single_file(model: HyperLoRA, path: str | os.PathLike, dtype: torch.dtype | None = torch.float16) -> None:
    """Write every part into one `.safetensors` with the module table and settings in metadata."""
    tensors = {f"{_BASIS_PART}.{k}": v for k, v in _basis_tensors(model, dtype).items()}
    for part in PART_FILES:
        module = getattr(model, part)
        if module is not None:
            tensors.update({f"{part}.{k}": v for k, v in _small_tensors(module, dtype).items()})
    meta = {**_metadata(model), "hyperlora.format": SINGLE_FORMAT, "hyperlora.modules": json.dumps(_module_table(model))}
    save_tensors_atomic(tensors, path, meta)
