"""Toy-world nodes: load the tiny synthetic world (its SDXL-class UNet or FLUX-class DiT) and encode its
reference photos.

The toy world (models/toy, rebuilt by `make toy-world`) lets anyone see HyperLoRA personalise
images without the published weights: its UNet, text encoder and VAE load through this node as
ordinary MODEL / CLIP / VAE values, and its photos encode into the same ID condition as real
faces. Its HyperLoRA checkpoint is a normal one, loaded by the HyperLoRA Loader from
models/hyper_lora/toy_world/. Latents are 16 x 16 and the VAE is /2: ask EmptyLatentImage for
128 x 128 (ComfyUI assumes /8) to get 32 x 32 images.
"""

from __future__ import annotations

import torch

from hyperlora_core.errors import HyperLoRAError
from hyperlora_core.toy import files, world
from hyperlora_core.toy.conditions import check_image_batch, encode_toy_base, encode_toy_photos
from hyperlora_core.toy.files import BUILTIN_WORLD, resolve_world
from hyperlora_core.toy.files import world_choices as toy_world_choices
from hyperlora_core.toy.install import heldout_photos
from hyperlora_core.toy.models import TOY_BASES, UNET, load_toy_models, toy_base

from . import types
from .encode import WEIGHTS_TIP, weights_for, weights_problem
from .loaders import load_checkpoint
from .spec import In, NodeDef, Out


def world_choices() -> list[str]:
    return list(toy_world_choices()) or [BUILTIN_WORLD]


def _load(world: str, base: str = UNET.name):
    folder = resolve_world(world)
    b = toy_base(base)
    rebuild = "`make toy-world`" if b is UNET else f"`make toy-world BASE={b.name}`"
    model = files.part_path(b.parts["model"], folder)
    if not model.is_file():
        raise HyperLoRAError(f"toy world '{world}' ({folder}) has no {b.description} ({model.name}); pick another base "
                             f"or world, or build it with {rebuild}.")
    hyper = files.part_path(b.parts["hyperlora"], folder)
    if not hyper.is_file():
        raise HyperLoRAError(f"toy world '{world}' ({folder}) has no trained HyperLoRA for its {b.description} at "
                             f"{hyper}; copy models/toy/{hyper.relative_to(folder).as_posix()} of the pack there, or "
                             f"rebuild with {rebuild}.")
    return (*load_toy_models(folder, b.name), load_checkpoint(hyper, "auto"))


def _photos(identity: int, photos: int, variation: int, scale: int):
    images, ident = heldout_photos(identity, photos, variation, scale)
    names = [f"{name}={value}" for name, value in zip(world.ATTRIBUTE_NAMES, world.identity_attributes(ident))]
    return torch.from_numpy(images).float() / 255.0, f"identity {ident}: " + ", ".join(names)


def _encode(photos, world: str, weights: str = ""):
    cond = encode_toy_photos(photos, resolve_world(world), weights=weights_for(weights, check_image_batch(photos)))
    return cond, cond.face_crops


def _encode_base(photos, world: str, weights: str = ""):
    cond = encode_toy_base(photos, resolve_world(world), weights=weights_for(weights, check_image_batch(photos)))
    return cond, cond.crops


TOY_LOADER = NodeDef(
    node_id="HyperLoRAToyWorldLoader",
    display_name="HyperLoRA Toy World Loader",
    description=(
        "Loads the toy world (a tiny synthetic world trained on CPU, shipped in models/toy): its base model as MODEL "
        "(an SDXL-architecture UNet, or a FLUX-architecture DiT), that base's caption encoder as CLIP, the /2 VAE as "
        "VAE and the base's trained HyperLoRA. Use EmptyLatentImage 128 x 128 for its 16 x 16 latents (32 x 32 "
        "images); captions are attribute phrases such as 'a face, red hair, smiling'."
    ),
    inputs=(In("world", "COMBO", options=world_choices, default=BUILTIN_WORLD, identity=resolve_world,
               tooltip="The pack's own copy, or a folder in models/toy_world."),
            In("base", "COMBO", options=tuple(TOY_BASES), default=UNET.name, optional=True,
               tooltip="The world's base model: unet (SDXL-architecture UNet, sample with euler + karras) or dit "
                       "(FLUX-architecture DiT trained with flow matching, sample with euler + simple), each with its "
                       "own caption encoder and HyperLoRA.")),
    outputs=(Out("MODEL", "model"), Out("CLIP", "clip"), Out("VAE", "vae"),
             Out(types.HYPERLORA, "hyper_lora", "The toy world's HyperLoRA (also loadable by the HyperLoRA Loader).")),
    run=_load,
)

