"""`finetune`: refine a generated kohya LoRA on one person's photos for a few steps.

The authors suggest ~50 steps from a HyperLoRA LoRA (face crops, lr 1e-4, batch 4, UNet only).
Here the LoRA's own factors are trained in place through the same per-sample hooks as fit
(bypass form, scale alpha/rank from the file), and the result keeps the input's key names,
alphas, dtype and metadata, so it loads wherever the input loaded.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..comfy_bridge.diffusion import Denoiser
from ..comfy_bridge.lora_hooks import LoRAHookState, LoRASet, attach_lora_hooks, deactivate, lora_layer_paths
from ..config import TRIGGER_WORDS
from ..errors import HyperLoRAError
from ..lora import lora_modules
from ..safetensors_io import load_tensors, read_metadata, save_tensors_atomic
from .config import FitConfig
from .data import step_generator
from .objective import autocast_for, loss_weights
from .shards import INDEX_FILE, ShardDataset

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp"}
DEFAULT_CAPTION = "a photo of a person"
EVAL_DRAWS = 4
"""Fixed (noise, timestep) draws per photo for the before/after loss (same draws both times)."""


def _center_square(img: Image.Image, size: int) -> tuple[np.ndarray, list[float]]:
    w, h = img.size
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    crop = img.crop((left, top, left + side, top + side)).resize((size, size), Image.BICUBIC)
    return np.asarray(crop, dtype=np.float32) / 255.0, [float(h), float(w), float(top), float(left), float(size), float(size)]


def load_photos(folder: Path, backbone, resolution: int, caption: str | None) -> dict[str, torch.Tensor]:
    """A folder of photos -> latents and the base's conditioning (captions and crop geometry; centre square crops)."""
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise HyperLoRAError(f"{folder}: no photos ({', '.join(sorted(IMAGE_SUFFIXES))}) found.")
    images, geometry, captions = [], [], []
    for f in files:
        try:
            img = Image.open(f).convert("RGB")
        except OSError as exc:
            raise HyperLoRAError(f"{f}: cannot be read as an image ({exc}).") from None
        arr, size = _center_square(img, resolution)
        images.append(arr)
        geometry.append(backbone.profile.image_conditioning(size[:2], size[2:4], size[4:]))
        side = f.with_suffix(".txt")
        text = side.read_text(encoding="utf-8").strip() if side.is_file() else (caption or DEFAULT_CAPTION)
        captions.append(text if text.startswith(TRIGGER_WORDS.strip()) else TRIGGER_WORDS + text)
    latents = backbone.encode_images(torch.from_numpy(np.stack(images)))
    cond = backbone.encode_text(captions)
    cond.update({k: torch.stack([g[k] for g in geometry]) for k in geometry[0]})
    return {"latents": latents, "cond": cond}


def load_prepared(folder: Path) -> dict[str, torch.Tensor]:
    ds = ShardDataset(folder)
    try:
        items = [ds.load(i, with_base=False) for i in range(len(ds.samples))]
    finally:
        ds.close()
    return {
        "latents": torch.stack([x["latent"] for x in items]),
        "cond": {k: torch.stack([x["cond"][k] for x in items]) for k in items[0]["cond"]},
    }


class LoRAFactors(torch.nn.Module):
    """The LoRA's down/up matrices as trainable parameters, in file order."""

    def __init__(self, lora: dict[str, torch.Tensor]) -> None:
        super().__init__()
        modules = lora_modules(lora)
        self.names = list(modules)
        self.downs = torch.nn.ParameterList([torch.nn.Parameter(d.float().clone()) for d, _, _ in modules.values()])
        self.ups = torch.nn.ParameterList([torch.nn.Parameter(u.float().clone()) for _, u, _ in modules.values()])
        self.scales = [a / d.shape[0] for d, _, a in modules.values()]

    def sets(self, batch: int, device: torch.device) -> list[LoRASet]:
        """One `LoRASet` per distinct alpha/rank (usually one), each layer's factors shared by the batch."""
        out = []
        for scale in sorted(set(self.scales)):
            downs, ups = [], []
            for d, u, s in zip(self.downs, self.ups, self.scales):
                on = s == scale
                downs.append(d.unsqueeze(0).expand(batch, -1, -1) if on else torch.zeros(batch, 1, d.shape[1], device=device))
                ups.append(u.unsqueeze(0).expand(batch, -1, -1) if on else torch.zeros(batch, u.shape[0], 1, device=device))
            out.append(LoRASet(downs, ups, torch.full((batch,), scale, device=device)))
        return out


