"""Using ComfyUI as a library: find the host, put it on `sys.path`, choose CPU mode before
`comfy.model_management` is first imported. The one boot of the trainer, the scripts, the
benchmarks, the toy build and the tests; nothing here imports ComfyUI before `boot_comfy` runs.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from ..errors import HyperLoRAError

ROOT = Path(__file__).resolve().parents[2]
"""The pack's folder (repository root)."""


def comfyui_path() -> Path:
    """`COMFYUI_PATH`, else the host `scripts/setup_env.sh` recorded, else `.host/ComfyUI`."""
    if os.environ.get("COMFYUI_PATH"):
        return Path(os.environ["COMFYUI_PATH"])
    recorded = ROOT / ".venv" / ".comfyui_path"
    if recorded.is_file():
        return Path(recorded.read_text().strip())
    return ROOT / ".host" / "ComfyUI"


def boot_comfy(cpu: bool | None = None) -> Path:
    """Make `comfy` importable and set its device flags; returns the host's folder.

    `cpu` None: CPU mode when no CUDA device exists, else this process's GPU (`LOCAL_RANK` under
    torchrun) becomes the current device. PyTorch's attention is selected in both cases."""
    path = comfyui_path()
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))
    import torch

    try:
        import comfy.cli_args
    except ImportError:
        raise HyperLoRAError(
            f"ComfyUI is not importable (looked in {path}); set COMFYUI_PATH to a ComfyUI checkout (v0.3.75 or "
            "newer) or run `make setup`."
        ) from None
    if cpu is None:
        cpu = not torch.cuda.is_available()
    if not cpu:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    comfy.cli_args.args.cpu = cpu
    comfy.cli_args.args.use_pytorch_cross_attention = True
    return path
