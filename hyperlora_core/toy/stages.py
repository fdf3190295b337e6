"""Training the toy world's frozen parts: judge, ArcFace and CLIP analogues, VAE, base UNet.

Each stage is a plain function `train_x(data, steps, ..., log) -> module` so the build script,
the smoke test and a notebook call the same code. They differ only in their loss: all run through
`train_loop` (AdamW, the trainer's warm-up + cosine schedule with a floor, optional clipping).
Only training identities are used; the held-out identities (`world.heldout_identities()`)
appear in evaluation only. Stages are seeded. The HyperLoRA itself is trained by
`python -m hyperlora_core.train` (see `build.py`), not here.

Every stage trains on `device` (a GPU when the build is given one). Data and every random draw stay
on the CPU, drawn from the stage's CPU generator, and only the batch moves to the device, so a CPU
build is bit-identical to one that never heard of devices, and a GPU build draws the same batches.
Each stage hands its module back on the CPU (what the files, reports and other stages expect).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..comfy_bridge.diffusion import Denoiser, euler_sample
from ..comfy_bridge.lora_hooks import out_of_place_residuals
from ..train.schedule import lr_lambda
from . import world
from .caption import CaptionEncoder, token_ids
from .encoders import AttributeJudge, CaptionTower, ToyArcFace, ToyCLIP, to_tensor
from .models import LATENT_SCALE, UNET, ToyBase, new_vae_model

Log = Callable[[str], None]
Device = torch.device | str


def device_name(device: Device) -> str:
    """Where a stage trained, for the model card: "cpu" or the GPU's name."""
    device = torch.device(device)
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return device.type


def module_device(module: torch.nn.Module) -> torch.device:
    return next(module.parameters()).device


