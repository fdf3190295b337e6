"""The only part of the core that imports ComfyUI (`comfy.*`, `folder_paths`).

Everything else in `hyperlora_core` is plain torch, so the trainer and tests can use it without
a host. Import its modules only where ComfyUI is importable (`boot.boot_comfy` makes it so);
importing this package alone imports nothing of ComfyUI.
"""

__all__ = ["apply_lora", "unet_lora_key_map"]


def __getattr__(name: str):
    if name in __all__:
        from . import lora_apply

        return getattr(lora_apply, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