def _loss(den: Denoiser, state: LoRAHookState, factors: LoRAFactors, data: dict, idx: torch.Tensor,
          noise: torch.Tensor, t: torch.Tensor, cfg: FitConfig, device: torch.device) -> torch.Tensor:
    x0 = den.latent_in(data["latents"][idx].to(device))
    sigma = den.sigmas.to(device)[t.to(device)]
    x = den.noisy(sigma, noise.to(device), x0)
    inputs = den.inputs({k: v[idx].to(device) for k, v in data["cond"].items()})
    state.sets = factors.sets(len(idx), device)
    with autocast_for(device, cfg.train.precision):
        pred = den.denoise(x, sigma, inputs).float()
    err = (pred - x0.float()).pow(2).mean(dim=(1, 2, 3))
    return (loss_weights(sigma, cfg.train.loss) * err).mean()


def finetune(
    cfg: FitConfig,
    lora_path: str | Path,
    photos: str | Path,
    out: str | Path,
    steps: int = 50,
    lr: float = 1e-4,
    batch: int = 4,
    caption: str | None = None,
    resolution: int | None = None,
    seed: int = 0,
    backbone=None,
) -> dict:
    """Train the LoRA's factors for `steps` AdamW steps; write it with the input's names and alphas."""
    from ..comfy_bridge.backbone import PARTS, backbone_kind
    from .fit import build_backbone

    if steps < 1 or batch < 1:
        raise HyperLoRAError(f"finetune: --steps and --batch must be >= 1; got {steps} and {batch}.")
    if not (math.isfinite(lr) and lr > 0):
        raise HyperLoRAError(f"finetune: --lr must be a finite number > 0; got {lr}.")
    lora_path, photos, out = Path(lora_path), Path(photos), Path(out)
    lora = load_tensors(lora_path)
    meta = read_metadata(lora_path)
    factors = LoRAFactors(lora)
    prepared = photos.is_dir() and (photos / INDEX_FILE).is_file()
    backbone = backbone or build_backbone(cfg, ("diffusion_model",) if prepared else PARTS)
    unet = backbone.unet
    paths = lora_layer_paths(unet, factors.names)
    if prepared:
        data = load_prepared(photos)
    elif photos.is_dir():
        data = load_photos(photos, backbone, resolution or backbone_kind(cfg.model.backbone).resolution, caption)
    else:
        raise HyperLoRAError(f"{photos}: not a folder of photos or a prepared dataset.")
    device = torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    state = attach_lora_hooks(unet, paths, device, cfg.train.gradient_checkpointing)
    unet.model.requires_grad_(False)
    factors.to(device)
    den = Denoiser(unet)
    n = data["latents"].shape[0]
    lo, hi = cfg.train.loss.t_min, cfg.train.loss.t_max

    def evaluate() -> float:
        gen = step_generator(seed, "finetune", 0, "eval")
        total = 0.0
        with torch.no_grad():
            for _ in range(EVAL_DRAWS):
                idx = torch.arange(n)
                noise = torch.randn(data["latents"].shape, generator=gen)
                t = torch.randint(lo, hi, (n,), generator=gen)
                total += _loss(den, state, factors, data, idx, noise, t, cfg, device).item()
        state.clear()
        return total / EVAL_DRAWS

    try:
        before = evaluate()
        opt = torch.optim.AdamW(factors.parameters(), lr=lr, weight_decay=0.0)
        b = min(batch, n)
        losses = []
        for step in range(steps):
            gen = step_generator(seed, "finetune", step, "batch")
            idx = torch.randperm(n, generator=gen)[:b]
            noise = torch.randn((b, *data["latents"].shape[1:]), generator=gen)
            t = torch.randint(lo, hi, (b,), generator=gen)
            loss = _loss(den, state, factors, data, idx, noise, t, cfg, device)
            if not math.isfinite(loss.item()):
                raise HyperLoRAError(f"finetune: the loss became {loss.item()} at step {step + 1}; lower --lr.")
            loss.backward()
            state.clear()
            opt.step()
            opt.zero_grad(set_to_none=True)
            losses.append(loss.item())
        after = evaluate()
    finally:
        state.clear()
        deactivate(unet)
    result = dict(lora)
    for name, d, u in zip(factors.names, factors.downs, factors.ups):
        result[f"{name}.lora_down.weight"] = d.detach().cpu().to(lora[f"{name}.lora_down.weight"].dtype).contiguous()
        result[f"{name}.lora_up.weight"] = u.detach().cpu().to(lora[f"{name}.lora_up.weight"].dtype).contiguous()
    note = {"steps": steps, "lr": lr, "photos": n, "source": lora_path.name, "loss_before": before, "loss_after": after}
    save_tensors_atomic(result, out, {**meta, "hyperlora.finetune": json.dumps(note)})
    return {"first_loss": losses[0], "last_loss": losses[-1], "loss_before": before, "loss_after": after, "path": str(out)}
