"""The frozen models a training run needs, loaded with ComfyUI's own loaders (or tiny stand-ins).

A `Backbone` bundles a base model's UNet (a `ModelPatcher`), its text encoders (`comfy.sd.CLIP`), the
VAE (`comfy.sd.VAE`), the CLIP vision tower (`comfy.clip_vision.ClipVisionModel`) and the base's
profile (`bases`). The real one comes from one checkpoint holding all three (`load_checkpoint_guess_config`)
or from split files, as FLUX and Z-Image ship (`load_split`: a diffusion model, its text encoder files, a
VAE), its base detected either way, plus a CLIP ViT-L/14 file; a command loads only the `PARTS` it needs.
The tiny one is built from the profile's ComfyUI classes at small widths with seeded random weights,
so tests and the tiny example config exercise exactly the code paths of a real run.

Backbones are found by name in a registry (`model.backbone` of a training config): each
`BackboneKind` carries its factory and its own defaults, so the trainer never asks which one it
has. `tiny` and `checkpoint` are registered here; other packages register theirs on import (the
toy world: `hyperlora_core.toy.backbone`, listed in `PROVIDERS` so the name works before that).
"""

from __future__ import annotations

import importlib
import json
import os
import tempfile
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from pathlib import Path

import comfy.clip_vision
import comfy.model_detection
import comfy.model_management
import comfy.sd
import comfy.taesd.taesd
import comfy.utils
import torch

from ..config import LEGACY_BASE
from ..errors import HyperLoRAError
from ..safetensors_io import read_shapes
from .bases import BaseProfile, Conditioning, profile_named, profile_of, profile_of_config
from .random_init import init_weights

TINY_UNET_STD = 0.1
"""Weight scale of the tiny UNet: large enough that signals (and a LoRA's effect) reach the output."""

TINY_CLIP_VISION = {
    "attention_dropout": 0.0, "dropout": 0.0, "hidden_act": "quick_gelu", "hidden_size": 32,
    "image_size": 224, "initializer_factor": 1.0, "initializer_range": 0.02, "intermediate_size": 64,
    "layer_norm_eps": 1e-05, "model_type": "clip_vision_model", "num_attention_heads": 2, "num_channels": 3,
    "num_hidden_layers": 3, "patch_size": 32, "projection_dim": 32,
}
"""A CLIP ViT with 7x7 patches + CLS = 50 tokens of width 32 (ViT-L/14: 257 x 1024)."""

PARTS: tuple[str, ...] = ("diffusion_model", "text_encoders", "vae")
"""The parts of a base model a command may need, by the config keys of the split form: `fit` and `finetune` on
prepared data denoise cached latents (the diffusion model; the other two only for fit's sample grids), `prepare`
encodes photos and captions (text encoders and VAE). CLIP vision is loaded whenever it is named."""

ENCODERS_USED_BY = ("prepare, finetune on a folder of photos, and fit's sample grids (unless train.samples.every "
                    "is -1)")

@dataclass
class Backbone:
    """Frozen parts of one base model (`profile`): UNet patcher, text encoders, VAE and CLIP vision (the
    last three optional)."""

    unet: object | None
    """None where the command needs no denoiser (`prepare` from split files)."""
    clip: object | None
    vae: object | None
    clip_vision: object | None
    name: str
    profile: BaseProfile

    @property
    def clip_vision_dim(self) -> int:
        if self.clip_vision is None:
            raise HyperLoRAError("no CLIP vision model is loaded; set model.clip_vision in the config.")
        return int(self.clip_vision.model.vision_model.embeddings.class_embedding.shape[0])

    @torch.no_grad()
    def encode_text(self, captions: list[str]) -> Conditioning:
        """The base's text conditioning of `captions` (batched, CPU, fp32), as ComfyUI's CLIPTextEncode
        encodes them with this backbone's text encoders."""
        if self.clip is None:
            raise HyperLoRAError(f"no text encoder is loaded; the checkpoint (or model.text_encoders) must hold "
                                 f"{self.profile.display_name}'s.")
        return self.profile.text_conditioning(self.clip, captions)

    @torch.no_grad()
    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        """`[B, H, W, 3]` in 0..1 -> VAE latents as `VAE.encode` returns them (not yet scaled)."""
        if self.vae is None:
            raise HyperLoRAError("no VAE is loaded; the checkpoint (or model.vae) must hold one.")
        return self.vae.encode(images).float().cpu()

    @torch.no_grad()
    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        return self.vae.decode(latents).float().cpu().clamp(0, 1)

    @torch.no_grad()
    def clip_tokens(self, crops: torch.Tensor) -> torch.Tensor:
        """Penultimate-layer CLIP vision tokens of face crops `[B, H, W, 3]` (0..1)."""
        if self.clip_vision is None:
            raise HyperLoRAError("no CLIP vision model is loaded; set model.clip_vision in the config.")
        return self.clip_vision.encode_image(crops, crop=True)["penultimate_hidden_states"].float()


