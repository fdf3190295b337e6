"""The toy world's ComfyUI side: its VAE, UNet and text encoder as ComfyUI's own objects.

This is the only toy module that imports `comfy.*` (the toy analogue of `comfy_bridge`):

- VAE: ComfyUI's `AutoencoderKL` (ch 32, ch_mult [1, 2]: 32x32x3 <-> 4x16x16, a /2 VAE) wrapped
  in `comfy.sd.VAE`, so `VAEEncode`/`VAEDecode` work on it. The latent scale is folded into
  `quant_conv`/`post_quant_conv` so SDXL's `latent_format` (x 0.13025) applies unchanged.
- UNet: `hyperlora_core.comfy_bridge.sdxl.build_sdxl` at small widths (`model_channels` 32,
  context 64, ADM = pooled 64 + 6 x 256): ComfyUI's SDXL classes, so samplers, LoRA key maps and
  patches are the real ones.
- Text encoder: `comfy.sd.CLIP` around `CaptionEncoder`, so `CLIPTextEncode` works on it.

EmptyLatentImage makes `width // 8` latents; the toy VAE is /2, so a 128 x 128 "image" there is
the toy's 16 x 16 latent, which decodes to 32 x 32 pixels. SDXL's size conditioning is computed
by ComfyUI from the latent as 8 x 16 = 128 px, and the UNet is trained with exactly that.
"""

from __future__ import annotations

import json
from pathlib import Path

import comfy.ldm.models.autoencoder
import comfy.model_management
import comfy.sample
import comfy.samplers
import comfy.sd
import torch
from torch import nn

from ..comfy_bridge.sdxl import TINY_SDXL_OVERRIDES, build_sdxl, sdxl_unet_config
from ..errors import HyperLoRAError
from ..safetensors_io import load_tensors, read_metadata
from .caption import CONTEXT_DIM, CaptionEncoder, caption_tokens

VAE_DDCONFIG = {
    "double_z": True, "z_channels": 4, "resolution": 32, "in_channels": 3, "out_ch": 3, "ch": 32,
    "ch_mult": [1, 2], "num_res_blocks": 1, "attn_resolutions": [], "dropout": 0.0,
}
VAE_EMBED_DIM = 4
VAE_RATIO = 2
LATENT_SCALE = 0.13025
"""SDXL's `latent_format.scale_factor`; raw toy latents are trained to have std 1 / LATENT_SCALE."""

UNET_CONFIG = sdxl_unet_config(**TINY_SDXL_OVERRIDES, adm_in_channels=CONTEXT_DIM + 6 * 256)
LATENT_SIZE = 16
COMFY_SIZE = LATENT_SIZE * 8
"""What ComfyUI passes as width/height to SDXL's size embedding for a 16x16 latent (and what
EmptyLatentImage must be asked for)."""


def torch_default_init(module: nn.Module) -> None:
    """Run torch's own `reset_parameters` on layers whose ComfyUI ops skipped initialisation."""
    for m in module.modules():
        for cls in (nn.Conv2d, nn.Linear, nn.GroupNorm, nn.LayerNorm):
            if isinstance(m, cls):
                cls.reset_parameters(m)
                break


# -- VAE --------------------------------------------------------------------------------------
def new_vae_model() -> comfy.ldm.models.autoencoder.AutoencoderKL:
    model = comfy.ldm.models.autoencoder.AutoencoderKL(ddconfig=dict(VAE_DDCONFIG), embed_dim=VAE_EMBED_DIM)
    torch_default_init(model)
    return model


def wrap_vae(state_dict: dict[str, torch.Tensor]) -> comfy.sd.VAE:
    """A `comfy.sd.VAE` (what VAELoader returns) around the toy AutoencoderKL weights."""
    config = {"params": {"ddconfig": dict(VAE_DDCONFIG), "embed_dim": VAE_EMBED_DIM}}
    vae = comfy.sd.VAE(sd={k: v.float() for k, v in state_dict.items()}, config=config, dtype=torch.float32)
    vae.downscale_ratio = VAE_RATIO
    vae.upscale_ratio = VAE_RATIO
    vae.memory_used_encode = lambda shape, dtype: 4000 * shape[2] * shape[3] * comfy.model_management.dtype_size(dtype)
    vae.memory_used_decode = lambda shape, dtype: 16000 * shape[2] * shape[3] * comfy.model_management.dtype_size(dtype)
    return vae


# -- UNet -------------------------------------------------------------------------------------
def new_unet():
    """Fresh toy UNet (ModelPatcher): torch default init, residual outputs zeroed."""
    patcher = build_sdxl(UNET_CONFIG, device="cpu")
    dm = patcher.model.diffusion_model
    torch_default_init(dm)
    with torch.no_grad():
        for name, p in dm.named_parameters():
            if ".out_layers.3." in name or ".proj_out." in name or name.startswith("out.2."):
                p.zero_()
    return patcher


