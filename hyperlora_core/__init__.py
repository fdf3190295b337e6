"""HyperLoRA core: a hypernetwork that turns face photos into LoRA weights for a base model (SDXL, as published;
SD1.5, FLUX.1, Z-Image: `comfy_bridge/bases/`).

Pure torch; nothing here imports ComfyUI except `hyperlora_core.comfy_bridge`.
"""

from .config import HyperLoRAConfig
from .errors import HyperLoRAError
from .model import HyperLoRA

__all__ = ["HyperLoRA", "HyperLoRAConfig", "HyperLoRAError"]
