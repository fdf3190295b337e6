"""What a node loads from files stays in step with the files.

* Models loaded by name inside a node (one-click, the published pack's loaders): the core's file
  cache (`hyperlora_core.file_cache`, one entry per kind, reused while the files are unchanged).
* ComfyUI's own output cache keys a node on its input values, i.e. a file's *name*: an input with
  `In.identity` adds the file's identity (`file_fingerprint`), so after a checkpoint is replaced
  under the same name the same prompt loads the new one instead of serving the old weights.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from hyperlora_core.errors import HyperLoRAError
from hyperlora_core.file_cache import LOADED, file_signature


def cached(kind: str, path: Path, load: Callable[[Path], Any], *key_extra) -> Any:
    return LOADED.get(kind, path, load, *key_extra)


def file_fingerprint(named: Iterable[tuple[Callable[[Any], Any], Any]]) -> str:
    """The identity of each (resolve, value) pair's file: path, size, mtime_ns, inode (a stat, never a hash).
    A value that does not resolve keeps its name: the queue check or the run reports it."""
    parts = []
    for resolve, value in named:
        try:
            parts.append(file_signature(resolve(value)))
        except (HyperLoRAError, OSError, TypeError, ValueError):
            parts.append(("unresolved", repr(value)))
    return repr(tuple(parts))
