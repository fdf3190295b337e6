"""The model files HyperLoRA needs: a manifest of where each comes from and goes, a check of a
ComfyUI install against it, and a fetch of what is missing (`python -m hyperlora_core.models`)."""

from .check import Report, check, comfyui_roots
from .manifest import Item, ModelFile, download_entry, item, items

__all__ = ["Item", "ModelFile", "Report", "check", "comfyui_roots", "download_entry", "item", "items"]
