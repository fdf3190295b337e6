"""The toy world's identity-transfer check through ComfyUI's own path (what a user's graph does).

For held-out identities (never seen in any training stage) it loads the shipped files with the
toy loaders, generates one ID-LoRA per identity with `HyperLoRA.generate_id_lora` (1 and 4
reference photos), applies it with `comfy_bridge.apply_lora` (ComfyUI weight patches, the LoRA
file's alpha), samples with `comfy.sample.sample` (KSampler: euler / karras, empty caption,
CFG 1, the same noise with and without the LoRA), decodes with the toy `comfy.sd.VAE` and asks
the independent attribute judge whether the sample shows the reference's attributes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..comfy_bridge import apply_lora
from ..model import HyperLoRA
from . import files, world
from .bridge import comfy_sample, conditioning, toy_noise, wrap_caption_encoder, wrap_unet, wrap_vae
from .encoders import AttributeJudge, ToyArcFace, ToyCLIP
from .hyper import Conditioner, HeldoutSet


@dataclass
class ToyWorld:
    """Every toy part, loaded the way ComfyUI's loaders hand them out."""

    unet: object  # ModelPatcher
    clip: object  # comfy.sd.CLIP (the caption encoder)
    vae: object  # comfy.sd.VAE
    hyperlora: HyperLoRA
    conditioner: Conditioner
    judge: AttributeJudge

    @classmethod
    def load(cls, folder: str | os.PathLike | None = None, hyperlora: str | os.PathLike | None = None) -> ToyWorld:
        """The world in `folder` (default models/toy) with its HyperLoRA, or the one at `hyperlora`."""
        return cls(
            unet=wrap_unet(files.load_part("unet", folder)),
            clip=wrap_caption_encoder(files.load_part("caption_encoder", folder)),
            vae=wrap_vae(files.load_part("vae", folder)),
            hyperlora=HyperLoRA.from_pretrained(hyperlora or files.part_path("hyperlora", folder)).eval(),
            conditioner=Conditioner(files.load_module(ToyArcFace(), "arcface", folder),
                                    files.load_module(ToyCLIP(), "clip_vision", folder)),
            judge=files.load_module(AttributeJudge(), "judge", folder),
        )

    def encode_text(self, text: str) -> list:
        cond, pooled = self.clip.encode_from_tokens(self.clip.tokenize(text), return_pooled=True)
        return conditioning(cond, pooled)

    @torch.no_grad()
    def generate(self, lora: dict | None, noise: torch.Tensor, prompt: str = "", strength: float = 1.0,
                 seed: int = 0, steps: int = 20, cfg: float = 1.0) -> torch.Tensor:
        """Images `[B, 32, 32, 3]` 0..1 (ComfyUI IMAGE layout) from KSampler + VAEDecode."""
        model = apply_lora(self.unet, lora, strength) if lora is not None else self.unet
        positive, negative = self.encode_text(prompt), self.encode_text("")
        latent = comfy_sample(model, positive, negative, noise, seed=seed, steps=steps, cfg=cfg)
        return self.vae.decode(latent).float().clamp(0, 1)

    def lora_for(self, clip_tokens: torch.Tensor, id_embeds: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.hyperlora.generate_id_lora(clip_tokens, id_embeds)


@dataclass
class Row:
    method: str
    refs: int
    strength: float
    matches: np.ndarray  # [I, 6] bool

    @property
    def mean(self) -> float:
        return float(self.matches.mean())

    @property
    def all6(self) -> float:
        return float(self.matches.all(1).mean())


@dataclass
class ToyEval:
    rows: list[Row]
    identities: np.ndarray
    images: dict[str, np.ndarray] = field(default_factory=dict)  # row label -> [I, 32, 32, 3] uint8
    references: np.ndarray | None = None  # [I, 32, 32, 3] uint8, the first reference photo of each identity

    def row(self, method: str, refs: int = 1, strength: float = 1.0) -> Row:
        for r in self.rows:
            if r.method == method and r.refs == refs and r.strength == strength:
                return r
        raise KeyError((method, refs, strength))

    @property
    def with_lora(self) -> float:
        return self.row("ID-LoRA", 1).mean

    @property
    def without(self) -> float:
        return self.row("no LoRA", 0, 0.0).mean

    def table(self) -> str:
        head = "| method | refs | strength | mean match | all-6 exact | " + " | ".join(world.ATTRIBUTE_NAMES) + " |"
        lines = [head, "|" + "---|" * (5 + world.NUM_ATTRIBUTES)]
        for r in self.rows:
            per = " | ".join(f"{v:.2f}" for v in r.matches.mean(0))
            refs = str(r.refs) if r.refs else "-"
            lines.append(f"| {r.method} | {refs} | {r.strength:g} | {r.mean:.3f} | {r.all6:.3f} | {per} |")
        lines.append(f"| chance | - | - | {world.CHANCE_MATCH:.3f} | {1 / world.NUM_IDENTITIES:.4f} |" + " |" * world.NUM_ATTRIBUTES)
        return "\n".join(lines)

    def summary_line(self) -> str:
        return f"heldout_match_with_lora={self.with_lora:.3f} without={self.without:.3f}"

    def save_grid(self, path: str | os.PathLike, count: int = 16) -> Path:
        """Rows: reference photo / sample with the 1-photo LoRA / same noise without a LoRA."""
        n = min(count, len(self.identities))
        rows = [self.references[:n], self.images["ID-LoRA x1"][:n], self.images["no LoRA"][:n]]
        img = world.grid(np.concatenate(rows), rows=3, scale=4)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        img.save(path)
        return path


def _uint8(images: torch.Tensor) -> np.ndarray:
    return (images.clamp(0, 1) * 255).round().to(torch.uint8).numpy()


@torch.no_grad()
def evaluate(toy: ToyWorld, identities: int = 32, seed: int = 11, steps: int = 20, refs: tuple[int, ...] = (1, 4),
             strengths: tuple[float, ...] = (1.0,), log=None) -> ToyEval:
    """Match table for no LoRA and the ID-LoRA (per refs count and strength) on held-out identities."""
    held = HeldoutSet.make(toy.conditioner, count=identities, refs=max(refs))
    n = len(held.identities)
    noise = toy_noise(n, seed)
    rows: list[Row] = []
    images: dict[str, np.ndarray] = {}
    base = toy.generate(None, noise, seed=seed, steps=steps)
    judge_in = base.permute(0, 3, 1, 2)
    rows.append(Row("no LoRA", 0, 0.0, (toy.judge.predict(judge_in) == held.attributes).numpy()))
    images["no LoRA"] = _uint8(base)
    for k in refs:
        loras = [toy.lora_for(held.clip_tokens[i, :k], held.id_embeds[i, :k]) for i in range(n)]
        for s in strengths:
            out = torch.cat([toy.generate(loras[i], noise[i : i + 1], strength=s, seed=seed, steps=steps)
                             for i in range(n)])
            m = (toy.judge.predict(out.permute(0, 3, 1, 2)) == held.attributes).numpy()
            rows.append(Row("ID-LoRA", k, s, m))
            if s == 1.0:
                images[f"ID-LoRA x{k}"] = _uint8(out)
            if log:
                log(f"ID-LoRA refs={k} strength={s}: mean match {m.mean():.3f}")
    return ToyEval(rows, held.identities, images, _uint8(held.references[:, 0].permute(0, 2, 3, 1)))
