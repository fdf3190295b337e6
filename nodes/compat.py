"""The published ComfyUI-HyperLoRA pack's eleven node names, inputs and widget order, on our core,
so workflows shared for that pack load and run. Registered only when that pack is not installed."""

from __future__ import annotations

from pathlib import Path

from . import host

PUBLISHED_MARKER = "HYPER_LORA_CLASS_MAPPINGS"


def published_pack_installed() -> bool:
    """True if a custom-node folder (not disabled, not this pack) holds the published pack."""
    own = Path(__file__).resolve().parents[1]
    for root in host.custom_node_dirs():
        if not root.is_dir():
            continue
        for pack in root.iterdir():
            if pack.name.endswith(".disabled") or not pack.is_dir() or pack.resolve() == own:
                continue
            nodes_py = pack / "hyperlora" / "nodes.py"
            try:
                if nodes_py.is_file() and PUBLISHED_MARKER in nodes_py.read_text(encoding="utf-8", errors="ignore"):
                    return True
            except OSError:
                continue
    return False


NODES: list = []