def _check_file(path: str | os.PathLike, what: str) -> Path:
    p = Path(path).expanduser()
    if not p.is_file():
        raise HyperLoRAError(f"{what} '{p}' does not exist; fix the path in the config (model section).")
    if p.suffix != ".safetensors":
        raise HyperLoRAError(
            f"{what} '{p}' is not a .safetensors file; the trainer loads safetensors only (no pickle). "
            "Convert it first."
        )
    return p


def _check_base(profile: BaseProfile, base: str | None, path: Path) -> None:
    if base is not None and profile.name != base:
        raise HyperLoRAError(f"{path} is a {profile.display_name} model but the config's model.base is '{base}'; "
                             f"set model.base to '{profile.name}' or leave it out (then it is detected).")


def _load_clip_vision(clip_vision: str | os.PathLike | None):
    return comfy.clip_vision.load(str(_check_file(clip_vision, "CLIP vision model"))) if clip_vision else None


def load_backbone(checkpoint: str | os.PathLike, clip_vision: str | os.PathLike | None,
                  base: str | None = None, parts: Collection[str] = PARTS) -> Backbone:
    """A checkpoint (UNet + text encoders + VAE) and a CLIP vision file, through ComfyUI's loaders; its base
    is detected (`base`, when given, must match). The UNet is always loaded (detection needs it); the text
    encoders and the VAE only if in `parts`."""
    ckpt = _check_file(checkpoint, "model checkpoint")
    out = comfy.sd.load_checkpoint_guess_config(str(ckpt), output_vae="vae" in parts,
                                                output_clip="text_encoders" in parts, embedding_directory=None)
    unet, clip, vae = out[0], out[1], out[2]
    profile = profile_of(unet, str(ckpt))
    _check_base(profile, base, ckpt)
    return Backbone(unet=unet, clip=clip, vae=vae, clip_vision=_load_clip_vision(clip_vision), name=ckpt.name,
                    profile=profile)


def _header(path: Path) -> dict[str, torch.Tensor]:
    """A .safetensors file's tensors as empty `meta` tensors of their shapes: all that ComfyUI's detection reads
    (names and shapes), without reading the weights (a damaged file is reported by `read_shapes`)."""
    return {key: torch.empty(shape, device="meta") for key, shape in read_shapes(path).items()}


def diffusion_model_profile(path: Path) -> BaseProfile:
    """The base of a diffusion model file, detected from its header as ComfyUI's UNETLoader
    (`load_diffusion_model`) detects it: ComfyUI's own layout (with or without a checkpoint's prefix), else
    diffusers'."""
    sd = _header(path)
    prefix = comfy.model_detection.unet_prefix_from_state_dict(sd)
    sd = comfy.utils.state_dict_prefix_replace(sd, {prefix: ""}, filter_keys=True) or sd
    config = comfy.model_detection.model_config_from_unet(sd, "")
    if config is None:
        converted = comfy.model_detection.convert_diffusers_mmdit(sd, "")
        config = (comfy.model_detection.model_config_from_unet(converted, "") if converted is not None
                  else comfy.model_detection.model_config_from_diffusers_unet(sd))
    if config is None:
        raise HyperLoRAError(f"model.diffusion_model: ComfyUI does not recognise '{path}' as a diffusion model (its "
                             "Load Diffusion Model node would refuse it too). Point model.diffusion_model at the base "
                             "model's file in ComfyUI's models/diffusion_models; text encoders go in "
                             "model.text_encoders, the VAE in model.vae.")
    return profile_of_config(config, f"model.diffusion_model '{path}'")


def _te_name(kind: str | None) -> str:
    return kind.replace("_", "-") if kind else "unknown"


