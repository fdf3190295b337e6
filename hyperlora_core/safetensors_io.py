"""Reading and writing .safetensors files with errors a user can act on.

safetensors' own messages ("HeaderTooLarge", "invalid header") do not say that the file is a
Git-LFS pointer or a half-finished download, the two usual causes. Writes go to a temporary file
that is renamed into place, so an interrupted save never leaves a broken file behind.
"""

from __future__ import annotations

import json
import os
import struct
import tempfile
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from .errors import DamagedFileError, HyperLoRAError

_LFS_PREFIX = b"version https://git-lfs"


def looks_like_web_page(head: bytes) -> bool:
    """Whether a file's first bytes are HTML (an error or login page saved under a model's name)."""
    start = head.lstrip()[:15].lower()
    return start.startswith((b"<!doctype html", b"<html", b"<head", b"<body"))


def _check_header(path: Path) -> dict:
    """Validate the file's framing and return its JSON header, or raise a precise error."""
    if not path.is_file():
        raise DamagedFileError("missing", f"{path}: file not found.")
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if head.startswith(_LFS_PREFIX[:8]):
            f.seek(0)
            if f.read(len(_LFS_PREFIX)) == _LFS_PREFIX:
                raise DamagedFileError(
                    "lfs_pointer",
                    f"{path}: this is a Git-LFS pointer file ({size} bytes), not the weights. "
                    "Download the real file (git lfs pull, or the download button of the model page) "
                    "and replace it.",
                )
        if len(head) < 8:
            raise DamagedFileError("empty" if size == 0 else "truncated",
                                   f"{path}: file is empty or truncated ({size} bytes); download it again.")
        f.seek(0)
        if looks_like_web_page(f.read(64)):
            raise DamagedFileError("web_page", f"{path}: this is a web page ({size} bytes of HTML), not the weights: "
                                   "the download got an error or login page. Download it again.")
        f.seek(8)
        (header_len,) = struct.unpack("<Q", head)
        if header_len > min(size - 8, 100_000_000):
            raise DamagedFileError(
                "invalid",
                f"{path}: not a valid .safetensors file (header length {header_len} does not fit in "
                f"{size} bytes). It may be a web page or a different format saved with this name; "
                "download it again.",
            )
        try:
            header = json.loads(f.read(header_len))
        except ValueError as exc:
            raise DamagedFileError("invalid", f"{path}: corrupt .safetensors header ({exc}); download it again.") from None
    end = 8 + header_len
    data_end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
    if end + data_end > size:
        missing = end + data_end - size
        raise DamagedFileError(
            "truncated",
            f"{path}: file is truncated ({size} bytes, {missing} bytes missing); the download did not "
            "finish. Download it again.",
        )
    return header


def check_safetensors(path: str | os.PathLike) -> None:
    """Raise :class:`DamagedFileError` unless `path` is a complete .safetensors file (reads the header only)."""
    _check_header(Path(path))


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The string metadata stored in a .safetensors header (empty if none)."""
    return dict(_check_header(Path(path)).get("__metadata__") or {})


def read_shapes(path: str | os.PathLike) -> dict[str, tuple[int, ...]]:
    """Tensor shapes from the header alone, without reading any data."""
    header = _check_header(Path(path))
    return {k: tuple(v["shape"]) for k, v in header.items() if k != "__metadata__"}


def load_tensors(path: str | os.PathLike, device: str = "cpu") -> dict[str, torch.Tensor]:
    """All tensors of a .safetensors file, after checking the framing."""
    path = Path(path)
    _check_header(path)
    out: dict[str, torch.Tensor] = {}
    try:
        with safe_open(str(path), framework="pt", device=device) as f:
            for key in f.keys():
                out[key] = f.get_tensor(key)
    except Exception as exc:  # safetensors raises its own untyped errors
        raise HyperLoRAError(f"{path}: could not read tensors ({exc}); download the file again.") from None
    return out


def save_tensors_atomic(
    tensors: dict[str, torch.Tensor], path: str | os.PathLike, metadata: dict[str, str] | None = None
) -> None:
    """Write tensors to `path` through a temporary file and a rename (never half-written)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        save_file({k: v.detach().contiguous() for k, v in tensors.items()}, tmp, metadata=metadata)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
