"""The toy world's VAE, UNet and caption encoder, as ComfyUI's own MODEL / VAE / CLIP objects.

Built through `comfy_bridge.wrappers` (this module imports no ComfyUI code itself):

- VAE: ComfyUI's `AutoencoderKL` (ch 32, ch_mult [1, 2]: 32x32x3 <-> 4x16x16, a /2 VAE) as a
  `comfy.sd.VAE`, so `VAEEncode`/`VAEDecode` work on it. The latent scale is folded into
  `quant_conv`/`post_quant_conv` so SDXL's `latent_format` (x 0.13025) applies unchanged.
- UNet: the SDXL profile's (`comfy_bridge.bases.sdxl`) UNet at small widths (`model_channels` 32, context 64, ADM =
  pooled 64 + 6 x 256): ComfyUI's SDXL classes, so samplers, LoRA key maps and patches are the real ones.
- Text encoder: a `comfy.sd.CLIP` around `CaptionEncoder`, so `CLIPTextEncode` works on it.

EmptyLatentImage makes `width // 8` latents; the toy VAE is /2, so a 128 x 128 "image" there is
the toy's 16 x 16 latent, which decodes to 32 x 32 pixels. SDXL's size conditioning is computed
by ComfyUI from the latent as 8 x 16 = 128 px, and the UNet is trained with exactly that.
"""

from __future__ import annotations

import os

import torch

from ..comfy_bridge.bases import SDXL
from ..comfy_bridge.wrappers import autoencoder_kl, text_encoder_object, torch_default_init, unet_object, vae_object
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


def new_unet():
    """Fresh toy UNet (ModelPatcher): torch default init, residual outputs zeroed."""
    patcher = BASE.build(UNET_CONFIG, device="cpu")
    dm = patcher.model.diffusion_model
    torch_default_init(dm)
    with torch.no_grad():
        for name, p in dm.named_parameters():
            if ".out_layers.3." in name or ".proj_out." in name or name.startswith("out.2."):
                p.zero_()
    return patcher


def wrap_unet(state_dict: dict[str, torch.Tensor]):
    return unet_object(BASE, UNET_CONFIG, state_dict, "toy UNet")


def wrap_caption_encoder(state_dict: dict[str, torch.Tensor]):
    return text_encoder_object(lambda: CaptionEncoder.for_state_dict(state_dict),
                               lambda text: caption_tokens([text])[0].tolist(), state_dict)


def load_toy_models(folder: str | os.PathLike | None = None) -> tuple[object, object, object]:
    """(MODEL, CLIP, VAE) of a toy world folder, as ComfyUI's loaders return them."""
    return (wrap_unet(files.load_part("unet", folder)), wrap_caption_encoder(files.load_part("caption_encoder", folder)),
            wrap_vae(files.load_part("vae", folder)))