def release_weight_patches() -> None:
    """Restore every loaded model's own weights. ComfyUI bakes a LoRA into the weights of the model
    its clones share and leaves it there after sampling; code that adds LoRAs through forward hooks
    on that shared model must first undo it, or it applies the LoRA twice."""
    comfy.model_management.unload_all_models()


def wrap_unet(state_dict: dict[str, torch.Tensor]):
    """A ModelPatcher (what UNETLoader returns) with the toy UNet weights, fp32."""
    patcher = build_sdxl(UNET_CONFIG, device="cpu")
    missing, unexpected = patcher.model.diffusion_model.load_state_dict(
        {k: v.float() for k, v in state_dict.items()}, strict=False
    )
    if missing or unexpected:
        raise HyperLoRAError(
            f"toy UNet weights do not fit the toy SDXL config (missing {missing[:4]}, unexpected {unexpected[:4]}); "
            "rebuild them with `make toy-world`."
        )
    return patcher


# -- text encoder -----------------------------------------------------------------------------
class ToyTokenizer:
    """ComfyUI tokenizer interface over `parse_caption` (one fixed 7-token sequence per prompt)."""

    def __init__(self, embedding_directory=None, tokenizer_data=None) -> None:  # noqa: ARG002 - ComfyUI's signature
        pass

    def tokenize_with_weights(self, text: str, return_word_ids: bool = False, **kwargs):  # noqa: ARG002
        ids = caption_tokens([text])[0].tolist()
        return {"toy": [[(t, 1.0) for t in ids]]}

    def untokenize(self, token_weight_pair):
        return token_weight_pair

    def state_dict(self) -> dict:
        return {}


class ToyTextModel(nn.Module):
    """ComfyUI text-encoder interface (`encode_token_weights`, `load_sd`) over `CaptionEncoder`."""

    def __init__(self, device="cpu", dtype=None, model_options=None) -> None:  # noqa: ARG002
        super().__init__()
        self.encoder = CaptionEncoder().to(device=device, dtype=torch.float32)
        self.dtypes = {torch.float32}

    def set_clip_options(self, options) -> None:
        pass

    def reset_clip_options(self) -> None:
        pass

    def encode_token_weights(self, token_weight_pairs):
        rows = token_weight_pairs["toy"] if isinstance(token_weight_pairs, dict) else token_weight_pairs
        ids = torch.tensor([[t for t, _ in row] for row in rows[:1]], dtype=torch.long, device=self.encoder.position.device)
        context, pooled = self.encoder(ids)
        return context, pooled

    def load_sd(self, sd):
        return self.encoder.load_state_dict(sd, strict=True)


class _ToyClipTarget:
    clip = ToyTextModel
    tokenizer = ToyTokenizer
    params: dict = {}


def wrap_caption_encoder(state_dict: dict[str, torch.Tensor]) -> comfy.sd.CLIP:
    """A `comfy.sd.CLIP` (what CLIPLoader returns) around the toy caption encoder."""
    clip = comfy.sd.CLIP(_ToyClipTarget(), model_options={"dtype": torch.float32})
    clip.cond_stage_model.load_sd({k: v.float() for k, v in state_dict.items()})
    return clip


# -- conditioning and sampling helpers --------------------------------------------------------
def size_embedding(model) -> torch.Tensor:
    """The 6 x 256 size part of SDXL's ADM vector for a 16x16 toy latent, `[1, 1536]`."""
    dummy = torch.zeros(1, CONTEXT_DIM)
    return model.encode_adm(pooled_output=dummy, width=COMFY_SIZE, height=COMFY_SIZE)[:, CONTEXT_DIM:]


def conditioning(context: torch.Tensor, pooled: torch.Tensor) -> list:
    """ComfyUI CONDITIONING for a batch-1 context/pooled pair."""
    return [[context, {"pooled_output": pooled}]]


def comfy_sample(model_patcher, positive, negative, noise: torch.Tensor, seed: int = 0, steps: int = 20,
                 cfg: float = 1.0, sampler: str = "euler", scheduler: str = "karras") -> torch.Tensor:
    """ComfyUI's KSampler path (`comfy.sample.sample`) on an empty toy latent with the given noise;
    returns latents `[B, 4, 16, 16]` as KSampler outputs them (what VAEDecode takes)."""
    latent = torch.zeros(noise.shape[0], 4, LATENT_SIZE, LATENT_SIZE)
    return comfy.sample.sample(model_patcher, noise, steps, cfg, sampler, scheduler, positive, negative, latent,
                               disable_pbar=True, seed=seed)


