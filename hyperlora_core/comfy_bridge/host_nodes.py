"""ComfyUI's node registry in-process: its own `nodes` module, and this pack loaded through its
custom-node loader, for code that needs node definitions without a server (the workflow builder,
the locale and help-page writers, scripts). Call `boot.boot_comfy()` first."""

from __future__ import annotations

import sys
from pathlib import Path

from .boot import ROOT


def comfy_nodes():
    """ComfyUI's own `nodes` module. With this repository on sys.path our `nodes/` package would shadow
    it, so it is loaded from the host's file when needed."""
    import importlib.util

    import folder_paths

    host_file = Path(folder_paths.__file__).resolve().parent / "nodes.py"
    mod = sys.modules.get("nodes")
    if mod is not None and Path(getattr(mod, "__file__", "") or "").resolve() == host_file:
        return mod
    spec = importlib.util.spec_from_file_location("nodes", host_file)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["nodes"] = mod
    spec.loader.exec_module(mod)
    return mod


def pack_nodes():
    """This pack's `nodes` package as ComfyUI's custom-node loader imports it (with ComfyUI's own nodes and
    its comfy_extras registered too, for code that needs every node definition)."""
    import asyncio

    comfy = comfy_nodes()
    if "PreviewAny" not in comfy.NODE_CLASS_MAPPINGS:  # the comfy_extras nodes
        asyncio.run(comfy.init_builtin_extra_nodes())
    module_name = str(ROOT).replace(".", "_x_")
    if module_name + ".nodes" not in sys.modules:
        asyncio.run(comfy.load_custom_node(str(ROOT), module_parent="custom_nodes"))
    return sys.modules[module_name + ".nodes"]
