"""FLUX.1: ComfyUI's `supported_models.Flux` (dev), `FluxSchnell` and `FluxInpaint` (Fill); not `Flux2`.

Every fact of FLUX.1 the pack needs. The model is a rectified-flow transformer (`comfy.ldm.flux`):
19 double-stream blocks (image and text tokens keep their own weights and meet in one joint
attention) then 38 single-stream blocks over the concatenated tokens, hidden width 3072. It predicts
a velocity; ComfyUI's `ModelSamplingFlux` (CONST, shift 1.15 for dev, 1.0 for schnell) turns that into
the x0 estimate our trainer's loss is written in, so nothing outside this file knows it is flow matching.

Conditioning (`FluxClipModel`): T5-XXL's token features as `context` (256 tokens, 4096 wide), CLIP-L's
pooled vector as `y` (768), and dev's distilled guidance as one number per sample (`extra_conds`'
default 3.5, what FluxGuidance sets); dev runs at sampler CFG 1.

LoRA targets: ComfyUI's generic key map names every linear `lora_unet_<path with _>`, so a fused
projection (double blocks' `img_attn.qkv`, single blocks' `linear1` = q, k, v and the MLP input) is one
layer of its full width, as LoraLoaderModelOnly loads it: no slicing in our own files. A module here is
one block's image attention, text attention, image MLP, text MLP (double blocks) or one single block
(`linear1`, `linear2`); the target sets pick layers by kohya name.

Which layers carry identity (the `target_sets`, chosen from the literature and from size):
- PuLID-FLUX injects its identity features by cross-attention into the image tokens after every 2nd
  double block and every 4th single block: identity enters through the image stream, at every depth.
- Stable Flow (CVPR 2025) finds a few "vital" layers dominate FLUX's image formation, both early and
  late double blocks and scattered single blocks, so a depth-limited set risks missing them.
- SplitFlux finds early single blocks carry content and later ones style: identity is content, but a
  person's look (skin, hair) is partly style, so the single blocks are kept whole.
- Size: the basis holds K x rank x (in + out) numbers per layer. The published SDXL HyperLoRA
  (K 128, rank 8, 560 attention layers, sum of in + out 1,451,520) has an ID basis of 1.486 B; our
  default must stay within about 2x of it. At FLUX-dev size, K 128 and rank 8 (1024 x in + out):

  | set | layers | sum in + out | ID basis | x SDXL |
  |---|---|---|---|---|
  | `image_attention` (default): double `img_attn.qkv`, `img_attn.proj`; single `linear1`, `linear2` | 114 | 1,984,512 | 2.032 B | 1.37 |
  | `all_attention`: the above + double `txt_attn.qkv`, `txt_attn.proj` | 152 | 2,334,720 | 2.391 B | 1.61 |
  | `pulid_blocks`: `image_attention` on PuLID's injection depths (double 0, 2, .., 18; single 0, 4, .., 36) | 40 | 614,400 | 0.629 B | 0.42 |
  | (not a set) double `img_mlp` | 38 | 583,680 | 0.598 B | 0.40 |

  (A Base-LoRA basis at rank 4 is half the ID basis; the resampler grows by 2 x 1024 per layer in
  learned queries only.)

Left out of the default: the text stream of the double blocks (`txt_attn`, `txt_mlp`): it reads the
prompt, and PuLID leaves it alone to keep the prompt's control (editability); `all_attention` adds
its attention for experiments. The double blocks' MLPs (`img_mlp`, 0.6 B more): SDXL's published
targets are attention only and the single blocks' `linear1`/`linear2` already carry an MLP half;
a regex in `lora.targets` adds them. The single blocks cannot be split by stream: their LoRA sees
text and image tokens alike. Embedders, modulation and the final layer: not identity carriers in
any of the above, and shared by every prompt.
"""

from __future__ import annotations

from collections.abc import Mapping

import comfy.sd1_clip
import comfy.supported_models
import comfy.text_encoders.flux
import comfy.text_encoders.t5
import torch

from ...config import LayerSpec, ModuleSpec
from . import unet
from .profile import BaseProfile, Conditioning

