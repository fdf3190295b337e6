"""The toy world's identity-transfer check, through the code a user's graph runs.

For held-out identities (never seen in any training stage) it loads the shipped files with the
toy loaders, generates one ID-LoRA per identity with `HyperLoRA.generate_id_lora` (1 and 4
reference photos), applies it with `comfy_bridge.apply_lora` (ComfyUI weight patches, the LoRA
file's alpha), samples with ComfyUI's KSampler path (`comfy.sample.sample`: euler / karras, empty
caption, CFG 1, the same noise with and without the LoRA), decodes with the toy `comfy.sd.VAE`
and asks the independent attribute judge whether the sample shows the reference's attributes.

`HookedSampler` makes the same samples for many HyperLoRA snapshots at once (the build's
held-out curve): the trainer's per-sample LoRA hooks and the bridge's batched Euler sampler,
which equal the KSampler path (the held-out test suite checks it on 48 identities).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence, Sized
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..comfy_bridge.diffusion import Denoiser, euler_sample
from ..comfy_bridge.lora_hooks import LoRASet, attach_lora_hooks, deactivate, layer_module_paths
from ..lora import sample_scales
from ..model import HyperLoRA
from ..pixels import uint8_pixels
from . import world
from .encoders import AttributeJudge, Conditioner, to_tensor
from .models import IMAGE_CONDITIONING
from .world_loader import ToyWorld


@dataclass
class HeldoutSet:
    """Held-out identities, their reference photos and conditions."""

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

    def __len__(self) -> int:
        return len(self.identities)


def match(judge: AttributeJudge, images: torch.Tensor, attributes: torch.Tensor) -> np.ndarray:
    """`[I, 6]` boolean: does the judge see the reference identity's attribute in the samples `[I, 3, 32, 32]`?"""
    return (judge.predict(images) == attributes).numpy()


class HookedSampler:
    """Samples of a batch of held-out identities, each with its own LoRAs and caption.

    Every identity gets its own LoRAs through the trainer's per-sample hooks (`lora_hooks`, on the
    toy world's UNet) and the batch runs through `comfy_bridge.diffusion.euler_sample`, with
    KSampler's noise for `seed`: the same samples as the KSampler path with the LoRAs applied as
    weight patches (the held-out and study tests check it), in one batch.
    """

    def __init__(self, toy: ToyWorld, held: Sized, seed: int = 11, steps: int = 20, batch: int = 64) -> None:
        self.toy, self.held, self.steps, self.batch = toy, held, steps, batch
        self.noise = toy.noise(len(held), seed)
        self.denoiser = Denoiser(toy.unet)
        self._text: dict[str, dict[str, torch.Tensor]] = {}
        self.state = attach_lora_hooks(toy.unet, layer_module_paths(toy.unet, toy.hyperlora.config.modules), "cpu")

    def close(self) -> None:
        self.state.clear()
        deactivate(self.toy.unet)

    def __enter__(self) -> HookedSampler:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def text(self, caption: str) -> dict[str, torch.Tensor]:
        """The model inputs of a caption (batch of one), as CLIPTextEncode + the toy crop's conditioning."""
        if caption not in self._text:
            self._text[caption] = self.denoiser.inputs({**self.toy.backbone.encode_text([caption]), **IMAGE_CONDITIONING})
        return self._text[caption]

    @torch.no_grad()
    def sample(self, loras: Callable[[slice], list[LoRASet]] | None = None, captions: list[str] | None = None,
               cfg: float = 1.0) -> torch.Tensor:
        """`[I, 3, 32, 32]` 0..1: identity i with `captions[i]` (default empty; the negative prompt is
        empty) and the LoRA sets `loras(rows)` gives for a slice of identities (None: no LoRA)."""
        n = len(self.held)
        captions = captions or [""] * n
        uncond = self.text("")
        out = []
        for s in range(0, n, self.batch):
            rows = slice(s, min(n, s + self.batch))
            b = rows.stop - rows.start
            texts = [self.text(c) for c in captions[rows]]
            inputs = {k: torch.cat([t[k] for t in texts]) for k in uncond}
            self.state.sets = loras(rows) if loras is not None else []
            try:
                x = euler_sample(self.denoiser, self.noise[rows], inputs,
                                 {k: v.expand(b, *v.shape[1:]) for k, v in uncond.items()}, steps=self.steps, cfg=cfg)
            finally:
                self.state.clear()
            out.append(self.toy.vae.decode(self.denoiser.latent_out(x)).float().clamp(0, 1).permute(0, 3, 1, 2))
        return torch.cat(out)

    @torch.no_grad()
    def images(self, hl: HyperLoRA | None, refs: int = 1, face: bool = True, strength: float = 1.0) -> torch.Tensor:
        """Samples of every held-out identity (a `HeldoutSet`) with the ID-LoRA `hl` makes from its first
        `refs` photos (`face`: with their ArcFace embeddings), or without a LoRA when `hl` is None;
        empty caption, CFG 1."""
        if hl is None:
            return self.sample(None)
        held = self.held

        def loras(rows: slice) -> list[LoRASet]:
            downs, ups = hl.id_factors(held.clip_tokens[rows, :refs], held.id_embeds[rows, :refs] if face else None)
            return [LoRASet(downs, ups, sample_scales(rows.stop - rows.start, strength))]

        return self.sample(loras)


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

    def save_grid(self, path: str | os.PathLike, count: int = 16,
                  rows: Sequence[str] = ("reference", "ID-LoRA x1", "no LoRA")) -> Path:
        """One column per identity; rows: "reference" (its first photo) or labels of `images`."""
        n = min(count, len(self.identities))
        stacks = [(self.references if r == "reference" else self.images[r])[:n] for r in rows]
        img = world.grid(np.concatenate(stacks), rows=len(stacks), scale=4)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        img.save(path)
        return path


@torch.no_grad()
def evaluate(toy: ToyWorld, identities: int = 32, seed: int = 11, steps: int = 20, refs: tuple[int, ...] = (1, 4),
             strengths: tuple[float, ...] = (1.0,), log=None) -> ToyEval:
    """Match table for no LoRA and the ID-LoRA (per refs count and strength) on held-out identities."""
    held = HeldoutSet.make(toy.conditioner, count=identities, refs=max(refs))
    n = len(held.identities)
    noise = toy.noise(n, seed)
    rows: list[Row] = []
    images: dict[str, np.ndarray] = {}
    base = toy.generate(None, noise, seed=seed, steps=steps)
    rows.append(Row("no LoRA", 0, 0.0, match(toy.judge, base.permute(0, 3, 1, 2), held.attributes)))
    images["no LoRA"] = uint8_pixels(base)
    for k in refs:
        loras = [toy.lora_for(held.clip_tokens[i, :k], held.id_embeds[i, :k]) for i in range(n)]
        for s in strengths:
            out = torch.cat([toy.generate(loras[i], noise[i : i + 1], strength=s, seed=seed, steps=steps)
                             for i in range(n)])
            m = match(toy.judge, out.permute(0, 3, 1, 2), held.attributes)
            rows.append(Row("ID-LoRA", k, s, m))
            if s == 1.0:
                images[f"ID-LoRA x{k}"] = uint8_pixels(out)
            if log:
                log(f"ID-LoRA refs={k} strength={s}: mean match {m.mean():.3f}")
    return ToyEval(rows, held.identities, images, uint8_pixels(held.references[:, 0].permute(0, 2, 3, 1)))