TOY_ENCODE = NodeDef(
    node_id="HyperLoRAToyEncode",
    display_name="HyperLoRA Toy Encode",
    description=(
        "Reference photos of one toy identity -> ID condition, with the toy world's ArcFace and CLIP analogues "
        "(in place of face analysis + CLIP vision). Feed it to HyperLoRA Generate ID LoRA with the toy checkpoint."
    ),
    inputs=(
        In("photos", "IMAGE", tooltip="Photos of one toy identity (from Toy Reference Photos)."),
        In("world", "COMBO", options=world_choices, default=BUILTIN_WORLD, tooltip="The toy world whose encoders to use."),
        In("weights", "STRING", default="", tooltip=WEIGHTS_TIP, check=weights_problem),
    ),
    outputs=(Out(types.ID_COND, "id_cond"), Out("IMAGE", "crops", "What the CLIP analogue saw (background greyed).")),
    run=_encode,
)

TOY_PHOTOS = NodeDef(
    node_id="HyperLoRAToyPhotos",
    display_name="HyperLoRA Toy Reference Photos",
    description=(
        "Photos of a toy identity that no training stage ever saw (one of the held-out identities), each with "
        "another background, clothing and pose: the reference photos for HyperLoRA Toy Encode. Also says which "
        "attributes the identity has, to compare with the generated images."
    ),
    inputs=(
        In("identity", "INT", default=0, min=0, max=len(world.heldout_identities()) - 1,
           tooltip="Which held-out identity (0 to 345)."),
        In("photos", "INT", default=1, min=1, max=8, tooltip="How many photos of that identity."),
        In("variation", "INT", default=0, min=0, max=2**31 - 1,
           tooltip="Other values: other backgrounds, clothes and poses of the same identity."),
        In("scale", "INT", default=4, min=1, max=8,
           tooltip="Pixel-art upscaling for viewing (the encoder scales back to 32 px)."),
    ),
    outputs=(Out("IMAGE", "photos"), Out("STRING", "attributes", "The identity's attributes.")),
    run=_photos,
)

TOY_ENCODE_BASE = NodeDef(
    node_id="HyperLoRAToyEncodeBase",
    display_name="HyperLoRA Toy Encode Base",
    description=(
        "Photos -> Base condition (background, pattern, clothing), the toy counterpart of Encode Base: the face is "
        "blurred out and the rest encoded with the toy world's CLIP analogue. Feed it to HyperLoRA Generate Base LoRA "
        "with a toy checkpoint that has a Base-LoRA branch."
    ),
    inputs=(
        In("photos", "IMAGE", tooltip="Photos whose background and clothing the Base-LoRA should carry."),
        In("world", "COMBO", options=world_choices, default=BUILTIN_WORLD, tooltip="The toy world whose encoders to use."),
        In("weights", "STRING", default="", tooltip=WEIGHTS_TIP, check=weights_problem),
    ),
    outputs=(Out(types.BASE_COND, "base_cond"), Out("IMAGE", "crops", "What the CLIP analogue saw (face blurred).")),
    run=_encode_base,
)

NODES = [TOY_LOADER, TOY_ENCODE, TOY_ENCODE_BASE, TOY_PHOTOS]

ORDER = 90  # place in the node listing (registry.declaring_modules)
