"""Reading and writing .safetensors files with errors a user can act on.

safetensors' own messages ("HeaderTooLarge", "invalid header") do not say that the file is a
Git-LFS pointer or a half-finished download, the two usual causes. Writes go to a temporary file
that is renamed into place (see `temporaries`), so an interrupted save never leaves a broken file
nor a temporary behind (safetensors' own `.tmpXXXXXX` is made inside our temporary folder).
"""

from __future__ import annotations

import errno
import itertools
import json
import os
import re
import struct
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from . import temporaries
from .errors import DamagedFileError, HyperLoRAError, os_error_message

_LFS_PREFIX = b"version https://git-lfs"


def looks_like_web_page(head: bytes) -> bool:
    """Whether a file's first bytes are HTML (an error or login page saved under a model's name)."""
    start = head.lstrip()[:15].lower()
    return start.startswith((b"<!doctype html", b"<html", b"<head", b"<body"))


def _check_header(path: Path) -> dict:
    """Validate the file's framing and return its JSON header, or raise a precise error."""
    try:
        return _read_header(path)
    except OSError as exc:
        raise HyperLoRAError(os_error_message(path, exc)) from None


def _read_header(path: Path) -> dict:
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
    except OSError as exc:
        raise HyperLoRAError(os_error_message(path, exc)) from None
    except Exception as exc:  # safetensors raises its own untyped errors
        raise HyperLoRAError(f"{path}: could not read tensors ({exc}); download the file again.") from None
    return out


def save_tensors_atomic(
    tensors: dict[str, torch.Tensor], path: str | os.PathLike, metadata: dict[str, str] | None = None,
    overwrite: bool = True,
) -> Path:
    """Write tensors to `path` through a temporary file (never half-written). Without `overwrite` an
    existing `path` is an error, decided atomically (two processes never both get the name)."""
    path = Path(path)
    saved = save_tensors_first_free(tensors, [path], metadata, overwrite=overwrite)
    if saved is None:
        raise HyperLoRAError(f"{path} already exists; choose another name (nothing was written).")
    return saved


def save_tensors_first_free(
    tensors: dict[str, torch.Tensor], candidates, metadata: dict[str, str] | None = None, overwrite: bool = False,
) -> Path | None:
    """Write once, then give the file the first name in `candidates` that is free (claimed
    atomically), or None if every one was taken. Disk full, read-only or unreadable folders raise our
    message naming the folder; files already there are never touched."""
    names = iter(candidates)
    first = Path(next(names))
    folder = first.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with temporaries.temporary(folder, first.name) as tmp:
            tmp.mkdir()  # safetensors writes its own temporary next to its target: inside ours
            written = tmp / first.name
            try:
                save_file({k: v.detach().contiguous() for k, v in tensors.items()}, str(written), metadata=metadata)
            except SafetensorError as exc:  # its write errors carry the OS reason as text only
                raise _os_error(exc, written) from None
            os.chmod(written, temporaries.file_mode())
            for path in itertools.chain([first], (Path(c) for c in names)):
                if temporaries.publish(written, path, overwrite):
                    return path
            return None
    except OSError as exc:
        where = getattr(exc, "filename", None)
        where = first if where is None or temporaries.SUFFIX in str(where) else where
        raise HyperLoRAError(os_error_message(where, exc, "write")) from None
    except SafetensorError as exc:
        raise HyperLoRAError(f"{first}: could not write the file ({exc}); check free space and permissions.") from None


def _os_error(exc: SafetensorError, path: Path) -> Exception:
    """safetensors reports a failed write as text ('... (os error 28)'): the OSError it was, if it says."""
    found = re.search(r"os error (\d+)", str(exc))
    if not found:
        return exc
    code = int(found.group(1))
    return OSError(code, os.strerror(code) if code in errno.errorcode else str(exc), str(path))
