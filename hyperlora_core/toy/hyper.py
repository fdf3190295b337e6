"""HyperLoRA in the toy world: the core `HyperLoRA` module on the toy UNet, its conditions from
the toy ArcFace/CLIP analogues, per-sample LoRA hooks, and the held-out identity evaluation.

The hypernetwork is `hyperlora_core.model.HyperLoRA`, the same class that loads the published
SDXL checkpoints; only the module table (the toy UNet's 22 attention modules, from ComfyUI's own
UNet) and the widths differ: 176 queries, basis K = 16, rank 4, resampler width 64 / depth 4,
16 ID tokens from a 512-d face embedding, CLIP-analogue tokens 65 x 64.
"""

from __future__ import annotations

from dataclasses import dataclass

import comfy.lora
import numpy as np
import torch
from torch import nn

from ..coefficients import group_mean, normalize
from ..comfy_bridge.sdxl import attention_module_specs
from ..config import LORA_KEY_SUFFIX, PROJECTIONS, HyperLoRAConfig, IDProjectorConfig, ResamplerConfig
from ..model import HyperLoRA
from . import world
from .bridge import LATENT_SCALE, euler_sample, size_embedding
from .caption import CaptionEncoder, token_ids
from .encoders import CLIP_WIDTH, ID_EMBED_DIM, AttributeJudge, ToyArcFace, ToyCLIP
from .stages import masked_reference, to_tensor, vae_decode

FACE_PACK = "toy-world"


