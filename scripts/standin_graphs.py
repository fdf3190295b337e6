"""The shipped workflows pointed at the tiny stand-in models (`make demo --standins` and the tests).

Only model loaders, sizes and photos change: `CheckpointLoaderSimple` and the CLIP vision loaders become the
stand-in pack's tiny loaders (`scripts/standin_nodes`, same outputs), the HyperLoRA checkpoint, the
ControlNet and the style LoRA become the tiny ones, images shrink to 64 px and sampling to 2 steps, and the
shipped sample photos become stand-in photos (the stand-in face detector finds faces only in those). Every
HyperLoRA node and every other core node runs as shipped.
"""

from __future__ import annotations

import copy


def needs_vit_l(prompt: dict) -> bool:
    """Nodes that load CLIP vision by file name need the full-size ViT-L stand-in."""
    return any(n["class_type"] in ("HyperLoRAOneClick", "HyperLoRALoader", "HyperLoRAUniLoader") for n in prompt.values())


SAMPLE_PREFIX = "hyperlora_sample_"
"""The shipped sample photos' names start with this (`workflows/sample_photos.py`)."""
STANDIN_FACES = ("face_1.png", "face_2.png", "face_3.png")
STANDIN_POSE = "pose.png"
"""Stand-in photos (`hyperlora_core.standins.face_photo(0..2)`, `pose_picture(0)`) under these names in the
server's input folder: each distinct sample face of a graph, in order, gets the next stand-in face."""


def standin_photos(prompt: dict) -> None:
    """Point every LoadImage that names a shipped sample photo at a stand-in photo (in place)."""
    faces: dict[str, str] = {}
    for node in prompt.values():
        name = node["inputs"].get("image") if node["class_type"] == "LoadImage" else None
        if not isinstance(name, str) or not name.startswith(SAMPLE_PREFIX):
            continue
        if "pose" in name:
            node["inputs"]["image"] = STANDIN_POSE
            continue
        if name not in faces:
            if len(faces) == len(STANDIN_FACES):
                raise ValueError(f"more than {len(STANDIN_FACES)} sample faces in one graph; add stand-in names")
            faces[name] = STANDIN_FACES[len(faces)]
        node["inputs"]["image"] = faces[name]


def for_tiny_models(prompt: dict, tiny_checkpoint: str, vit_l_checkpoint: str, size: int = 64, steps: int = 2,
                    controlnet: str = "tiny_controlnet.safetensors", style_lora: str = "tiny_style.safetensors") -> dict:
    p = copy.deepcopy(prompt)
    toy = bool(nodes_of(p, "HyperLoRAToyWorldLoader"))  # the shipped toy world: its own models and 128 px latent
    for node in p.values():
        kind, inputs = node["class_type"], node["inputs"]
        if kind == "CheckpointLoaderSimple":
            node["class_type"], node["inputs"] = "HyperLoRATestTinySDXL", {"seed": 0}
        elif kind in ("CLIPVisionLoader", "HyperLoRACLIPVisionLoader"):
            node["class_type"], node["inputs"] = "HyperLoRATestTinyCLIPVision", {"seed": 0}
        elif kind == "HyperLoRACheckpointLoader":
            inputs["checkpoint"] = tiny_checkpoint
        elif kind == "HyperLoRAOneClick":
            inputs["checkpoint"] = vit_l_checkpoint
        elif kind == "EmptyLatentImage" and not toy:
            inputs.update(width=size, height=size)
        elif kind == "KSampler":
            inputs["steps"] = steps
        elif kind == "ControlNetLoader":
            inputs["control_net_name"] = controlnet
        elif kind == "LoraLoaderModelOnly":
            inputs["lora_name"] = style_lora
    standin_photos(p)
    return p


def nodes_of(prompt: dict, class_type: str) -> list[str]:
    return [k for k, v in prompt.items() if v["class_type"] == class_type]
