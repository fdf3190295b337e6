"""Z-Image: ComfyUI's `supported_models.ZImage` (Z-Image-Turbo); plain `Lumina2` (Lumina Image 2.0) is refused.

Every fact of Z-Image the pack needs. The model is ComfyUI's `NextDiT` (`comfy.ldm.lumina.model`), a
single-stream rectified-flow transformer of width 3840: the caption features (Qwen3-4B's second-to-last
hidden layer, 2560 wide) pass 2 `context_refiner` blocks, the image patches 2 `noise_refiner` blocks, then
the two are concatenated and run through 30 joint `layers` (30 heads of 128, fused `attention.qkv`,
`attention.out`, SwiGLU `feed_forward.w1/w2/w3`). It predicts a velocity; ComfyUI's `ModelSamplingDiscreteFlow`
(CONST, shift 3.0 from `ZImage.sampling_settings`) turns it into the x0 estimate the trainer's loss is written
in. Lumina Image 2.0 shares the class tree (`ZImage` subclasses `Lumina2`) but has width 2304, a Gemma-2
text encoder and no Z-Image modulation: another base, so `matches` takes `ZImage` only and `profile_of`
names a Lumina2 model as unsupported.

Conditioning: one key, `context [B, 128, 2560]`, the caption's Qwen3 features as CLIPTextEncode gives them
(ZImageTokenizer's chat template, no padding), cut to their first 128 tokens and padded with zero features
to 128 so that a batch has one length. ComfyUI runs each prompt at its own length (and pads it to a multiple
of 32 with the model's learned `cap_pad_token` inside `patchify_and_embed`); our zero rows go through
`cap_embedder` as its bias and take part in the joint attention. ComfyUI's NextDiT masks captions only in
the context refiner and its attention reads a `[B, L]` mask wrongly for B > 1, so no mask is passed:
the trainer sees a fixed-length caption, and the sample grids use the same padded conditioning.

Why the trainer does not feed each caption at its own length (investigated; not done):
- ComfyUI's output for a caption of n tokens comes from its own padding: `patchify_and_embed` appends
  (-n) % 32 copies of the learned `cap_pad_token` after `cap_embedder`. No input row reproduces that token
  (`cap_embedder` is an RMSNorm and a 2560 -> 3840 linear map: most of its output space is out of reach), so
  padding the features, with zeros or anything else, cannot give ComfyUI's output.
- A mask cannot remove padding either: NextDiT hands its 30 joint layers no mask (`mask = None`), and one passed
  through `transformer_options` (`optimized_attention_override`) would still leave the image tokens' first RoPE
  coordinate at the padded caption length + 1, so padding moves every image token relative to every caption
  token.
- So a batched call equals ComfyUI's per-caption calls only when every caption in it has the same token count.
  Batches are drawn by identity (`train/data.py`), so that means one `apply_model` per distinct length (in
  practice per sample), each with its rows of the per-sample LoRA factors (`Denoiser.denoise` and the hook
  state in `lora_hooks` slicing them), and each caption's token count stored in the shards. That trades the
  batched forward for the exact length; what padding costs the trained LoRA (trained on 128-token captions,
  used in ComfyUI on unpadded ones) is unmeasured. It is not a small effect on the model's output: on the tiny
  model (random weights and `cap_pad_token`), a 15-token caption zero-padded to 128 changes the output by up to
  half its mean magnitude against the same caption at its own length.

LoRA targets: ComfyUI's generic key map names every linear `lora_unet_<path with _>`
(`comfy.lora.model_lora_keys_unet`), so the fused `qkv` is one layer of its full width (3840 -> 11520), as
LoraLoaderModelOnly loads it. A module is one block's attention (`qkv`, `out`) or feed-forward
(`w1`, `w2`, `w3`).

Which layers carry identity (`target_sets`): every one of the 30 joint layers is "single stream", so a LoRA on
it sees caption and image tokens alike (as FLUX's single blocks): there is no image-only attention to pick
in the main stack. The published SDXL HyperLoRA targets attention only, and the FLUX profile's reasoning
(PuLID, Stable Flow: identity enters at every depth) argues for all depths, so the default is the attention
of all 30 joint layers. Size: the basis holds K x rank x (in + out) numbers per layer; at K 128, rank 8
(1024 x in + out), against the published SDXL ID basis (560 layers, sum in + out 1,451,520: 1.486 B):

| set | layers | sum in + out | ID basis | x SDXL |
|---|---|---|---|---|
| `attention` (default): `layers.N.attention.qkv`, `.out` | 60 | 691,200 | 0.708 B | 0.48 |
| `attention_refiner`: the above + the 2 noise refiners' attention (image tokens only) | 64 | 737,280 | 0.755 B | 0.51 |
| `attention_mlp`: the default + `layers.N.feed_forward.w1/w2/w3` (3840 <-> 10240) | 150 | 1,958,400 | 2.005 B | 1.35 |

Left out of the default: the feed-forward (it would nearly triple the basis; SDXL's published targets are
attention only; `attention_mlp` names it for experiments). The noise refiners (2 blocks that see only the
image before the joint stack: the one place an image-only LoRA exists; `attention_refiner` adds them). The
context refiners: text only, they read the prompt, and leaving them keeps the prompt's control, as the FLUX
profile leaves FLUX's text stream. Embedders, `adaLN_modulation`, the final layer: shared by every prompt and
no identity carrier in the literature above.
"""

