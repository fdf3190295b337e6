"""Models loaded by name inside a node (one-click, the published pack's loaders) stay loaded
between runs while the file is unchanged; one per kind, so switching models frees the old one."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

_LOADED: dict[str, tuple[tuple, Any]] = {}


def _signature(path: Path) -> tuple:
    files = sorted(path.iterdir()) if path.is_dir() else [path]
    return (str(path.resolve()), tuple((f.name, os.stat(f).st_mtime_ns, os.stat(f).st_size) for f in files if f.is_file()))


def cached(kind: str, path: Path, load: Callable[[Path], Any], *key_extra) -> Any:
    key = (_signature(Path(path)), key_extra)
    entry = _LOADED.get(kind)
    if entry is None or entry[0] != key:
        _LOADED.pop(kind, None)
        _LOADED[kind] = (key, load(Path(path)))
    return _LOADED[kind][1]
