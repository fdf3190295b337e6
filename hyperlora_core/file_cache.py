"""Objects loaded from files (models a node loads by name, face packs), reused between runs.

ComfyUI's execution cache keeps node outputs while a node's inputs are unchanged, which covers
every loader node. This cache is for what a node loads by name inside its own run (One-Click, the
published pack's loaders, the face analyzer behind them, the toy world's encoders), and it has
one rule: an entry is reused only while its key is equal -- the resolved path, each file's name,
size, modification time and inode (a folder: its direct files) and the caller's extra key -- and each
kind holds one entry, dropped before the next one loads, so switching models frees the old one.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any


def file_signature(path: str | os.PathLike) -> tuple:
    """What changes when the file (or a folder's direct files) is replaced or edited."""
    p = Path(path)
    files = sorted(f for f in p.iterdir() if f.is_file()) if p.is_dir() else [p]
    stats = []
    for f in files:
        st = os.stat(f)
        stats.append((f.name, st.st_size, st.st_mtime_ns, st.st_dev, st.st_ino))  # a rename keeps size, not inode
    return (str(p.resolve()), tuple(stats))


class FileCache:
    """At most one loaded object per kind, valid while `file_signature(path)` and `extra` are equal."""

    def __init__(self) -> None:
        self._entries: dict[str, tuple[tuple, Any]] = {}
        self._lock = threading.Lock()

    def get(self, kind: str, path: str | os.PathLike, load: Callable[[Path], Any], *extra) -> Any:
        key = (file_signature(path), extra)
        with self._lock:
            entry = self._entries.get(kind)
            if entry is not None and entry[0] == key:
                return entry[1]
            self._entries.pop(kind, None)  # free the old object before loading the new one
        value = load(Path(path))
        with self._lock:
            self._entries[kind] = (key, value)
        return value

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


LOADED = FileCache()
"""The process-wide cache every caller shares (one entry per kind)."""