def check_text_encoders(paths: Sequence[Path], profile: BaseProfile) -> None:
    """Each file is one of the text encoders `profile` reads, and together they are all of them: ComfyUI's
    `load_clip` would build the base's encoders anyway and leave a missing or mismatched one random. Read from
    the headers, as ComfyUI's `detect_te_model` tells encoders apart."""
    found = []
    for path in paths:
        sd = _header(path)
        if "transformer.resblocks.0.ln_1.weight" in sd:  # open_clip's layout: load_clip converts it first
            sd = comfy.utils.clip_text_transformers_convert(sd, "", "")
        kind = comfy.sd.detect_te_model(sd)
        found.append(kind.name if kind is not None else None)
    needs = " and ".join(_te_name(k) for k in profile.text_encoders)
    where = "ComfyUI's models/text_encoders"
    for path, kind in zip(paths, found):
        if kind not in profile.text_encoders:
            what = f"a {_te_name(kind)} text encoder" if kind else "not a text encoder ComfyUI recognises"
            raise HyperLoRAError(f"model.text_encoders: '{path}' is {what}, but {profile.display_name} reads captions "
                                 f"with {needs}; list its {needs} files ({where}).")
    if sorted(found) != sorted(profile.text_encoders):
        raise HyperLoRAError(f"model.text_encoders lists {', '.join(_te_name(k) for k in found)}, but "
                             f"{profile.display_name} reads captions with {needs}, one file each; list exactly those "
                             f"({where}).")


def _load_vae(path: Path, profile: BaseProfile):
    """The VAE file as ComfyUI's VAELoader loads it, refused unless it makes the latents `profile` denoises."""
    vae = comfy.sd.VAE(sd=comfy.utils.load_torch_file(str(path)))
    if vae.first_stage_model is None or vae.latent_channels != profile.latent_channels:
        what = (f"a VAE of {vae.latent_channels}-channel latents" if vae.first_stage_model is not None
                else "not a VAE ComfyUI recognises")
        raise HyperLoRAError(f"model.vae: '{path}' is {what}, but {profile.display_name} denoises "
                             f"{profile.latent_channels}-channel latents; set model.vae to {profile.display_name}'s "
                             "VAE (ComfyUI's models/vae).")
    return vae


def load_split(diffusion_model: str | os.PathLike, text_encoders: Sequence[str | os.PathLike] = (),
               vae: str | os.PathLike | None = None, clip_vision: str | os.PathLike | None = None,
               base: str | None = None, parts: Collection[str] = PARTS) -> Backbone:
    """A base model from the files ComfyUI keeps apart (how FLUX and Z-Image ship): the diffusion model, its text
    encoders and a VAE, each through the ComfyUI loader its node uses (`load_diffusion_model`, `load_clip` with
    the base's `CLIPType`, `VAE`), and only the `parts` asked for. The base is detected from the diffusion
    model's header (`base`, when given, must match); every file named is checked before anything loads."""
    unet_path = _check_file(diffusion_model, "model.diffusion_model")
    profile = diffusion_model_profile(unet_path)
    _check_base(profile, base, unet_path)
    te_paths = [_check_file(p, "model.text_encoders") for p in text_encoders]
    if te_paths:
        check_text_encoders(te_paths, profile)
    vae_path = _check_file(vae, "model.vae") if vae else None
    if "text_encoders" in parts and not te_paths:
        raise HyperLoRAError(f"model.text_encoders is not set, but this command encodes captions ({ENCODERS_USED_BY} "
                             f"do): list {profile.display_name}'s {' and '.join(map(_te_name, profile.text_encoders))} "
                             "files (ComfyUI's models/text_encoders).")
    if "vae" in parts and vae_path is None:
        raise HyperLoRAError(f"model.vae is not set, but this command encodes or decodes images ({ENCODERS_USED_BY} "
                             f"do): set it to {profile.display_name}'s VAE file (ComfyUI's models/vae).")
    unet = comfy.sd.load_diffusion_model(str(unet_path)) if "diffusion_model" in parts else None
    clip = (comfy.sd.load_clip([str(p) for p in te_paths], clip_type=comfy.sd.CLIPType[profile.clip_type])
            if "text_encoders" in parts else None)
    vae_model = _load_vae(vae_path, profile) if "vae" in parts else None
    return Backbone(unet=unet, clip=clip, vae=vae_model, clip_vision=_load_clip_vision(clip_vision),
                    name=unet_path.name, profile=profile)


