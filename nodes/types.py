"""ComfyUI type names that link our nodes.

`LORA` is shared with the published pack (a plain kohya state dict), so LoRAs flow between the
two packs' nodes and into anything else that takes one. Our other types carry a `HYPERLORA_`
prefix so they never connect to the published pack's differently-shaped objects of similar name.
"""

LORA = "LORA"
HYPERLORA = "HYPERLORA"
"""A loaded hypernetwork (`hyperlora_core.HyperLoRA`)."""
ID_COND = "HYPERLORA_ID_COND"
"""Per-photo CLIP tokens + face embeddings + weights of one person (`IDCondition`)."""
BASE_COND = "HYPERLORA_BASE_COND"
"""Per-photo CLIP tokens of the face-blurred crops (Base-LoRA input)."""
FACE_ANALYSIS = "HYPERLORA_FACE_ANALYSIS"
"""A loaded insightface model pack (detector, landmarks, recognizer)."""

# The published pack's type names (compatibility nodes only).
PUB_CONFIG = "HYPER_LORA_CONFIG"
PUB_HYPER_LORA = "HYPER_LORA"
PUB_ID_COND = "ID_COND"
PUB_BASE_COND = "BASE_COND"
PUB_FACE_ATTR = "FACE_ATTR"
