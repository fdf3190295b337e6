"""Walking model and photo folders safely: symlinks followed, each real folder once, depth bounded.

Users link model folders (`ln -s /data/models/hyper_lora ...`), so links must be followed; a link
that points back up (`ln -s . loop`) must not make a listing endless or hang the server. Each
real directory (device, inode) is read once, and a link that leads to one already seen is reported
once in the log.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger(__name__)

MAX_DEPTH = 8
"""Folders deeper than this below the root are not read (published layouts are 1-3 deep)."""

_REPORTED: set[str] = set()


def _report(path: Path, first: Path) -> None:
    if str(path) in _REPORTED:
        return
    _REPORTED.add(str(path))
    kind = "a symlink loop" if first == path or first in path.parents else "a second link to it"
    log.warning("HyperLoRA: %s is the folder %s again (%s); it is listed once. Remove the link if it is a mistake.",
                path, first, kind)


def walk(root: str | os.PathLike, max_depth: int = MAX_DEPTH) -> Iterator[tuple[Path, list[str], list[str]]]:
    """Like `os.walk(root, followlinks=True)`, top-down and sorted, but each real folder once and
    at most `max_depth` levels down. Prune by editing the yielded folder list in place."""
    seen: dict[tuple[int, int], Path] = {}
    stack = [(Path(root), 0)]
    while stack:
        here, depth = stack.pop()
        try:
            st = os.stat(here)
        except OSError:
            continue
        key = (st.st_dev, st.st_ino)
        if key in seen:
            _report(here, seen[key])
            continue
        seen[key] = here
        try:
            with os.scandir(here) as it:
                entries = list(it)
        except OSError:
            continue
        dirs, files = [], []
        for e in entries:
            try:
                (dirs if e.is_dir() else files).append(e.name)
            except OSError:
                files.append(e.name)
        dirs.sort()
        files.sort()
        yield here, dirs, files
        if depth < max_depth:
            stack.extend((here / d, depth + 1) for d in reversed(dirs))
