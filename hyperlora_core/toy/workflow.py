"""The toy world as a ComfyUI graph (API format), for `make demo` over the HTTP API.

    paths = setup_demo(comfy_root)                   # toy files + reference photos into that ComfyUI
    graph = toy_api_workflow(paths["photos"][:4])   # POST {"prompt": graph} to /prompt

The graph: LoadImage x N -> ImageBatch -> HyperLoRA Toy Encode -> HyperLoRA Generate ID LoRA (with the
HyperLoRA Loader's toy checkpoint) -> HyperLoRA Apply on the Toy World Loader's MODEL -> KSampler
(EmptyLatentImage 128 x 128 = the toy's 16 x 16 latent) -> VAEDecode -> SaveImage, and the same
sampler without the LoRA for comparison.
"""

from __future__ import annotations

import os
from pathlib import Path

from .install import TOY_FOLDER, install_toy_world, write_reference_photos

TOY_CHECKPOINT = f"{TOY_FOLDER}/toy_hyperlora.safetensors"
"""The toy HyperLoRA's name in the HyperLoRA Loader's list (relative to models/hyper_lora)."""
WORLD = f"{TOY_FOLDER}"
"""The toy world's name in the Toy World Loader's list once installed into models/toy_world."""


def setup_demo(comfy_root: str | os.PathLike, identities: int = 4, refs: int = 4, mode: str = "link") -> dict:
    """Install the toy world into `<comfy_root>/models` and reference photos into `<comfy_root>/input/toy_world`."""
    root = Path(comfy_root)
    placed = install_toy_world(root / "models", mode=mode)
    photos = write_reference_photos(root / "input" / TOY_FOLDER, identities=identities, refs=refs)
    return {"models": placed, "photos": photos, "photo_names": [f"{TOY_FOLDER}/{p.name}" for p in photos]}


def toy_api_workflow(photo_names: list[str], seed: int = 11, strength: float = 1.0, prompt: str = "",
                     world: str = WORLD, checkpoint: str = TOY_CHECKPOINT, steps: int = 20,
                     prefix: str = "hyperlora_toy", compare: bool = True) -> dict:
    """ComfyUI API-format graph generating one image with the toy ID-LoRA and, if `compare`, one with
    the same seed without it (saved with the prefixes `<prefix>_lora` and `<prefix>_base`)."""
    if not photo_names:
        raise ValueError("give at least one reference photo (a name inside ComfyUI's input folder)")
    g: dict[str, dict] = {
        "world": {"class_type": "HyperLoRAToyWorldLoader", "inputs": {"world": world}},
        "hyper": {"class_type": "HyperLoRACheckpointLoader", "inputs": {"checkpoint": checkpoint, "dtype": "auto"}},
    }
    batch = None
    for i, name in enumerate(photo_names):
        g[f"photo{i}"] = {"class_type": "LoadImage", "inputs": {"image": name}}
        if batch is None:
            batch = [f"photo{i}", 0]
        else:
            g[f"batch{i}"] = {"class_type": "ImageBatch", "inputs": {"image1": batch, "image2": [f"photo{i}", 0]}}
            batch = [f"batch{i}", 0]
    g["encode"] = {"class_type": "HyperLoRAToyEncode", "inputs": {"photos": batch, "world": world, "weights": ""}}
    g["generate"] = {"class_type": "HyperLoRAGenerateID",
                     "inputs": {"hyper_lora": ["hyper", 0], "id_cond": ["encode", 0], "allow_other_face_pack": False}}
    g["apply"] = {"class_type": "HyperLoRAApply",
                  "inputs": {"model": ["world", 0], "lora": ["generate", 0], "strength": strength, "base_strength": 0.0}}
    g["positive"] = {"class_type": "CLIPTextEncode", "inputs": {"clip": ["world", 1], "text": prompt}}
    g["negative"] = {"class_type": "CLIPTextEncode", "inputs": {"clip": ["world", 1], "text": ""}}
    g["latent"] = {"class_type": "EmptyLatentImage", "inputs": {"width": 128, "height": 128, "batch_size": 1}}
    branches = [("lora", ["apply", 0])] + ([("base", ["world", 0])] if compare else [])
    for tag, model in branches:
        g[f"sample_{tag}"] = {"class_type": "KSampler", "inputs": {
            "model": model, "seed": seed, "steps": steps, "cfg": 1.0, "sampler_name": "euler", "scheduler": "karras",
            "positive": ["positive", 0], "negative": ["negative", 0], "latent_image": ["latent", 0], "denoise": 1.0}}
        g[f"decode_{tag}"] = {"class_type": "VAEDecode", "inputs": {"samples": [f"sample_{tag}", 0], "vae": ["world", 2]}}
        g[f"save_{tag}"] = {"class_type": "SaveImage",
                            "inputs": {"images": [f"decode_{tag}", 0], "filename_prefix": f"{prefix}_{tag}"}}
    return g
