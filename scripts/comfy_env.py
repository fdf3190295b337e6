"""Importing ComfyUI as a library from scripts (demo, benchmarks, trainer on a headless box)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def comfyui_path() -> Path:
    if os.environ.get("COMFYUI_PATH"):
        return Path(os.environ["COMFYUI_PATH"])
    recorded = ROOT / ".venv" / ".comfyui_path"
    if recorded.is_file():
        return Path(recorded.read_text().strip())
    return ROOT / ".host" / "ComfyUI"


def boot_comfy(cpu: bool | None = None) -> Path:
    """Put ComfyUI on sys.path and select CPU mode when no CUDA device exists."""
    path = comfyui_path()
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    import comfy.cli_args
    import torch

    if cpu is None:
        cpu = not torch.cuda.is_available()
    comfy.cli_args.args.cpu = cpu
    comfy.cli_args.args.use_pytorch_cross_attention = True
    return path


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