UNET_CONFIG: dict = {
    "image_model": "flux",
    "in_channels": 16,
    "out_channels": 16,
    "vec_in_dim": 768,
    "context_in_dim": 4096,
    "hidden_size": 3072,
    "mlp_ratio": 4.0,
    "num_heads": 24,
    "depth": 19,
    "depth_single_blocks": 38,
    "axes_dim": [16, 56, 56],
    "theta": 10000,
    "patch_size": 2,
    "qkv_bias": True,
    "guidance_embed": True,
}
"""ComfyUI's FLUX.1-dev transformer settings (as `comfy.model_detection` detects them)."""

TINY_TEXT_WIDTH = 48
"""The tiny T5's width: the tiny transformer's `context_in_dim`."""
TINY_POOLED_WIDTH = 32
"""The tiny CLIP-L's width: its pooled output is `y` (`vec_in_dim`)."""

TINY_OVERRIDES: dict = {
    "vec_in_dim": TINY_POOLED_WIDTH,
    "context_in_dim": TINY_TEXT_WIDTH,
    "hidden_size": 64,
    "num_heads": 2,
    "depth": 2,
    "depth_single_blocks": 4,
    "axes_dim": [8, 12, 12],
}
"""Same block kinds as FLUX.1-dev (double then single blocks, fused qkv / linear1, guidance embedding),
width 64, 2 heads of 32 (rope axes 8 + 12 + 12), 2 double and 4 single blocks."""

TINY_T5: dict = {
    "d_ff": 64, "d_kv": 16, "d_model": TINY_TEXT_WIDTH, "dense_act_fn": "gelu_pytorch_tanh", "is_gated_act": True,
    "layer_norm_epsilon": 1e-06, "model_type": "t5", "num_heads": 3, "num_layers": 2, "vocab_size": 32128,
    "pad_token_id": 0, "eos_token_id": 1,
}
"""A 2-layer T5 encoder of width 48 with T5-XXL's vocabulary and gated-GELU feed-forward."""

T5_TOKENS = 256
"""Context length: ComfyUI's T5-XXL tokenizer pads every prompt to at least 256 tokens; longer prompts are
cut to their first 256 (batches need one length)."""

GUIDANCE = 3.5
"""FLUX.1-dev's distilled guidance (`model_base.Flux.extra_conds`' default, FluxGuidance's default)."""

IMAGE_ATTENTION = r"_double_blocks_\d+_img_attn_(qkv|proj)$|_single_blocks_\d+_linear[12]$"
ALL_ATTENTION = r"_double_blocks_\d+_(img|txt)_attn_(qkv|proj)$|_single_blocks_\d+_linear[12]$"
PULID_BLOCKS = (r"_double_blocks_([02468]|1[02468])_img_attn_(qkv|proj)$"
                r"|_single_blocks_([048]|1[26]|2[048]|3[26])_linear[12]$")


class _TinyFluxClipModel(comfy.text_encoders.flux.FluxClipModel):
    """FLUX's two text encoders at small widths: CLIP-L (pooled, not projected, as `y`) and a T5 encoder
    (last layer as `context`); `encode_token_weights` is FluxClipModel's own."""

    def __init__(self, device="cpu", dtype=None, model_options={}):  # noqa: B006 - ComfyUI's signature
        torch.nn.Module.__init__(self)
        self.clip_l = comfy.sd1_clip.SDClipModel(
            device=device, dtype=dtype, return_projected_pooled=False,
            textmodel_json_config=unet.tiny_text_config(TINY_POOLED_WIDTH, TINY_POOLED_WIDTH),
            model_options={**model_options, "model_name": "clip_l"},
        )
        self.t5xxl = comfy.sd1_clip.SDClipModel(
            device=device, dtype=dtype, textmodel_json_config=TINY_T5, special_tokens={"end": 1, "pad": 0},
            model_class=comfy.text_encoders.t5.T5, model_options={**model_options, "model_name": "t5xxl"},
        )
        self.dtypes = {dtype}


class _TinyClipTarget:
    clip = _TinyFluxClipModel
    tokenizer = comfy.text_encoders.flux.FluxTokenizer
    params: dict = {}


def _stream_modules(index: int, block) -> list[ModuleSpec]:
    """A double block's four modules: image attention, image MLP, text attention, text MLP."""
    prefix = f"lora_unet_double_blocks_{index}"
    out = []
    for stream in ("img", "txt"):
        attn, mlp = getattr(block, f"{stream}_attn"), getattr(block, f"{stream}_mlp")
        out.append(ModuleSpec(f"{prefix}_{stream}_attn", (
            LayerSpec("qkv", attn.qkv.in_features, attn.qkv.out_features),
            LayerSpec("proj", attn.proj.in_features, attn.proj.out_features))))
        out.append(ModuleSpec(f"{prefix}_{stream}_mlp", (
            LayerSpec("0", mlp[0].in_features, mlp[0].out_features),
            LayerSpec("2", mlp[2].in_features, mlp[2].out_features))))
    return out


