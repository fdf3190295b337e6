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
