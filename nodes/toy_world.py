"""Toy-world nodes: load the tiny synthetic SDXL world and encode its reference photos.

The toy world (models/toy, rebuilt by `make toy-world`) lets anyone see HyperLoRA personalise
images without the published weights: its UNet, text encoder and VAE load through this node as
ordinary MODEL / CLIP / VAE values, and its photos encode into the same ID condition as real
faces. Its HyperLoRA checkpoint is a normal one, loaded by the HyperLoRA Loader from
models/hyper_lora/toy_world/. Latents are 16 x 16 and the VAE is /2: ask EmptyLatentImage for
128 x 128 (ComfyUI assumes /8) to get 32 x 32 images.
"""

from __future__ import annotations

from hyperlora_core.toy.bridge import BUILTIN_WORLD, load_toy_models, resolve_toy_world, toy_world_choices
from hyperlora_core.toy.conditions import encode_toy_photos

CATEGORY = "HyperLoRA/toy world"
ID_COND = "HYPERLORA_ID_COND"


def _worlds() -> list[str]:
    return list(toy_world_choices()) or [BUILTIN_WORLD]


class HyperLoRAToyWorldLoader:
    DESCRIPTION = ("Loads the toy world's UNet (tiny SDXL architecture), caption encoder and /2 VAE as "
                   "MODEL, CLIP and VAE. Use EmptyLatentImage 128 x 128 for its 16 x 16 latents.")
    CATEGORY = CATEGORY
    RETURN_TYPES = ("MODEL", "CLIP", "VAE")
    RETURN_NAMES = ("model", "clip", "vae")
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"world": (_worlds(), {"default": _worlds()[0]})}}

    def load(self, world: str):
        return load_toy_models(resolve_toy_world(world))


class HyperLoRAToyEncode:
    DESCRIPTION = ("Reference photos of one toy identity -> ID condition, with the toy world's ArcFace and "
                   "CLIP analogues (in place of face analysis + CLIP vision). Feed it to HyperLoRA Generate ID LoRA.")
    CATEGORY = CATEGORY
    RETURN_TYPES = (ID_COND,)
    RETURN_NAMES = ("id_cond",)
    FUNCTION = "encode"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"images": ("IMAGE",), "world": (_worlds(), {"default": _worlds()[0]})}}

    def encode(self, images, world: str):
        return (encode_toy_photos(images, resolve_toy_world(world)),)


NODE_CLASS_MAPPINGS = {
    "HyperLoRAToyWorldLoader": HyperLoRAToyWorldLoader,
    "HyperLoRAToyEncode": HyperLoRAToyEncode,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "HyperLoRAToyWorldLoader": "HyperLoRA Toy World Loader",
    "HyperLoRAToyEncode": "HyperLoRA Toy Encode",
}
