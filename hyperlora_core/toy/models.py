"""The toy world's VAE, UNet and caption encoder, as ComfyUI's own MODEL / VAE / CLIP objects.

Built through `comfy_bridge.wrappers` (this module imports no ComfyUI code itself):

- VAE: ComfyUI's `AutoencoderKL` (ch 32, ch_mult [1, 2]: 32x32x3 <-> 4x16x16, a /2 VAE) as a
  `comfy.sd.VAE`, so `VAEEncode`/`VAEDecode` work on it. The latent scale is folded into
  `quant_conv`/`post_quant_conv` so SDXL's `latent_format` (x 0.13025) applies unchanged.
- UNet: the SDXL profile's (`comfy_bridge.bases.sdxl`) UNet at small widths (`model_channels` 32, context 64, ADM =
  pooled 64 + 6 x 256): ComfyUI's SDXL classes, so samplers, LoRA key maps and patches are the real ones.
- DiT: the FLUX profile's (`comfy_bridge.bases.flux`) transformer at small widths (hidden 128, 2 double and 4
  single blocks, context and pooled vector 64 from the caption encoder, 4 latent channels in and out), its
  flow-matching schedule ComfyUI's own (`ModelSamplingFlux`), reading the toy VAE's latents in SDXL's latent
  format (the VAE is shared). The world's second base (`--base dit`), beside the UNet.
- Text encoder: a `comfy.sd.CLIP` around `CaptionEncoder`, so `CLIPTextEncode` works on it (each base has its
  own, trained with it).

A `ToyBase` is one base of the toy world: its profile, its tiny model's settings and its files; `TOY_BASES`
lists them (`unet`, the shipped world's first, and `dit`). Nothing else in the toy world names a base model.

EmptyLatentImage makes `width // 8` latents; the toy VAE is /2, so a 128 x 128 "image" there is
the toy's 16 x 16 latent, which decodes to 32 x 32 pixels. SDXL's size conditioning is computed
by ComfyUI from the latent as 8 x 16 = 128 px, and the UNet is trained with exactly that.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

import torch

from ..comfy_bridge.bases import FLUX, SDXL, BaseProfile, Conditioning
from ..comfy_bridge.wrappers import (
    autoencoder_kl,
    read_latents_like,
    text_encoder_object,
    torch_default_init,
    unet_object,
    vae_object,
)
from ..errors import HyperLoRAError
from . import files
from .caption import CONTEXT_DIM, CaptionEncoder, caption_tokens

VAE_DDCONFIG = {
    "double_z": True, "z_channels": 4, "resolution": 32, "in_channels": 3, "out_ch": 3, "ch": 32,
    "ch_mult": [1, 2], "num_res_blocks": 1, "attn_resolutions": [], "dropout": 0.0,
}
VAE_EMBED_DIM = 4
VAE_RATIO = 2
LATENT_SCALE = 0.13025
"""SDXL's `latent_format.scale_factor`; raw toy latents are trained to have std 1 / LATENT_SCALE."""

BASE = SDXL
"""The toy world's UNet is an SDXL-class model: its profile gives the UNet, its conditioning and its LoRA targets."""
UNET_CONFIG = BASE.tiny_config(CONTEXT_DIM)
LATENT_SIZE = 16
COMFY_SIZE = LATENT_SIZE * 8
"""What ComfyUI passes as width/height to SDXL's size embedding for a 16x16 latent (and what
EmptyLatentImage must be asked for)."""
IMAGE_CONDITIONING = {k: v[None] for k, v in BASE.image_conditioning([COMFY_SIZE] * 2, [0, 0], [COMFY_SIZE] * 2).items()}
"""What every toy sample's crop geometry adds to its conditioning (SDXL's size numbers), batch of one."""


def new_vae_model():
    """A fresh toy `AutoencoderKL` (to train)."""
    return autoencoder_kl(VAE_DDCONFIG, VAE_EMBED_DIM)


def wrap_vae(state_dict: dict[str, torch.Tensor]):
    return vae_object(state_dict, VAE_DDCONFIG, VAE_EMBED_DIM, VAE_RATIO)


DIT_OVERRIDES: dict = {"in_channels": VAE_EMBED_DIM, "out_channels": VAE_EMBED_DIM, "vec_in_dim": CONTEXT_DIM,
                      "hidden_size": 128, "num_heads": 4}
"""The toy DiT: the FLUX profile's tiny transformer (2 double and 4 single blocks, rope axes 8 + 12 + 12 per head),
hidden 128 in 4 heads of 32, reading the toy VAE's 4 latent channels and the caption encoder's 64-wide context
and pooled vector (about 2.4 M weights, 4.6 MiB in fp16; the UNet has 6.3 M)."""


