"""Models loaded by name inside a node (one-click, the published pack's loaders): the core's file
cache (`hyperlora_core.file_cache`, one entry per kind, reused while the files are unchanged)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from hyperlora_core.file_cache import LOADED


def cached(kind: str, path: Path, load: Callable[[Path], Any], *key_extra) -> Any:
    return LOADED.get(kind, path, load, *key_extra)