@dataclass
class Data:
    """Renders of the training identities (12 per identity) and the held-out identities."""

    train: world.Renders
    heldout: world.Renders

    @classmethod
    def make(cls, renders_per_identity: int = 12, seed: int = 0, identities_limit: int | None = None) -> Data:
        train_ids, held_ids = world.train_identities(), world.heldout_identities()
        if identities_limit:
            train_ids, held_ids = train_ids[:identities_limit], held_ids[: max(8, identities_limit // 4)]
        return cls(world.render_set(train_ids, renders_per_identity, seed),
                   world.render_set(held_ids, renders_per_identity, seed))


LR_FLOOR = 0.1
"""The cosine after the warm-up ends at this fraction of the learning rate."""


def train_loop(name: str, params: list, steps: int, lr: float, loss: Callable[[int], tuple[torch.Tensor, str]],
               log: Log, warmup: int = 50, weight_decay: float = 1e-4, grad_clip: float | None = None,
               after_step: Callable[[int], None] | None = None, log_every: int = 200) -> None:
    """The one loop of every toy stage: `loss(step)` -> (loss, extra log text), AdamW, the shared schedule."""
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda("cosine", warmup, steps, floor=LR_FLOOR))
    t0 = time.time()
    for step in range(steps):
        value, extra = loss(step)
        opt.zero_grad(set_to_none=True)
        value.backward()
        if grad_clip:
            torch.nn.utils.clip_grad_norm_(params, grad_clip)
        opt.step()
        schedule.step()
        if after_step is not None:
            after_step(step)
        if step % log_every == 0 or step == steps - 1:
            log(f"{name} step {step} loss {value.item():.4f}{extra} ({time.time() - t0:.0f}s)")


def _augment(x: torch.Tensor, gen: torch.Generator, noise: float = 0.06, blur_p: float = 0.3) -> torch.Tensor:
    """Pixel noise, occasional blur and brightness jitter: robustness to generated-image artefacts."""
    b = x.shape[0]
    x = x * (1 + 0.1 * (torch.rand(b, 1, 1, 1, generator=gen) - 0.5))
    blur = torch.rand(b, generator=gen) < blur_p
    if blur.any():
        x[blur] = F.avg_pool2d(F.pad(x[blur], (1, 1, 1, 1), mode="replicate"), 3, 1)
    x = x + noise * torch.rand(b, 1, 1, 1, generator=gen) * torch.randn(x.shape, generator=gen)
    return x.clamp(0, 1)


def _flip(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    flip = torch.rand(x.shape[0], generator=gen) < 0.5
    x = x.clone()
    x[flip] = x[flip].flip(-1)
    return x


# -- judge --------------------------------------------------------------------------------------
def train_judge(data: Data, steps: int, batch: int = 128, lr: float = 2e-3, seed: int = 1, log: Log = print,
                judge: AttributeJudge | None = None, labels: np.ndarray | None = None,
                name: str = "judge", device: Device = "cpu") -> AttributeJudge:
    """Supervised judge: identity attributes by default; `judge` + `labels` train another head set
    (the base judge) on the same renders with the same augmentations."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    judge = (judge or AttributeJudge()).to(device).train()
    images = to_tensor(data.train.images)
    attrs = torch.from_numpy(data.train.attributes if labels is None else labels)

    def loss(step: int) -> tuple[torch.Tensor, str]:  # noqa: ARG001
        idx = torch.randint(len(images), (batch,), generator=gen)
        x = _augment(_flip(images[idx], gen), gen).to(device)
        target = attrs[idx].to(device)
        return sum(F.cross_entropy(lg, target[:, a]) for a, lg in enumerate(judge(x))), ""

    train_loop(name, list(judge.parameters()), steps, lr, loss, log)
    return judge.cpu().eval()


def judge_accuracy(judge: AttributeJudge, renders: world.Renders) -> np.ndarray:
    """Per-attribute accuracy of the judge on clean renders."""
    pred = judge.predict(to_tensor(renders.images)).numpy()
    return (pred == renders.attributes).mean(0)


# -- ArcFace analogue -----------------------------------------------------------------------------
def _pairs(renders: world.Renders, identities: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices of two different renders for `identities` random identities."""
    per = int(renders.render_index.max()) + 1
    n_id = len(renders) // per
    identities = min(identities, n_id)
    ids = torch.randperm(n_id, generator=gen)[:identities]
    a = torch.randint(per, (identities,), generator=gen)
    b = (a + torch.randint(1, per, (identities,), generator=gen)) % per
    return ids * per + a, ids * per + b


def train_arcface(data: Data, steps: int, identities: int = 96, lr: float = 2e-3, temperature: float = 0.1,
                  seed: int = 2, log: Log = print, device: Device = "cpu") -> ToyArcFace:
    """Contrastive (NT-Xent) training: two renders of one identity (different backgrounds,
    clothes, pose) are positives, every other identity in the batch a negative."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    net = ToyArcFace().to(device).train()
    images = to_tensor(data.train.images)

    def loss(step: int) -> tuple[torch.Tensor, str]:  # noqa: ARG001
        ia, ib = _pairs(data.train, identities, gen)
        z = net(_augment(_flip(images[torch.cat([ia, ib])], gen), gen).to(device))
        sim = z @ z.T / temperature
        sim.fill_diagonal_(-1e4)
        n = len(ia)
        return F.cross_entropy(sim, torch.cat([torch.arange(n, 2 * n), torch.arange(n)]).to(device)), ""

    train_loop("arcface", list(net.parameters()), steps, lr, loss, log)
    return net.cpu().eval()


@torch.no_grad()
def arcface_report(net: ToyArcFace, renders: world.Renders) -> dict[str, float]:
    """Same/different-identity cosine and 1-NN identification (render 1 vs gallery of render 0)."""
    per = int(renders.render_index.max()) + 1
    z = torch.cat([net(to_tensor(renders.images[s : s + 512])) for s in range(0, len(renders), 512)])
    z = z.view(-1, per, z.shape[-1])
    same = (z[:, 0] * z[:, 1]).sum(-1).mean().item()
    cross = z[:, 0] @ z[:, 1].T
    n = cross.shape[0]
    diff = (cross.sum() - cross.diag().sum()).item() / (n * (n - 1))
    top1 = (cross.argmax(0) == torch.arange(n)).float().mean().item()
    return {"cos_same": same, "cos_diff": diff, "top1": top1}


# -- CLIP analogue ------------------------------------------------------------------------------
CLIP_LABEL_SIZES = (*world.ATTRIBUTE_SIZES, *world.BASE_FACTOR_SIZES, 5, 5)
"""Caption factors ToyCLIP is trained against: 6 identity attributes, background colour, pattern,
clothing colour, horizontal and vertical shift."""


def clip_labels(renders: world.Renders) -> torch.Tensor:
    shift = renders.base[:, 5:7] + world.MAX_SHIFT
    return torch.from_numpy(np.column_stack([renders.attributes, renders.base_factors, shift]))


def train_clip(data: Data, steps: int, batch: int = 128, lr: float = 2e-3, seed: int = 3, log: Log = print,
               device: Device = "cpu") -> ToyCLIP:
    """CLIP-style symmetric InfoNCE between images and their full factor captions."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    net, text = ToyCLIP().to(device).train(), CaptionTower(CLIP_LABEL_SIZES).to(device).train()
    logit_scale = torch.nn.Parameter(torch.tensor(math.log(1 / 0.07), device=device))
    images, labels = to_tensor(data.train.images), clip_labels(data.train)

    def loss(step: int) -> tuple[torch.Tensor, str]:  # noqa: ARG001
        idx = torch.randint(len(images), (batch,), generator=gen)
        zi = net.image_embeds(_augment(images[idx], gen, noise=0.03, blur_p=0.1).to(device))
        zt = text(labels[idx].to(device))
        logits = logit_scale.exp().clamp(max=100) * zi @ zt.T
        target = torch.arange(batch, device=logits.device)
        return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)), ""

    train_loop("clip", [*net.parameters(), *text.parameters(), logit_scale], steps, lr, loss, log)
    return net.cpu().eval()


