"""Importing ComfyUI as a library from scripts and benchmarks (the core's one boot and its in-process
node registry, re-exported)."""

from __future__ import annotations

import sys
from pathlib import Path

if str(Path(__file__).resolve().parents[1]) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hyperlora_core.comfy_bridge.boot import ROOT, boot_comfy, comfyui_path  # noqa: E402
from hyperlora_core.comfy_bridge.host_nodes import comfy_nodes, pack_nodes  # noqa: E402

__all__ = ["ROOT", "boot_comfy", "comfy_nodes", "comfyui_path", "pack_nodes"]