def toy_config(unet_patcher, basis_size: int = 16, rank: int = 4, dim: int = 64, depth: int = 4, heads: int = 4,
               id_tokens: int = 16) -> HyperLoRAConfig:
    """The toy HyperLoRA architecture for a toy UNet (module table read from ComfyUI's model)."""
    specs = tuple(attention_module_specs(unet_patcher))
    rs = ResamplerConfig(dim=dim, depth=depth, num_queries=8 * len(specs), output_dim=basis_size, ff_mult=4,
                         heads=heads, dim_head=dim // heads, input_dims=(dim, CLIP_WIDTH))
    return HyperLoRAConfig(modules=specs, basis_size=basis_size, rank=rank, resampler=rs,
                           id_projector=IDProjectorConfig(embed_dim=ID_EMBED_DIM, num_tokens=id_tokens, token_dim=dim),
                           face_pack=FACE_PACK)


def new_hyperlora(config: HyperLoRAConfig, seed: int = 0) -> HyperLoRA:
    torch.manual_seed(seed)
    hl = HyperLoRA(config)
    hl.id_basis.reset_for_training(torch.Generator().manual_seed(seed))
    return hl


@dataclass
class Conditioner:
    """The frozen encoders: photo -> (CLIP-analogue tokens of the greyed photo, 512-d ID embedding)."""

    arcface: ToyArcFace
    clip: ToyCLIP

    @torch.no_grad()
    def __call__(self, images01: torch.Tensor, batch: int = 512) -> tuple[torch.Tensor, torch.Tensor]:
        """`[N, 3, 32, 32]` in 0..1 -> (`clip_tokens [N, 65, 64]`, `id_embeds [N, 512]`)."""
        tokens, embeds = [], []
        for s in range(0, len(images01), batch):
            x = images01[s : s + batch]
            tokens.append(self.clip.penultimate(masked_reference(x)))
            embeds.append(self.arcface(x))
        return torch.cat(tokens), torch.cat(embeds)


# -- per-sample LoRA hooks ------------------------------------------------------------------------
def layer_paths(unet_patcher, config: HyperLoRAConfig) -> list[str]:
    """Module path of each LoRA'd linear in basis layer order, through ComfyUI's LoRA key map."""
    key_map = comfy.lora.model_lora_keys_unet(unet_patcher.model, {})
    names = [f"{m.name}_{LORA_KEY_SUFFIX[p]}" for m in config.modules for p in PROJECTIONS]
    return [key_map[n][: -len(".weight")] for n in names]


class LoRAHooks:
    """Adds `scale * up_b @ down_b @ x_b` to every LoRA'd linear, per sample (kohya bypass form).

    A sampler's cond/uncond doubling is handled by repeating the batch's LoRAs.
    """

    def __init__(self, unet_patcher, config: HyperLoRAConfig) -> None:
        from .bridge import release_weight_patches

        release_weight_patches()  # a LoRA ComfyUI merged into the shared weights would count twice
        self.downs: list[torch.Tensor] | None = None
        self.ups: list[torch.Tensor] | None = None
        self.scale = 0.5  # alpha / rank, as in the exported files
        model = unet_patcher.model
        self.handles = [model.get_submodule(p).register_forward_hook(self._hook(i))
                        for i, p in enumerate(layer_paths(unet_patcher, config))]

    def set(self, downs, ups, scale: float = 0.5) -> None:
        self.downs, self.ups, self.scale = downs, ups, scale

    def clear(self) -> None:
        self.downs = self.ups = None

    def remove(self) -> None:
        for h in self.handles:
            h.remove()
        self.handles = []

    def _hook(self, layer: int):
        def hook(module: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor:
            if self.downs is None:
                return output
            x = args[0]
            down, up = self.downs[layer], self.ups[layer]
            if x.shape[0] != down.shape[0]:
                reps = x.shape[0] // down.shape[0]
                down, up = down.repeat(reps, 1, 1), up.repeat(reps, 1, 1)
            flat = x.reshape(x.shape[0], -1, x.shape[-1])
            delta = torch.bmm(torch.bmm(flat, down.transpose(1, 2)), up.transpose(1, 2)) * self.scale
            return output + delta.reshape(output.shape)

        return hook


def coefficients(hl: HyperLoRA, clip_tokens: torch.Tensor, id_embeds: torch.Tensor | None,
                 groups: torch.Tensor | None = None, num_groups: int | None = None) -> torch.Tensor:
    """Per-photo tokens -> mean per identity group -> L2-normalised `[G, Q, K]` (training and eval)."""
    tokens = hl.id_tokens(clip_tokens, id_embeds)
    if groups is not None:
        tokens = group_mean(tokens, groups, num_groups)
    return normalize(tokens)


# -- held-out evaluation --------------------------------------------------------------------------
@dataclass
class HeldoutSet:
    """Held-out identities, their reference photos and conditions, and fixed sampling noise."""

    identities: np.ndarray
    attributes: torch.Tensor  # [I, 6]
    references: torch.Tensor  # [I, R, 3, 32, 32] (render 0..R-1)
    clip_tokens: torch.Tensor  # [I, R, 65, 64]
    id_embeds: torch.Tensor  # [I, R, 512]

    @classmethod
    def make(cls, conditioner: Conditioner, count: int = 64, refs: int = 4, seed: int = 0) -> HeldoutSet:
        ids = world.spread_heldout_identities(count)
        renders = world.render_set(ids, refs, seed)
        x = to_tensor(renders.images)
        tokens, embeds = conditioner(x)
        return cls(ids, torch.from_numpy(world.all_attributes()[ids]), x.view(len(ids), refs, *x.shape[1:]),
                   tokens.view(len(ids), refs, *tokens.shape[1:]), embeds.view(len(ids), refs, -1))


def empty_condition(captions: CaptionEncoder, model) -> tuple[torch.Tensor, torch.Tensor]:
    """Context and ADM of the empty caption (only the LoRA can carry identity)."""
    ctx, pooled = captions(torch.tensor([token_ids([None] * world.NUM_ATTRIBUTES)]))
    return ctx, torch.cat([pooled, size_embedding(model)], dim=1)


@torch.no_grad()
def generate_heldout(hl: HyperLoRA | None, hooks: LoRAHooks | None, unet_patcher, captions: CaptionEncoder, vae,
                     held: HeldoutSet, refs: int = 1, use_id: bool = True, seed: int = 11, steps: int = 20,
                     strength: float = 1.0, batch: int = 64) -> torch.Tensor:
    """Samples (images 0..1) of every held-out identity from the empty caption, with the LoRA that
    `hl` generates from its first `refs` photos (or without a LoRA when `hl` is None)."""
    model = unet_patcher.model
    n = len(held.identities)
    noise = torch.randn((n, 4, 16, 16), generator=torch.Generator().manual_seed(seed))
    ctx, adm = empty_condition(captions, model)
    out = []
    for s in range(0, n, batch):
        b = min(batch, n - s)
        if hl is not None:
            tok = held.clip_tokens[s : s + b, :refs].reshape(b * refs, *held.clip_tokens.shape[2:])
            emb = held.id_embeds[s : s + b, :refs].reshape(b * refs, -1) if use_id else None
            groups = torch.arange(b).repeat_interleave(refs)
            downs, ups = hl.lora_factors(coefficients(hl, tok, emb, groups, b))
            hooks.set(downs, ups, 0.5 * strength)
        try:
            lat = euler_sample(model, noise[s : s + b], ctx.expand(b, -1, -1), adm.expand(b, -1), steps=steps)
        finally:
            if hooks is not None:
                hooks.clear()
        out.append(vae_decode(vae, lat / LATENT_SCALE))
    return torch.cat(out)


def match(judge: AttributeJudge, images: torch.Tensor, attributes: torch.Tensor) -> np.ndarray:
    """`[I, 6]` boolean: does the judge see the reference identity's attribute in the sample?"""
    return (judge.predict(images) == attributes).numpy()


# -- training (the toy world's own loop; see build.py for why) --------------------------------------
@dataclass
class HyperRecipe:
    """The toy HyperLoRA recipe (defaults: the measured toyworld_v2 configuration, eps-loss only)."""

    steps_clip: int = 250
    """Stage 1: CLIP-analogue tokens only (the published CLIP-guided ID-LoRA stage)."""
    steps_id: int = 1000
    """Stage 2: ArcFace-analogue embedding + CLIP-analogue tokens."""
    batch: int = 64
    lr_basis: float = 5e-4
    lr_net: float = 2e-3
    warmup: int = 50
    t_min: int = 200
    w_distill: float = 0.0
    distill_cfg: float = 2.0
    seed: int = 7


def _lr(opt: torch.optim.Optimizer, base: list[float], step: int, warmup: int) -> None:
    f = min(1.0, (step + 1) / warmup)
    for group, lr in zip(opt.param_groups, base):
        group["lr"] = lr * f


def train_hyperlora(hl: HyperLoRA, unet_patcher, captions: CaptionEncoder, latents: torch.Tensor,
                    identity: torch.Tensor, attributes: torch.Tensor, clip_tokens: torch.Tensor,
                    id_embeds: torch.Tensor, recipe: HyperRecipe, log=print, evaluate=None, eval_every: int = 0):
    """Reference photo j1 -> LoRA -> eps-loss on render j2 != j1 of the same identity, empty caption.

    `clip_tokens`/`id_embeds` are `[2, N, ...]`: the conditions of every render and of its mirror
    image (flip augmentation of the reference). The base model is frozen; only `hl` learns.
    """
    import time

    from .stages import eps_loss

    gen = torch.Generator().manual_seed(recipe.seed)
    torch.manual_seed(recipe.seed)
    model = unet_patcher.model
    for p in model.parameters():
        p.requires_grad_(False)
    hooks = LoRAHooks(unet_patcher, hl.config)
    basis = list(hl.id_basis.parameters())
    basis_ids = {id(p) for p in basis}
    net = [p for p in hl.parameters() if id(p) not in basis_ids]
    opt = torch.optim.AdamW([{"params": basis}, {"params": net}], lr=recipe.lr_net, weight_decay=1e-4)
    ctx, adm = empty_condition(captions, model)
    ctx, adm = ctx.detach(), adm.detach()
    sizes = size_embedding(model)
    # renders of one identity are contiguous: identity -> first index, count
    per = int(torch.bincount(identity).max())
    total = recipe.steps_clip + recipe.steps_id
    t0 = time.time()
    try:
        for step in range(total):
            _lr(opt, [recipe.lr_basis, recipe.lr_net], step, recipe.warmup)
            use_id = step >= recipe.steps_clip
            target = torch.randint(len(latents), (recipe.batch,), generator=gen)
            offset = torch.randint(1, per, (recipe.batch,), generator=gen)
            ref = (target // per) * per + (target % per + offset) % per
            flip = torch.randint(2, (recipe.batch,), generator=gen)
            tok = clip_tokens[flip, ref].float()
            emb = id_embeds[flip, ref].float() if use_id else None
            downs, ups = hl.lora_factors(coefficients(hl, tok, emb))
            hooks.set(downs, ups)
            b = recipe.batch
            x0 = latents[target]
            loss = eps_loss(model, x0, ctx.expand(b, -1, -1), adm.expand(b, -1), gen, t_min=recipe.t_min)
            distill = torch.zeros(())
            if recipe.w_distill:
                distill = _distill_loss(model, hooks, captions, sizes, x0, attributes[target], ctx, adm, gen,
                                        recipe, downs, ups)
            opt.zero_grad(set_to_none=True)
            (loss + recipe.w_distill * distill).backward()
            hooks.clear()
            torch.nn.utils.clip_grad_norm_(hl.parameters(), 1.0)
            opt.step()
            if step % 50 == 0 or step == total - 1:
                log(f"hyper step {step} ({'id+clip' if use_id else 'clip'}) loss {loss.item():.4f} "
                    f"distill {distill.item():.4f} ({time.time() - t0:.0f}s)")
            at_switch = step + 1 == recipe.steps_clip and eval_every < total
            if evaluate is not None and eval_every and ((step + 1) % eval_every == 0 or at_switch):
                hl.eval()
                evaluate(hl, hooks, step + 1, use_id)
                hl.train()
    finally:
        hooks.remove()
    return hl


def _distill_loss(model, hooks: LoRAHooks, captions, sizes, x0, attrs, ctx, adm, gen, recipe, downs, ups):
    """Optional: match the frozen base prompted with the identity's TRUE caption at CFG (no LoRA)."""
    b = x0.shape[0]
    sigmas = model.model_sampling.sigmas
    t = torch.randint(recipe.t_min, len(sigmas), (b,), generator=gen)
    sigma = sigmas[t].to(x0)
    noise = torch.randn(x0.shape, generator=gen)
    x = model.model_sampling.noise_scaling(sigma, noise, x0)
    with torch.no_grad():
        hooks.clear()
        tctx, tpooled = captions(torch.tensor([token_ids(a.tolist()) for a in attrs]))
        tadm = torch.cat([tpooled, sizes.expand(b, -1)], 1)
        den = model.apply_model(torch.cat([x, x]), torch.cat([sigma, sigma]), c_crossattn=torch.cat([tctx, ctx.expand(b, -1, -1)]),
                                y=torch.cat([tadm, adm.expand(b, -1)]))
        cond, uncond = den.chunk(2)
        teacher = uncond + recipe.distill_cfg * (cond - uncond)
        hooks.set(downs, ups)
    student = model.apply_model(x, sigma, c_crossattn=ctx.expand(b, -1, -1), y=adm.expand(b, -1))
    return (((student - teacher) / sigma.view(-1, 1, 1, 1)) ** 2).mean()
