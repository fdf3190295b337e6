"""ComfyUI entry point of the HyperLoRA node pack (nodes are declared in `nodes/`).

The pack's folder goes on sys.path so its shared core imports as `hyperlora_core`, the same
module the trainer and the scripts use. Exactly one of `comfy_entrypoint` (V3 hosts) or
`NODE_CLASS_MAPPINGS` (older hosts) is exported.
"""

import os
import sys

_ROOT = os.path.dirname(os.path.abspath(__file__))
if _ROOT not in sys.path:
    sys.path.append(_ROOT)

# pytest imports this file as a plain module when the checkout's folder name is not a valid
# package name (e.g. "comfyui-hyperlora"); only a package import (ComfyUI's) registers nodes.
if __package__:
    from .nodes import API

    if API == "v3":
        from .nodes import comfy_entrypoint  # noqa: F401

        __all__ = ["comfy_entrypoint"]
    else:
        from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS  # noqa: F401

        __all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]

WEB_DIRECTORY = "./web"
"""Served at /extensions/<this folder>/: only the node help pages (`web/docs/`, written by
`python -m scripts.node_docs`) live there, no JavaScript, so no frontend loads code from it."""
