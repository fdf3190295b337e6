"""The toy world inside a ComfyUI folder, for `make demo` over the HTTP API.

    paths = setup_demo(comfy_root)   # toy files + reference photos into that ComfyUI

The graph the demo queues is the toy template's, built by `workflows.library.toy_world` (one builder
for the template and the demo).
"""

from __future__ import annotations

import os
from pathlib import Path

from .install import TOY_FOLDER, install_toy_world, write_reference_photos

TOY_CHECKPOINT = f"{TOY_FOLDER}/toy_hyperlora.safetensors"
"""The toy HyperLoRA's name in the HyperLoRA Loader's list (relative to models/hyper_lora)."""
WORLD = TOY_FOLDER
"""The toy world's name in the Toy World Loader's list once installed into models/toy_world."""


def setup_demo(comfy_root: str | os.PathLike, identities: int = 4, refs: int = 4, mode: str = "link") -> dict:
    """Install the toy world into `<comfy_root>/models` and reference photos into `<comfy_root>/input/toy_world`;
    `base_factors` holds each photo's background colour, pattern and shirt (identity-major, as the photos)."""
    root = Path(comfy_root)
    placed = install_toy_world(root / "models", mode=mode)
    photos, factors = write_reference_photos(root / "input" / TOY_FOLDER, identities=identities, refs=refs)
    return {"models": placed, "photos": photos, "photo_names": [f"{TOY_FOLDER}/{p.name}" for p in photos],
            "base_factors": factors}