from __future__ import annotations

from collections.abc import Mapping

import comfy.sd1_clip
import comfy.supported_models
import comfy.text_encoders.llama
import comfy.text_encoders.z_image
import torch

from ...config import LayerSpec, ModuleSpec
from . import unet
from .profile import BaseProfile, Conditioning

UNET_CONFIG: dict = {
    "image_model": "lumina2",
    "patch_size": 2,
    "in_channels": 16,
    "dim": 3840,
    "cap_feat_dim": 2560,
    "n_layers": 30,
    "qk_norm": True,
    "n_heads": 30,
    "n_kv_heads": 30,
    "axes_dims": [32, 48, 48],
    "axes_lens": [1536, 512, 512],
    "rope_theta": 256.0,
    "ffn_dim_multiplier": 8.0 / 3.0,
    "z_image_modulation": True,
    "time_scale": 1000.0,
    "pad_tokens_multiple": 32,
}
"""ComfyUI's Z-Image-Turbo transformer settings (as `comfy.model_detection` detects them)."""

TINY_TEXT_WIDTH = 32
"""The tiny Qwen3's width: the tiny transformer's `cap_feat_dim`."""

TINY_OVERRIDES: dict = {
    "cap_feat_dim": TINY_TEXT_WIDTH,
    "dim": 256,
    "n_layers": 2,
    "n_heads": 4,
    "n_kv_heads": 4,
    "axes_dims": [16, 24, 24],
    "multiple_of": 16,
}
"""Same block kinds as Z-Image-Turbo (2 context and 2 noise refiners, joint layers with fused qkv, SwiGLU,
Z-Image modulation, caption pad tokens), width 256 (the least Z-Image's modulation allows: its timestep
embedding is 256 wide), 4 heads of 64 (rope axes 16 + 24 + 24), 2 joint layers, feed-forward 688."""

TINY_QWEN3: dict = {
    "vocab_size": 151936, "hidden_size": TINY_TEXT_WIDTH, "intermediate_size": 64, "num_hidden_layers": 3,
    "num_attention_heads": 2, "num_key_value_heads": 1, "max_position_embeddings": 512,
}
"""A 3-layer Qwen3 (grouped-query attention, q/k norms, SwiGLU; Qwen3-4B's vocabulary and head width 128) of
width 32; the features are its second-to-last layer's, as Z-Image's encoder takes them."""

CAPTION_TOKENS = 128
"""Caption length of the conditioning: longer captions are cut, shorter ones padded with zero features."""

ATTENTION = r"^lora_unet_layers_\d+_attention_(qkv|out)$"
ATTENTION_REFINER = r"^lora_unet_(layers|noise_refiner)_\d+_attention_(qkv|out)$"
ATTENTION_MLP = r"^lora_unet_layers_\d+_(attention_(qkv|out)|feed_forward_w[123])$"


class _TinyQwen3Model(comfy.sd1_clip.SDClipModel):
    """`z_image.Qwen3_4BModel` (hidden layer -2, attention masks, Qwen's pad token) with a tiny config."""

    def __init__(self, device="cpu", dtype=None, model_options={}):  # noqa: B006 - ComfyUI's signature
        super().__init__(device=device, layer="hidden", layer_idx=-2, textmodel_json_config=TINY_QWEN3, dtype=dtype,
                         special_tokens={"pad": 151643}, layer_norm_hidden_state=False,
                         model_class=comfy.text_encoders.llama.Qwen3_4B, enable_attention_masks=True,
                         return_attention_masks=True, model_options=model_options)


