"""HyperLoRA core: a hypernetwork that turns face photos into SDXL LoRA weights.

Pure torch; nothing here imports ComfyUI except `hyperlora_core.comfy_bridge`.
"""

from .config import HyperLoRAConfig
from .errors import HyperLoRAError
from .model import HyperLoRA

__all__ = ["HyperLoRA", "HyperLoRAConfig", "HyperLoRAError"]
