"""The only part of the core that imports ComfyUI (`comfy.*`, `folder_paths`).

Everything else in `hyperlora_core` is plain torch, so the trainer and tests can use it without
a host. Import this sub-package only where ComfyUI is importable.
"""

from .lora_apply import apply_lora, unet_lora_key_map

__all__ = ["apply_lora", "unet_lora_key_map"]