class _TinyZImageTEModel(comfy.sd1_clip.SD1ClipModel):
    def __init__(self, device="cpu", dtype=None, model_options={}):  # noqa: B006 - ComfyUI's signature
        super().__init__(device=device, dtype=dtype, name="qwen3_4b", clip_model=_TinyQwen3Model,
                         model_options=model_options)


class _TinyClipTarget:
    clip = _TinyZImageTEModel
    tokenizer = comfy.text_encoders.z_image.ZImageTokenizer
    params: dict = {}


def _layer(name: str, module) -> LayerSpec:
    return LayerSpec(name, module.in_features, module.out_features)


class ZImageProfile(BaseProfile):
    name = "zimage"
    display_name = "Z-Image"
    model_configs = (comfy.supported_models.ZImage,)
    kohya_version = "zimage"  # no kohya tool names Z-Image yet: the registry name
    modelspec_architecture = "z-image-turbo/lora"
    strength = 1.0
    cfg = 1.0  # Turbo is distilled: ComfyUI's template samples at CFG 1
    scheduler = "simple"  # ComfyUI's Z-Image template (flow models: simple, as FLUX)
    text_keys = ("context",)
    target_sets = {"attention": ATTENTION, "attention_refiner": ATTENTION_REFINER, "attention_mlp": ATTENTION_MLP}
    default_targets = "attention"
    tiny_resolution = 64
    latent_channels = 16
    text_encoders = ("QWEN3_4B",)
    clip_type = "LUMINA2"  # ComfyUI's Z-Image template: CLIPLoader type lumina2 (one Qwen3-4B file)

    def build(self, unet_config: dict | None = None, device=None, dtype: torch.dtype = torch.float32):
        return unet.build_unet(comfy.supported_models.ZImage, unet_config or UNET_CONFIG, device, dtype)

    def tiny_config(self, text_width: int | None = None) -> dict:
        """`text_width`: the tiny Qwen3's width, the transformer's `cap_feat_dim`."""
        return {**UNET_CONFIG, **TINY_OVERRIDES, "cap_feat_dim": text_width or TINY_TEXT_WIDTH}

    def tiny_clip(self):
        import comfy.sd

        return comfy.sd.CLIP(_TinyClipTarget(), model_options={"dtype": torch.float32})

    def context_width(self, model) -> int:
        return int(model.model_config.unet_config["cap_feat_dim"])

    def module_specs(self, model_patcher, targets=None):
        """Token order: the noise refiners, then the joint layers (attention, then feed-forward of each)."""
        patterns = self.target_patterns(targets)
        net = model_patcher.model.diffusion_model
        candidates = []
        for stack in ("noise_refiner", "layers"):
            for i, block in enumerate(getattr(net, stack)):
                attn, ff = block.attention, block.feed_forward
                candidates.append(ModuleSpec(f"lora_unet_{stack}_{i}_attention",
                                             (_layer("qkv", attn.qkv), _layer("out", attn.out))))
                candidates.append(ModuleSpec(f"lora_unet_{stack}_{i}_feed_forward",
                                             (_layer("w1", ff.w1), _layer("w2", ff.w2), _layer("w3", ff.w3))))
        return self.selected(candidates, patterns)

    def checkpoint_units(self):
        from comfy.ldm.lumina.model import JointTransformerBlock

        return (JointTransformerBlock,)

    def text_conditioning(self, clip, captions: list[str]) -> Conditioning:
        """`context [B, 128, D]`: each caption's Qwen3 features as CLIPTextEncode gives them, cut or zero-padded
        to `CAPTION_TOKENS`."""
        conds = []
        for text in captions:
            c = clip.encode_from_tokens(clip.tokenize(text))[0, :CAPTION_TOKENS].float().cpu()
            conds.append(torch.cat([c, c.new_zeros(CAPTION_TOKENS - c.shape[0], c.shape[1])]))
        return {"context": torch.stack(conds)}

    def model_inputs(self, model, cond: Mapping[str, torch.Tensor]) -> dict:  # noqa: ARG002 - all in the context
        """What `model_base.Lumina2.extra_conds` makes of an unmasked caption: the features and their count.
        The count is a per-sample tensor, not ComfyUI's int, so that every input stays batch first (the sampler
        concatenates cond and uncond by key); NextDiT requires the argument and, on this host, never reads it."""
        context = cond["context"]
        return {"c_crossattn": context,
                "num_tokens": torch.full((context.shape[0],), context.shape[1], dtype=torch.long, device=context.device)}


PROFILE = ZImageProfile()