def tiny_backbone(seed: int = 0, base: str = LEGACY_BASE) -> Backbone:
    """A base's UNet (widths 32..), text encoders, TAESD VAE and CLIP ViT, all tiny and seeded."""
    profile = profile_named(base, "model.base")
    unet = profile.build(profile.tiny_config())
    init_weights(unet.model, seed=seed, std=TINY_UNET_STD)
    clip = profile.tiny_clip()
    init_weights(clip.cond_stage_model, seed=seed + 1)
    taesd = comfy.taesd.taesd.TAESD(latent_channels=profile.latent_channels)
    init_weights(taesd, seed=seed + 2, std=0.05)
    with torch.no_grad():
        taesd.vae_scale.fill_(1.0)
        taesd.vae_shift.fill_(0.0)
    vae = comfy.sd.VAE(sd=taesd.state_dict())
    with tempfile.TemporaryDirectory() as tmp:
        cfg = Path(tmp) / "tiny_clip_vision.json"
        cfg.write_text(json.dumps(TINY_CLIP_VISION))
        vision = comfy.clip_vision.ClipVisionModel(str(cfg))
    init_weights(vision.model, seed=seed + 3)
    return Backbone(unet=unet, clip=clip, vae=vae, clip_vision=vision, name=f"tiny-{profile.name}-seed{seed}",
                    profile=profile)


@dataclass(frozen=True)
class BackboneKind:
    """A named way to build a `Backbone`, with the defaults that belong to it."""

    name: str
    load: Callable[..., Backbone]
    """`load(checkpoint=..., clip_vision=..., seed=..., base=...) -> Backbone` (the training config's model
    section; `base` None: the kind's own or the checkpoint's); a kind with `split_files` also gets
    `diffusion_model=..., text_encoders=..., vae=..., parts=...` (`parts`: what the command needs of `PARTS`)."""
    resolution: int
    """Default side of the square training images (`prepare`, `finetune`)."""
    needs_checkpoint: bool = False
    """`model.checkpoint` must name a file (or folder) for this kind (or, with `split_files`, `model.diffusion_model`)."""
    split_files: bool = False
    """Reads a base's model files: one checkpoint or the split form (`model.diffusion_model`, `text_encoders`,
    `vae`), loading only the `parts` a command needs."""


_KINDS: dict[str, BackboneKind] = {}
PROVIDERS: dict[str, str] = {"toy": "hyperlora_core.toy.backbone"}
"""Backbone name -> the module that registers it when imported (so the registry can load it on first use)."""


def register_backbone(kind: BackboneKind) -> BackboneKind:
    _KINDS[kind.name] = kind
    return kind


def backbone_names() -> tuple[str, ...]:
    return tuple(dict.fromkeys([*_KINDS, *PROVIDERS]))


def backbone_kind(name: str) -> BackboneKind:
    """The registered kind called `name` (importing its provider module on first use)."""
    if name not in _KINDS and name in PROVIDERS:
        importlib.import_module(PROVIDERS[name])
    if name not in _KINDS:
        raise HyperLoRAError(f"config: 'model.backbone' is '{name}'; allowed: {', '.join(backbone_names())}.")
    return _KINDS[name]


def _load_checkpoint_kind(checkpoint: str | None = None, clip_vision: str | None = None, seed: int = 0,  # noqa: ARG001
                          base: str | None = None, diffusion_model: str | None = None,
                          text_encoders: Sequence[str] = (), vae: str | None = None,
                          parts: Collection[str] = PARTS) -> Backbone:
    if diffusion_model:
        return load_split(diffusion_model, text_encoders, vae, clip_vision, base, parts)
    return load_backbone(checkpoint, clip_vision, base, parts)


def _load_tiny_kind(checkpoint: str | None = None, clip_vision: str | None = None, seed: int = 0,  # noqa: ARG001
                    base: str | None = None) -> Backbone:
    return tiny_backbone(seed, base or LEGACY_BASE)


register_backbone(BackboneKind("tiny", _load_tiny_kind, resolution=64))
register_backbone(BackboneKind("checkpoint", _load_checkpoint_kind, resolution=1024, needs_checkpoint=True,
                               split_files=True))
