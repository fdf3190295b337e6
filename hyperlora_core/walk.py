"""Walking model and photo folders safely: symlinks followed, each real folder once, depth bounded.

Users link model folders (`ln -s /data/models/hyper_lora ...`), so links must be followed; a link
that points back up (`ln -s . loop`) must not make a listing endless or hang the server. Each
real directory (device, inode) is read once, and a link that leads to one already seen is reported
once in the log. A link whose target is gone is not a file: it is never offered as a choice. A folder
the server may not read (permissions) is left out of a drop-down with a warning in the log naming
it and the fix (`list_dir`), never a PermissionError that takes the node off the menu.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

from .errors import os_error_message

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


def unreadable_message(folder: str | os.PathLike, exc: OSError) -> str:
    """What a folder the server may not open means, and the fix."""
    if isinstance(exc, PermissionError):
        return (f"{folder}: permission denied; the user running ComfyUI may not open this folder. Give it read and "
                f"search permission (chmod a+rx '{folder}', or fix its owner), then press 'r' (refresh) in ComfyUI.")
    return os_error_message(folder, exc, "list")


def report_unreadable(folder: str | os.PathLike, exc: OSError) -> None:
    """Log once per folder that it could not be listed, and how to fix it."""
    if str(folder) in _REPORTED:
        return
    _REPORTED.add(str(folder))
    log.warning("HyperLoRA: cannot list a model folder; the models in it are not offered. %s",
                unreadable_message(folder, exc))


def unreadable_part(root: str | os.PathLike, name: str) -> tuple[Path, OSError] | None:
    """The folder on the way from `root` to `root/name` that may not be opened, with the error, or None."""
    here = Path(root)
    for part in Path(name).parts:
        try:
            os.stat(here / part)
        except PermissionError as exc:
            return here, exc
        except OSError:
            return None
        here = here / part
    return None


def list_dir(folder: str | os.PathLike) -> list[os.DirEntry]:
    """A folder's entries sorted by name; [] if it is not there, and [] with a logged reason (naming
    the folder and the fix) if it cannot be read."""
    try:
        with os.scandir(folder) as it:
            return sorted(it, key=lambda e: e.name)
    except (FileNotFoundError, NotADirectoryError):
        return []
    except OSError as exc:
        report_unreadable(folder, exc)
        return []


def walk(root: str | os.PathLike, max_depth: int = MAX_DEPTH) -> Iterator[tuple[Path, list[str], list[str]]]:
    """Like `os.walk(root, followlinks=True)`, top-down and sorted, but each real folder once and
    at most `max_depth` levels down. Prune by editing the yielded folder list in place."""
    seen: dict[tuple[int, int], Path] = {}
    stack = [(Path(root), 0)]
    while stack:
        here, depth = stack.pop()
        try:
            st = os.stat(here)
        except (FileNotFoundError, NotADirectoryError):
            continue
        except OSError as exc:
            report_unreadable(here, exc)
            continue
        key = (st.st_dev, st.st_ino)
        if key in seen:
            _report(here, seen[key])
            continue
        seen[key] = here
        dirs, files = [], []
        for e in list_dir(here):
            try:
                if e.is_dir():
                    dirs.append(e.name)
                elif e.is_file():  # a link to nothing is neither: not a choice
                    files.append(e.name)
            except OSError as exc:
                report_unreadable(e.path, exc)
        yield here, dirs, files  # sorted: list_dir gives the entries by name
        if depth < max_depth:
            stack.extend((here / d, depth + 1) for d in reversed(dirs))
