"""Small plain-torch models handed to ComfyUI as its own MODEL / CLIP / VAE objects.

A model built here goes through ComfyUI's loaders' types (`ModelPatcher`, `comfy.sd.CLIP`,
`comfy.sd.VAE`), so samplers, LoRA key maps, patches, `CLIPTextEncode` and `VAEDecode` treat it
as they treat a checkpoint's. The toy world builds its UNet, caption encoder and VAE this way.
"""

from __future__ import annotations

from collections.abc import Callable

import comfy.ldm.models.autoencoder
import comfy.model_management
import comfy.sd
import torch
from torch import nn

from ..errors import HyperLoRAError


def torch_default_init(module: nn.Module) -> None:
    """Run torch's own `reset_parameters` on the layers whose ComfyUI ops skip initialisation; RMS norms that
    hold their gain as `scale` (FLUX's query/key norms, made with `torch.empty`) start at one."""
    for m in module.modules():
        for cls in (nn.Conv2d, nn.Linear, nn.GroupNorm, nn.LayerNorm):
            if isinstance(m, cls):
                cls.reset_parameters(m)
                break
        else:
            if type(m).__name__ == "RMSNorm" and isinstance(getattr(m, "scale", None), nn.Parameter):
                with torch.no_grad():
                    m.scale.fill_(1.0)


def autoencoder_kl(ddconfig: dict, embed_dim: int) -> comfy.ldm.models.autoencoder.AutoencoderKL:
    """ComfyUI's `AutoencoderKL` with torch's default initialisation (to train)."""
    model = comfy.ldm.models.autoencoder.AutoencoderKL(ddconfig=dict(ddconfig), embed_dim=embed_dim)
    torch_default_init(model)
    return model


def vae_object(state_dict: dict[str, torch.Tensor], ddconfig: dict, embed_dim: int, ratio: int | None = None,
               dtype: torch.dtype | None = torch.float32) -> comfy.sd.VAE:
    """A `comfy.sd.VAE` (what VAELoader returns) around `AutoencoderKL` weights; `ratio`: the image side
    is that many latent sides (ComfyUI assumes 8 and sizes its memory estimate for SD's VAE)."""
    config = {"params": {"ddconfig": dict(ddconfig), "embed_dim": embed_dim}}
    vae = comfy.sd.VAE(sd={k: v.float() for k, v in state_dict.items()}, config=config, dtype=dtype)
    if ratio is None:
        return vae
    vae.downscale_ratio = ratio
    vae.upscale_ratio = ratio
    size = comfy.model_management.dtype_size
    vae.memory_used_encode = lambda shape, dtype: 4000 * shape[2] * shape[3] * size(dtype)
    vae.memory_used_decode = lambda shape, dtype: 16000 * shape[2] * shape[3] * size(dtype)
    return vae


def unet_object(profile, unet_config: dict, state_dict: dict[str, torch.Tensor], what: str = "UNet"):
    """A `ModelPatcher` (what UNETLoader returns) of a UNet of `profile`'s base (`bases`) with these weights, fp32."""
    patcher = profile.build(unet_config, device="cpu")
    missing, unexpected = patcher.model.diffusion_model.load_state_dict(
        {k: v.float() for k, v in state_dict.items()}, strict=False
    )
    if missing or unexpected:
        raise HyperLoRAError(
            f"{what} weights do not fit its {profile.display_name} config (missing {missing[:4]}, unexpected {unexpected[:4]}); "
            "they were made for another model size."
        )
    return patcher


def read_latents_like(patcher, profile) -> None:
    """Make a built model read and write latents in the latent format of `profile`'s base (channels, scale,
    shift), as `process_latent_in/out` and KSampler's empty-latent fix read it: the toy world's DiT denoises the
    toy VAE's 4-channel latents, whose scale was folded for SDXL's format, not FLUX's 16-channel one."""
    fmt = profile.model_configs[0].latent_format
    if type(patcher.model.latent_format) is fmt:
        return
    patcher.model.latent_format = fmt()
    patcher.model.model_config.latent_format = patcher.model.latent_format


def text_encoder_object(encoder: Callable[[], nn.Module], tokenize: Callable[[str], list[int]],
                        state_dict: dict[str, torch.Tensor]) -> comfy.sd.CLIP:
    """A `comfy.sd.CLIP` (what CLIPLoader returns) around a torch text encoder.

    `encoder()` builds a module mapping token ids `[1, T]` to `(context [1, T, D], pooled [1, P])`;
    `tokenize(text)` gives a prompt's token ids. `CLIPTextEncode` then works on it unchanged."""

    class Tokenizer:
        def __init__(self, embedding_directory=None, tokenizer_data=None) -> None:  # noqa: ARG002 - ComfyUI's signature
            pass

        def tokenize_with_weights(self, text: str, return_word_ids: bool = False, **kwargs):  # noqa: ARG002
            return {"ids": [[(t, 1.0) for t in tokenize(text)]]}

        def untokenize(self, token_weight_pair):
            return token_weight_pair

        def state_dict(self) -> dict:
            return {}

    class TextModel(nn.Module):
        def __init__(self, device="cpu", dtype=None, model_options=None) -> None:  # noqa: ARG002
            super().__init__()
            self.encoder = encoder().to(device=device, dtype=torch.float32)
            self.dtypes = {torch.float32}

        def set_clip_options(self, options) -> None:
            pass

        def reset_clip_options(self) -> None:
            pass

        def encode_token_weights(self, token_weight_pairs):
            rows = token_weight_pairs["ids"] if isinstance(token_weight_pairs, dict) else token_weight_pairs
            device = next(self.encoder.parameters()).device
            ids = torch.tensor([[t for t, _ in row] for row in rows[:1]], dtype=torch.long, device=device)
            return self.encoder(ids)

        def load_sd(self, sd):
            return self.encoder.load_state_dict(sd, strict=True)

    class Target:
        clip = TextModel
        tokenizer = Tokenizer
        params: dict = {}

    clip = comfy.sd.CLIP(Target(), model_options={"dtype": torch.float32})
    clip.cond_stage_model.load_sd({k: v.float() for k, v in state_dict.items()})
    return clip


def sdxl_text_encoders(unet_config: dict, text_config: dict) -> comfy.sd.CLIP:
    """SDXL's tokenizer and dual text encoder (`comfy.sd.CLIP`), both encoders built from `text_config`
    (a CLIP text config's size keys), for the SDXL UNet `unet_config` describes. Weights uninitialised."""
    import comfy.supported_models

    target = comfy.supported_models.SDXL(unet_config).clip_target()
    return comfy.sd.CLIP(target, model_options={"clip_l_model_config": dict(text_config),
                                                "clip_g_model_config": dict(text_config)})


def clip_vision_model(config_path: str):
    """ComfyUI's `ClipVisionModel` from a HF-style config file (weights uninitialised)."""
    import comfy.clip_vision

    return comfy.clip_vision.ClipVisionModel(str(config_path))


def controlnet_model(unet_config: dict, hint_channels: int = 3):
    """ComfyUI's `cldm.ControlNet` for the UNet `unet_config` describes (weights uninitialised); saved in
    ComfyUI's ldm layout, ComfyUI's ControlNet loader reads it back from the shapes."""
    import comfy.cldm.cldm
    import comfy.ops

    config = {k: v for k, v in unet_config.items() if k != "out_channels"}
    return comfy.cldm.cldm.ControlNet(**config, hint_channels=hint_channels, operations=comfy.ops.disable_weight_init,
                                      device="cpu", dtype=torch.float32)
