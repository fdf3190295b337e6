"""Test bootstrap: the real ComfyUI host on sys.path, CPU mode, deterministic threads.

Tests run against the real host (never a stub): COMFYUI_PATH, or the one `make test` installed
under .host/ComfyUI.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from hyperlora_core.comfy_bridge.boot import boot_comfy  # noqa: E402  (before anything imports comfy)

COMFYUI = boot_comfy(cpu=True)

import torch  # noqa: E402

torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(scope="session")
def comfyui_path() -> Path:
    return COMFYUI


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    out = ROOT / "test-artifacts"
    out.mkdir(exist_ok=True)
    return out


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models gain nothing from a second thread, and a shared, busy 2-core box makes two
    OpenMP threads ~10x slower than one; the killed-run comparison also needs one fixed count.
    Training tests ask for it with `pytestmark = pytest.mark.usefixtures("one_thread")`."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