@dataclass(frozen=True)
class ToyBase:
    """One base model of the toy world: the profile it is built from, its tiny settings, where its files go.

    `parts`: role -> part name in `files` (`model`, `captions`, `hyperlora`); `prefix`: what its build stages and
    records are prefixed with (`dit_base`, `dit_hyper` in toy_world.json); `zero_init`: names of the weights
    zeroed at the start (residual outputs, adaLN-Zero modulation), so a fresh model is the identity."""

    name: str
    profile: BaseProfile
    config: dict
    parts: dict[str, str]
    prefix: str
    zero_init: str
    description: str
    image_conditioning: Conditioning = field(default_factory=dict)
    """What every toy sample's crop geometry adds to its conditioning, batch of one (SDXL's size numbers)."""

    def new_model(self):
        """A fresh model of this base (ModelPatcher, CPU, fp32, reading the toy VAE's latents): torch's default
        init, `zero_init` weights zeroed."""
        patcher = self.profile.build(self.config, device="cpu")
        read_latents_like(patcher, BASE)
        dm = patcher.model.diffusion_model
        torch_default_init(dm)
        zero = re.compile(self.zero_init)
        with torch.no_grad():
            for name, p in dm.named_parameters():
                if zero.search(name):
                    p.zero_()
        return patcher

    def wrap_model(self, state_dict: dict[str, torch.Tensor]):
        """The model of these weights, as ComfyUI's UNETLoader would hand it out."""
        patcher = unet_object(self.profile, self.config, state_dict, f"toy {self.name}")
        read_latents_like(patcher, BASE)
        return patcher

    def conditioning(self, context: torch.Tensor, pooled: torch.Tensor) -> Conditioning:
        """The caption encoder's output for a batch -> this base's conditioning (the profile's keys; what its
        `model_inputs` needs beside them, such as FLUX's guidance, takes the profile's default)."""
        b = context.shape[0]
        return {"context": context, "pooled": pooled,
                **{k: v.to(context.device).expand(b, *v.shape[1:]) for k, v in self.image_conditioning.items()}}


UNET = ToyBase(
    "unet", BASE, UNET_CONFIG, {"model": "unet", "captions": "caption_encoder", "hyperlora": "hyperlora"}, "",
    r"\.out_layers\.3\.|\.proj_out\.|^out\.2\.", "tiny SDXL-class UNet", IMAGE_CONDITIONING)
DIT = ToyBase(
    "dit", FLUX, {**FLUX.tiny_config(CONTEXT_DIM), **DIT_OVERRIDES},
    {"model": "dit", "captions": "dit_caption_encoder", "hyperlora": "dit_hyperlora"}, "dit_",
    r"_mod\.lin\.|modulation\.lin\.|^final_layer\.(linear|adaLN_modulation\.1)\.", "tiny FLUX.1-class DiT")
TOY_BASES: dict[str, ToyBase] = {b.name: b for b in (UNET, DIT)}
"""The toy world's bases by name (the build's and the loader's `--base`); the UNet is the default."""


def toy_base(name: str | None = None) -> ToyBase:
    """The toy base called `name` (None: the UNet)."""
    if name is None:
        return UNET
    if name not in TOY_BASES:
        raise HyperLoRAError(f"toy world base '{name}' does not exist; choose {' or '.join(TOY_BASES)}.")
    return TOY_BASES[name]


def toy_base_of_profile(profile: str | None) -> ToyBase:
    """The toy base built from the profile called `profile` (a trainer config's `model.base`; None: the UNet)."""
    for b in TOY_BASES.values():
        if profile in (None, b.profile.name) and (profile is not None or b is UNET):
            return b
    raise HyperLoRAError(f"config: model.base is '{profile}' but the toy world has bases of "
                         f"{', '.join(b.profile.name for b in TOY_BASES.values())} only; set one of those, or leave "
                         "model.base out for the UNet.")


def wrap_caption_encoder(state_dict: dict[str, torch.Tensor]):
    return text_encoder_object(lambda: CaptionEncoder.for_state_dict(state_dict),
                               lambda text: caption_tokens([text])[0].tolist(), state_dict)


def load_toy_models(folder: str | os.PathLike | None = None, base: str | None = None) -> tuple[object, object, object]:
    """(MODEL, CLIP, VAE) of a toy world folder's base `base` (None: the UNet), as ComfyUI's loaders return them."""
    b = toy_base(base)
    return (b.wrap_model(files.load_part(b.parts["model"], folder)),
            wrap_caption_encoder(files.load_part(b.parts["captions"], folder)),
            wrap_vae(files.load_part("vae", folder)))
