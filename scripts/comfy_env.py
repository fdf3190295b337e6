"""Importing ComfyUI as a library from scripts and benchmarks (the core's one boot, re-exported)."""

from __future__ import annotations

import sys
from pathlib import Path

if str(Path(__file__).resolve().parents[1]) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hyperlora_core.comfy_bridge.boot import ROOT, boot_comfy, comfyui_path  # noqa: E402

__all__ = ["ROOT", "boot_comfy", "comfy_nodes", "comfyui_path", "pack_nodes"]


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
    its comfy_extras registered too, for scripts that need every node definition)."""
    import asyncio

    comfy = comfy_nodes()
    if "PreviewAny" not in comfy.NODE_CLASS_MAPPINGS:  # the comfy_extras nodes
        asyncio.run(comfy.init_builtin_extra_nodes())
    module_name = str(ROOT).replace(".", "_x_")
    if module_name + ".nodes" not in sys.modules:
        asyncio.run(comfy.load_custom_node(str(ROOT), module_parent="custom_nodes"))
    return sys.modules[module_name + ".nodes"]