# -- VAE ----------------------------------------------------------------------------------------
def train_vae(data: Data, steps: int, batch: int = 32, lr: float = 1e-3, kl_weight: float = 1e-6, seed: int = 4,
              log: Log = print, device: Device = "cpu"):
    """ComfyUI AutoencoderKL trained with L1 + MSE + KL; returns the model with the latent scale folded.

    The KL weight is SD's VAE value (1e-6 on the summed KL): at 1e-4 the decoder learnt to smooth
    away spiky hair and eye colour (judge on reconstructions 0.45 / 0.65 for those two)."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    vae = new_vae_model().to(device).train()
    images = to_tensor(data.train.images) * 2 - 1

    def loss(step: int) -> tuple[torch.Tensor, str]:  # noqa: ARG001
        x = _flip(images[torch.randint(len(images), (batch,), generator=gen)], gen).to(device)
        moments = vae.quant_conv(vae.encoder(x))
        mean, logvar = moments.chunk(2, dim=1)
        logvar = logvar.clamp(-30, 20)
        z = mean + torch.exp(0.5 * logvar) * torch.randn(mean.shape, generator=gen).to(device)
        rec = vae.decoder(vae.post_quant_conv(z))
        kl = 0.5 * (mean.pow(2) + logvar.exp() - 1 - logvar).sum(dim=(1, 2, 3)).mean()
        return (rec - x).abs().mean() + (rec - x).pow(2).mean() + kl_weight * kl, f" kl {kl.item():.1f}"

    train_loop("vae", list(vae.parameters()), steps, lr, loss, log, weight_decay=0.0, grad_clip=1.0)
    vae.cpu().eval()
    fold_latent_scale(vae, images[:2048])
    return vae


@torch.no_grad()
def fold_latent_scale(vae, images: torch.Tensor) -> float:
    """Rescale so that raw latents x LATENT_SCALE have unit std (SDXL's latent_format applies)."""
    mean = torch.cat([vae.quant_conv(vae.encoder(images[s : s + 256])).chunk(2, 1)[0] for s in range(0, len(images), 256)])
    f = (1.0 / LATENT_SCALE) / mean.std().item()
    c = mean.shape[1]
    vae.quant_conv.weight[:c] *= f
    vae.quant_conv.bias[:c] *= f
    vae.quant_conv.bias[c:] += 2 * math.log(f)  # keep the posterior's relative width
    vae.post_quant_conv.weight /= f
    return f


@torch.no_grad()
def vae_encode(vae, images01: torch.Tensor) -> torch.Tensor:
    """Images `[N, 3, 32, 32]` 0..1 -> raw latents (posterior mode), as `comfy.sd.VAE.encode` gives,
    on the CPU whatever device the VAE is on."""
    out = []
    dev = module_device(vae)
    for s in range(0, len(images01), 256):
        out.append(vae.quant_conv(vae.encoder(images01[s : s + 256].to(dev) * 2 - 1)).chunk(2, 1)[0].cpu())
    return torch.cat(out)


@torch.no_grad()
def vae_decode(vae, latents: torch.Tensor) -> torch.Tensor:
    """Raw latents -> images 0..1, on the CPU whatever device the VAE is on."""
    dev = module_device(vae)
    out = [vae.decoder(vae.post_quant_conv(latents[s : s + 256].to(dev))).cpu() for s in range(0, len(latents), 256)]
    return ((torch.cat(out) + 1) / 2).clamp(0, 1)


# -- base model (UNet or DiT) + caption encoder -----------------------------------------------------
@dataclass
class BaseModel:
    unet: object  # ComfyUI ModelPatcher (EMA weights) of `base`'s model
    captions: CaptionEncoder
    base: ToyBase = UNET


def random_caption_ids(attrs: torch.Tensor, gen: torch.Generator, drop: float = 0.3, empty: float = 0.2) -> torch.Tensor:
    """Token ids for a batch of factor labels `[B, 9]` (identity attributes, then background colour,
    pattern, clothing): each factor said with p = 1 - drop, the whole caption empty with p = empty."""
    keep = torch.rand(attrs.shape, generator=gen) >= drop
    keep &= (torch.rand(attrs.shape[0], 1, generator=gen) >= empty)
    return torch.tensor([token_ids([int(v) if k else None for v, k in zip(a, kk)]) for a, kk in zip(attrs, keep)])


def eps_loss(den: Denoiser, x0: torch.Tensor, inputs: dict, gen: torch.Generator) -> torch.Tensor:
    """The diffusion loss through ComfyUI's own model at uniform timesteps of its own schedule (`Denoiser.sigmas`),
    in the output's own parametrisation: `(x - x0_hat) / sigma` against the noise for an eps model (SDXL), against
    the velocity noise - x0 for a flow model (FLUX: the flow-matching loss). Both are the x0 error weighted by
    1 / sigma^2, the trainer's `eps` objective."""
    sigmas = den.sigmas
    t = torch.randint(0, len(sigmas), (x0.shape[0],), generator=gen)
    sigma = sigmas[t.to(sigmas.device)].to(x0)
    noise = torch.randn(x0.shape, generator=gen).to(x0.device)
    x = den.noisy(sigma, noise, x0)
    s = sigma.view(-1, 1, 1, 1)
    out = (x - den.denoise(x, sigma, inputs)) / s
    target = noise if den.profile.prediction(den.patcher) == "EPS" else (x - x0) / s
    return F.mse_loss(out, target)


def train_base(latents: torch.Tensor, attrs: torch.Tensor, steps: int, batch: int = 64, lr: float = 1e-3,
               ema_decay: float = 0.999, seed: int = 5, log: Log = print, eval_every: int = 0,
               evaluate: Callable[[BaseModel, int], None] | None = None, device: Device = "cpu",
               base: ToyBase = UNET) -> BaseModel:
    """A toy base model (`base`: the tiny SDXL UNet or the tiny FLUX DiT) + its caption encoder on scaled latents
    `[N, 4, 16, 16]` (already x LATENT_SCALE); `attrs [N, 9]`: each render's identity attributes and named base
    factors (its full caption). The captions reach the model as the base's profile's conditioning
    (`ToyBase.conditioning` -> `Denoiser.inputs`). `evaluate` gets the EMA model on `device`; the result is on
    the CPU."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    patcher = base.new_model()
    out_of_place_residuals(patcher)  # FLUX's blocks add residuals in place: trained whole, they must not
    captions = CaptionEncoder()
    ema_unet, ema_captions = base.new_model(), CaptionEncoder()
    for module in (patcher.model, captions, ema_unet.model, ema_captions):
        module.to(device)
    den = Denoiser(patcher)
    params = [*patcher.model.diffusion_model.parameters(), *captions.parameters()]
    ema_params = [*ema_unet.model.diffusion_model.parameters(), *ema_captions.parameters()]
    with torch.no_grad():
        for e, p in zip(ema_params, params):
            e.copy_(p)
    for p in params:
        p.requires_grad_(True)
    patcher.model.train()

    def loss(step: int) -> tuple[torch.Tensor, str]:  # noqa: ARG001
        idx = torch.randint(len(latents), (batch,), generator=gen)
        context, pooled = captions(random_caption_ids(attrs[idx], gen).to(device))
        return eps_loss(den, latents[idx].to(device), den.inputs(base.conditioning(context, pooled)), gen), ""

    def after_step(step: int) -> None:
        decay = min(ema_decay, (1 + step) / (10 + step))
        with torch.no_grad():
            for e, p in zip(ema_params, params):
                e.lerp_(p, 1 - decay)
        if evaluate is not None and eval_every and (step + 1) % eval_every == 0:
            evaluate(BaseModel(ema_unet, ema_captions.eval(), base), step + 1)

    train_loop(f"{base.prefix}base", params, steps, lr, loss, log, warmup=200, grad_clip=1.0, after_step=after_step,
               log_every=100)
    for p in ema_params:
        p.requires_grad_(False)
    ema_unet.model.cpu()
    return BaseModel(ema_unet, ema_captions.cpu().eval(), base)


@torch.no_grad()
def vae_report(vae, judge: AttributeJudge, renders: world.Renders, count: int = 512) -> tuple[float, list[float]]:
    """PSNR of reconstructions and the judge's per-attribute accuracy on them (held-out renders)."""
    x = to_tensor(renders.images[:count])
    rec = vae_decode(vae, vae_encode(vae, x))
    psnr = float(10 * torch.log10(1.0 / (rec - x).pow(2).mean()))
    acc = (judge.predict(rec).numpy() == renders.attributes[:count]).mean(0)
    return psnr, [round(float(a), 3) for a in acc]


@torch.no_grad()
def base_fidelity(model: BaseModel, vae, judge: AttributeJudge, count: int = 64, cfg: float = 2.0, seed: int = 0,
                  steps: int = 20, base_judge: AttributeJudge | None = None) -> np.ndarray:
    """Per-factor judge accuracy of samples prompted with random full captions (text fidelity):
    the six identity attributes, and with `base_judge` also background colour, pattern, clothing."""
    gen = torch.Generator().manual_seed(seed)
    sizes = world.ATTRIBUTE_SIZES + (world.BASE_FACTOR_SIZES if base_judge is not None else ())
    attrs = torch.stack([torch.randint(n, (count,), generator=gen) for n in sizes], dim=1)
    ids = [token_ids(a.tolist()) for a in attrs]
    images = sample_captions(model, vae, ids, seed=seed, cfg=cfg, steps=steps)
    acc = (judge.predict(images) == attrs[:, : world.NUM_ATTRIBUTES]).float().mean(0).numpy()
    if base_judge is None:
        return acc
    base_acc = (base_judge.predict(images) == attrs[:, world.NUM_ATTRIBUTES :]).float().mean(0).numpy()
    return np.concatenate([acc, base_acc])


@torch.no_grad()
def sample_captions(model: BaseModel, vae, ids: list[list[int]], seed: int = 0, cfg: float = 1.0, steps: int = 20,
                    batch: int = 64) -> torch.Tensor:
    """Images 0..1 `[N, 3, 32, 32]` for caption token ids (the bridge's batched Euler with the base's scheduler,
    fixed noise per seed)."""
    den = Denoiser(model.unet)
    dev = module_device(model.captions)
    gen = torch.Generator().manual_seed(seed)
    noise = torch.randn((len(ids), 4, 16, 16), generator=gen).to(dev)
    empty = model.captions(torch.tensor([token_ids([None] * world.NUM_ATTRIBUTES)], device=dev))
    out = []
    for s in range(0, len(ids), batch):
        ctx, pooled = model.captions(torch.tensor(ids[s : s + batch], device=dev))
        b = ctx.shape[0]
        uncond = model.base.conditioning(empty[0].expand(b, -1, -1), empty[1].expand(b, -1))
        lat = euler_sample(den, noise[s : s + b], den.inputs(model.base.conditioning(ctx, pooled)), den.inputs(uncond),
                           steps=steps, cfg=cfg)
        out.append(vae_decode(vae, den.latent_out(lat)))
    return torch.cat(out)