class FluxProfile(BaseProfile):
    name = "flux"
    display_name = "FLUX.1"
    model_configs = (comfy.supported_models.Flux,)
    kohya_version = "flux1"
    modelspec_architecture = "flux-1-dev/lora"
    strength = 1.0
    cfg = 1.0
    guidance = GUIDANCE
    scheduler = "simple"  # ComfyUI's FLUX templates: euler + simple; karras crowds the steps at low noise
    text_keys = ("context", "pooled", "guidance")
    target_sets = {"image_attention": IMAGE_ATTENTION, "all_attention": ALL_ATTENTION, "pulid_blocks": PULID_BLOCKS}
    default_targets = "image_attention"
    tiny_resolution = 64
    latent_channels = 16
    text_encoders = ("CLIP_L", "T5_XXL")
    clip_type = "FLUX"
    inplace_residuals = True

    def matches(self, model_config: object) -> bool:
        """FLUX.1 and its variants; FLUX.2 subclasses ComfyUI's Flux class but is another architecture (global
        modulation, other widths, Mistral text encoder): it is refused, named by `profile_of`."""
        return super().matches(model_config) and not isinstance(model_config, comfy.supported_models.Flux2)

    def build(self, unet_config: dict | None = None, device=None, dtype: torch.dtype = torch.float32):
        return unet.build_unet(comfy.supported_models.Flux, unet_config or UNET_CONFIG, device, dtype)

    def tiny_config(self, text_width: int | None = None) -> dict:
        """`text_width`: the tiny T5's width, the transformer's `context_in_dim`."""
        return {**UNET_CONFIG, **TINY_OVERRIDES, "context_in_dim": text_width or TINY_TEXT_WIDTH}

    def tiny_clip(self):
        import comfy.sd

        return comfy.sd.CLIP(_TinyClipTarget(), model_options={"dtype": torch.float32})

    def context_width(self, model) -> int:
        return int(model.model_config.unet_config["context_in_dim"])

    def module_specs(self, model_patcher, targets=None):
        """Double blocks in order (image attention, image MLP, text attention, text MLP), then single blocks."""
        patterns = self.target_patterns(targets)
        net = model_patcher.model.diffusion_model
        candidates = [spec for i, block in enumerate(net.double_blocks) for spec in _stream_modules(i, block)]
        candidates += [ModuleSpec(f"lora_unet_single_blocks_{i}", (
            LayerSpec("linear1", block.linear1.in_features, block.linear1.out_features),
            LayerSpec("linear2", block.linear2.in_features, block.linear2.out_features),
        )) for i, block in enumerate(net.single_blocks)]
        return self.selected(candidates, patterns)

    def checkpoint_units(self):
        from comfy.ldm.flux.layers import DoubleStreamBlock, SingleStreamBlock

        return (DoubleStreamBlock, SingleStreamBlock)

    def text_conditioning(self, clip, captions: list[str]) -> Conditioning:
        """`context [B, 256, D]` (T5), `pooled [B, P]` (CLIP-L) and `guidance [B, 1]`, as CLIPTextEncode and
        FluxGuidance make them (guidance kept as a 1-vector per sample: shards store arrays, not scalars)."""
        conds, pooled = [], []
        for text in captions:
            c, p = clip.encode_from_tokens(clip.tokenize(text), return_pooled=True)
            conds.append(c[:, :T5_TOKENS].float().cpu())
            pooled.append(p.float().cpu())
        return {"context": torch.cat(conds), "pooled": torch.cat(pooled),
                "guidance": torch.full((len(captions), 1), self.guidance)}

    def model_inputs(self, model, cond: Mapping[str, torch.Tensor]) -> dict:  # noqa: ARG002 - y is the pooled vector
        context = cond["context"]
        guidance = cond.get("guidance")
        if guidance is None:
            guidance = torch.full((context.shape[0],), self.guidance, device=context.device)
        return {"c_crossattn": context, "y": cond["pooled"], "guidance": guidance.reshape(context.shape[0])}


PROFILE = FluxProfile()