def toy_noise(count: int, seed: int) -> torch.Tensor:
    """KSampler's noise for `count` toy latents and a seed (what the KSampler node would draw)."""
    return comfy.sample.prepare_noise(torch.zeros(count, 4, LATENT_SIZE, LATENT_SIZE), seed)


# -- files ------------------------------------------------------------------------------------
def read_json_metadata(path: Path, key: str) -> dict:
    raw = read_metadata(path).get(key)
    return json.loads(raw) if raw else {}


def load_world_part(path: Path) -> dict[str, torch.Tensor]:
    if not Path(path).is_file():
        raise HyperLoRAError(f"{path}: toy world file missing; run `make toy-world` (or check out models/toy/).")
    return load_tensors(path)


@torch.no_grad()
def euler_sample(model, noise: torch.Tensor, context: torch.Tensor, adm: torch.Tensor,
                 uncond_context: torch.Tensor | None = None, uncond_adm: torch.Tensor | None = None,
                 steps: int = 20, cfg: float = 1.0, scheduler: str = "karras") -> torch.Tensor:
    """Batched Euler on ComfyUI's model (`model_base.SDXL`) with per-sample conditioning.

    The same sigmas and update as KSampler's "euler" + `scheduler`, but every sample may have its
    own context (and, through forward hooks, its own LoRA), which KSampler cannot batch.
    Returns latents in the model's space (x LATENT_SCALE).
    """
    sigmas = comfy.samplers.calculate_sigmas(model.model_sampling, scheduler, steps).to(noise)
    # always from pure noise (denoise 1), which KSampler scales by sqrt(1 + sigma_max^2) for EPS models
    x = model.model_sampling.noise_scaling(sigmas[0], noise.clone(), torch.zeros_like(noise), max_denoise=True)
    guided = cfg != 1.0 and uncond_context is not None
    for i in range(len(sigmas) - 1):
        s = sigmas[i].expand(x.shape[0])
        if guided:
            den = model.apply_model(torch.cat([x, x]), torch.cat([s, s]), c_crossattn=torch.cat([context, uncond_context]),
                                    y=torch.cat([adm, uncond_adm]))
            cond, uncond = den.chunk(2)
            den = uncond + cfg * (cond - uncond)
        else:
            den = model.apply_model(x, s, c_crossattn=context, y=adm)
        x = x + (x - den) / sigmas[i] * (sigmas[i + 1] - sigmas[i])
    return x


# -- ComfyUI model folders ----------------------------------------------------------------------
BUILTIN_WORLD = "(built-in) models/toy"


def register_toy_folder() -> None:
    """`models/toy_world` as a ComfyUI model folder (extra_model_paths.yaml may add more)."""
    import os

    import folder_paths

    from .install import TOY_FOLDER

    folder_paths.add_model_folder_path(TOY_FOLDER, os.path.join(folder_paths.models_dir, TOY_FOLDER))
    paths, exts = folder_paths.folder_names_and_paths[TOY_FOLDER]
    folder_paths.folder_names_and_paths[TOY_FOLDER] = (paths, set(exts) | {".safetensors"})


def toy_world_choices() -> dict[str, Path]:
    """Display name -> folder of every toy world ComfyUI can see (the pack's own copy first)."""
    import folder_paths

    from . import files
    from .install import TOY_FOLDER

    register_toy_folder()
    found: dict[str, Path] = {}
    if files.part_path("unet", files.DEFAULT_DIR).is_file():
        found[BUILTIN_WORLD] = files.DEFAULT_DIR
    for root in folder_paths.get_folder_paths(TOY_FOLDER):
        root = Path(root)
        for folder in [root, *sorted(p for p in root.iterdir() if p.is_dir())] if root.is_dir() else []:
            if (folder / files.FILES["unet"]).is_file():
                found.setdefault(f"{TOY_FOLDER}/{folder.relative_to(root).as_posix()}".rstrip("/."), folder)
    return found


def resolve_toy_world(name: str) -> Path:
    choices = toy_world_choices()
    if name not in choices:
        raise HyperLoRAError(
            f"toy world '{name}' not found (found: {', '.join(choices) or 'none'}). The pack ships one in "
            "models/toy; rebuild it with `make toy-world` if it is missing."
        )
    return choices[name]


def load_toy_models(folder: Path) -> tuple[object, object, object]:
    """(MODEL, CLIP, VAE) of a toy world folder, as ComfyUI's loaders return them."""
    from . import files

    return (wrap_unet(files.load_part("unet", folder)), wrap_caption_encoder(files.load_part("caption_encoder", folder)),
            wrap_vae(files.load_part("vae", folder)))
