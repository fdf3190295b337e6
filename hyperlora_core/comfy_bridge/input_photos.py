"""Photos placed into ComfyUI's input folder, where LoadImage lists and reads them (the templates' sample photos).

ComfyUI's LoadImage offers, and a queued prompt may name, only files directly in `folder_paths`' input
directory (v0.3.75 lists no sub-folder and has no other source), so a photo a template names has to be there.
Each is copied under its own name unless a file of that name exists: a user's file is never replaced (their
photo under that name wins), and the copy is claimed atomically (`temporaries.publish`), so two servers sharing
one input folder never write a half file. Only a running ComfyUI server places photos: scripts and tests that
import the host as a library never write into its input folder.
"""

from __future__ import annotations

import logging
import shutil
import sys
from collections.abc import Iterable
from pathlib import Path

import folder_paths

from .. import temporaries

log = logging.getLogger("HyperLoRA")


def serving() -> bool:
    """True inside a ComfyUI server: its main.py creates the PromptServer before it loads custom nodes."""
    server = sys.modules.get("server")
    return getattr(getattr(server, "PromptServer", None), "instance", None) is not None


def place_input_photos(sources: Iterable[Path], folder: Path | None = None) -> list[str]:
    """Copy each of `sources` into the input folder (`folder`: ComfyUI's own by default) unless that name is
    taken; returns the names copied. A folder that cannot be written is logged, never raised (the pack still
    loads; the templates then name photos the user picks in Load Image)."""
    target = Path(folder or folder_paths.get_input_directory())
    placed = []
    for src in sources:
        if (target / src.name).exists():
            continue
        try:
            target.mkdir(parents=True, exist_ok=True)
            with temporaries.temporary(target, src.name) as tmp:
                shutil.copyfile(src, tmp)
                if temporaries.publish(tmp, target / src.name, overwrite=False):
                    placed.append(src.name)
        except OSError as exc:
            log.warning("HyperLoRA: could not place the sample photo %s into %s (%s); the templates still open, "
                        "pick your own photo in Load Image.", src.name, target, exc)
            break
    if placed:
        log.info("HyperLoRA: sample photos for the templates placed in %s: %s", target, ", ".join(placed))
    return placed
