"""Evaluation harness: generate with and without HyperLoRA and score the images as the paper does.

    python -m hyperlora_core.eval --toy                       # the toy world (models/toy): toy/measure.py
    python -m hyperlora_core.eval --checkpoint sdxl.safetensors --hyperlora <ckpt> --face-pack <dir> \\
        --clip-vision clip_vit_l14.safetensors --refs photos/ --prompts prompts.txt

See `metrics.py` (what is measured), `harness.py` (the loop), `backends.py` (SDXL), `report.py`.
"""

from .harness import Method, Person, default_methods, evaluate, summarise
from .metrics import ClipScorer, DlibFaces, cosine, dlib_distance

__all__ = ["ClipScorer", "DlibFaces", "Method", "Person", "cosine", "default_methods", "dlib_distance", "evaluate",
           "summarise"]
