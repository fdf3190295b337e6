"""The toy world's one way to measure: sample held-out identities under named conditions, judge the images.

Study, ablation, the build's held-out curve and eval stage, the demo's judging, the template
pictures and the tests all measure through here, so every number of the toy world comes from the
same sampler, the same judges and the same statistics:

- `Heldout`: held-out identities (never in any training stage), their reference photos (renders
  0..R-1, each with its own background, pattern, clothing and pose), their conditions and an editing
  caption per identity naming a background and shirt the first photo does not have;
- `Condition`: a name, the LoRAs (`Lora`: ID from n photos, Base, or given files, each at a strength),
  the caption, CFG and the sampler seed;
- `Judges`: the attribute judge (identity) and the base-factor judge (background colour, pattern,
  clothing), networks the HyperLoRA never reads;
- `measure`: samples every condition for every identity in one batch through `HookedSampler` (the
  trainer's per-sample LoRA hooks and the bridge's batched Euler, proven equal to ComfyUI's KSampler path
  with the LoRAs applied as weight patches: `ksampler_images` is that path, kept for the proof tests);
- `Judgements`: what the judges saw, per identity and condition, and named per-identity measures with
  their 95 % intervals and paired differences (`eval.intervals`, bootstrap over identities).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..comfy_bridge import apply_lora
from ..comfy_bridge.diffusion import Denoiser, euler_sample
from ..comfy_bridge.lora_hooks import LoRASet, attach_lora_hooks, deactivate, layer_module_paths
from ..config import LORA_SCALE
from ..eval.intervals import Interval, difference_interval, mean_interval, per_identity
from ..lora import lora_modules, sample_scales
from ..model import HyperLoRA
from ..pixels import uint8_pixels
from . import files, world
from .base_judge import BaseJudge
from .encoders import AttributeJudge, Conditioner, to_tensor
from .world_loader import ToyWorld

SEED = 11
"""The sampler seed of every toy measurement (KSampler's noise for it)."""


def edit_factors(reference: np.ndarray, seed: int = 3) -> np.ndarray:
    """Per identity a background colour, pattern and shirt colour that all differ from its reference
    photo's `[I, 3]`, so following the caption can never be mistaken for copying the photo."""
    rng = np.random.default_rng(seed)
    out = np.empty_like(reference)
    for f, n in enumerate(world.BASE_FACTOR_SIZES):
        out[:, f] = (reference[:, f] + rng.integers(1, n, size=len(reference))) % n
    return out


@dataclass
class Heldout:
    """Held-out identities, their reference photos (render 0..R-1), conditions and editing captions."""

    identities: np.ndarray
    attributes: np.ndarray  # [I, 6]
    reference_factors: np.ndarray  # [I, 3] background colour, pattern, clothing of render 0
    photos: np.ndarray  # [I, R, 32, 32, 3] uint8
    clip_tokens: torch.Tensor  # [I, R, T, C] of the grey-background faces
    id_embeds: torch.Tensor  # [I, R, 512]
    base_tokens: torch.Tensor  # [I, T, C] of render 0, face blurred
    edits: np.ndarray  # [I, 3]
    edit_captions: list[str]

    @classmethod
    def make(cls, conditioner: Conditioner, count: int = 128, refs: int = 4, seed: int = 0) -> Heldout:
        """The first `count` of the spread held-out identities (`world.spread_heldout_identities`)."""
        ids = world.spread_heldout_identities(count)
        renders = world.render_set(ids, refs, seed)
        x = to_tensor(renders.images)
        with torch.no_grad():
            tokens, embeds = conditioner(x)
            first = renders.render_index == 0
            base_tokens = conditioner.clip.penultimate(world.face_blurred(tensor=x[torch.from_numpy(first)]))
        reference = renders.base_factors[first]
        edits = edit_factors(reference)
        n = len(ids)
        return cls(ids, world.all_attributes()[ids], reference, renders.images.reshape(n, refs, *renders.images.shape[1:]),
                   tokens.view(n, refs, *tokens.shape[1:]), embeds.view(n, refs, -1), base_tokens, edits,
                   [", ".join(world.base_phrases(e)) for e in edits])

    def __len__(self) -> int:
        return len(self.identities)

    def head(self, count: int) -> Heldout:
        """The first `count` identities."""
        return Heldout(*(getattr(self, f.name)[:count] for f in dataclasses.fields(self)))


# -- LoRAs: per-identity factors for the hooks ------------------------------------------------------
@dataclass
class Loras:
    """Per-identity LoRA factors for the hooks: `downs[l] [I, r, in]`, `ups[l] [I, out, r]`, and the
    alpha/rank every LoRA of this kind is exported with."""

    downs: list[torch.Tensor]
    ups: list[torch.Tensor]
    alpha_scale: float

    def set(self, strength: float, rows: slice | None = None) -> LoRASet:
        sel = rows or slice(None)
        downs, ups = [d[sel] for d in self.downs], [u[sel] for u in self.ups]
        return LoRASet(downs, ups, sample_scales(downs[0].shape[0], strength, self.alpha_scale))


@torch.no_grad()
def id_loras(hl: HyperLoRA, held: Heldout, refs: int, face: bool = True) -> Loras:
    """Each identity's ID-LoRA from its first `refs` photos (`HyperLoRA.id_factors`, for all identities at
    once; `face` False: without the ArcFace embeddings, as the CLIP-only training stage makes them)."""
    return Loras(*hl.id_factors(held.clip_tokens[:, :refs], held.id_embeds[:, :refs] if face else None), LORA_SCALE)


@torch.no_grad()
def base_loras(hl: HyperLoRA, held: Heldout) -> Loras:
    """Each identity's Base-LoRA from its first photo, face blurred (`HyperLoRA.base_factors`)."""
    return Loras(*hl.base_factors(held.base_tokens[:, None]), LORA_SCALE)


def loras_from_files(dicts: list[dict[str, torch.Tensor]], hl: HyperLoRA) -> Loras:
    """Kohya LoRA state dicts (e.g. fine-tuned ones), one per identity, in the checkpoint's layer order."""
    names = hl.config.layer_names()
    per = [lora_modules(d) for d in dicts]
    downs = [torch.stack([m[name][0].float() for m in per]) for name in names]
    ups = [torch.stack([m[name][1].float() for m in per]) for name in names]
    down0, _, alpha = per[0][names[0]]
    return Loras(downs, ups, float(alpha) / down0.shape[0])


@dataclass(frozen=True, eq=False)
class Lora:
    """One LoRA of a condition: `kind` "id" (from the first `refs` photos; `face` False: without ArcFace),
    "base" (from the first photo, face blurred) or "files" (`files[i]`: identity i's kohya state dict)."""

    kind: str
    strength: float = 1.0
    refs: int = 1
    face: bool = True
    files: tuple[dict[str, torch.Tensor], ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in ("id", "base", "files"):
            raise ValueError(f"Lora kind must be 'id', 'base' or 'files', not {self.kind!r}")

    def key(self) -> tuple:
        return (self.kind, self.refs, self.face, id(self.files))

    def factors(self, hl: HyperLoRA, held: Heldout) -> Loras:
        if self.kind == "id":
            return id_loras(hl, held, self.refs, self.face)
        if self.kind == "base":
            return base_loras(hl, held)
        return loras_from_files(list(self.files), hl)

    def state_dict(self, hl: HyperLoRA, held: Heldout, i: int) -> dict[str, torch.Tensor]:
        """Identity i's LoRA file, as the Generate nodes make it (the KSampler path applies it)."""
        if self.kind == "id":
            return hl.generate_id_lora(held.clip_tokens[i, : self.refs], held.id_embeds[i, : self.refs] if self.face else None)
        if self.kind == "base":
            return hl.generate_base_lora(held.base_tokens[i : i + 1])
        return self.files[i]


def ID(refs: int = 1, strength: float = 1.0, face: bool = True) -> Lora:  # noqa: N802
    """The ID-LoRA from `refs` photos."""
    return Lora("id", strength, refs, face)


def BASE(strength: float = 1.0) -> Lora:  # noqa: N802
    """The Base-LoRA from the first photo."""
    return Lora("base", strength)


@dataclass(frozen=True, eq=False)
class Condition:
    """One way of sampling every identity: its LoRAs, caption (one for all, or one per identity), CFG, seed."""

    name: str
    loras: tuple[Lora, ...] = ()
    caption: str | Sequence[str] = ""
    cfg: float = 1.0
    seed: int = SEED

    def captions(self, count: int) -> list[str]:
        if isinstance(self.caption, str):
            return [self.caption] * count
        if len(self.caption) != count:
            raise ValueError(f"condition {self.name!r}: {len(self.caption)} captions for {count} identities")
        return list(self.caption)


# -- judging ---------------------------------------------------------------------------------------
@dataclass
class Judges:
    """The identity judge and (worlds with a base-factor judge) the base-factor judge."""

    attribute: AttributeJudge
    base: BaseJudge | None = None

    @classmethod
    def load(cls, folder: str | os.PathLike | None = None, attribute: AttributeJudge | None = None) -> Judges:
        base = files.part_path("base_judge", folder)
        return cls(attribute or files.load_module(AttributeJudge(), "judge", folder),
                   files.load_module(BaseJudge(), "base_judge", folder) if base.is_file() else None)


def images01(images: torch.Tensor | np.ndarray) -> torch.Tensor:
    """Images as the judges read them, `[N, 3, H, W]` 0..1, from uint8 `[N, H, W, 3]` (saved files) or a float tensor."""
    if isinstance(images, np.ndarray):
        return to_tensor(np.ascontiguousarray(images))
    return images


@dataclass
class Judgements:
    """What the judges saw, per identity (the same identities, in order, in every entry).

    `identity[name] [I, 6]`: each attribute equal to the identity's; `factors[name] [I, 3]`: the predicted
    background colour, pattern and clothing (worlds with a base-factor judge); `values[key] [I]`: named
    per-identity measures, what `mean`, `interval` and `difference` read (`add` puts each condition's ID match
    under its name)."""

    held: Heldout
    identity: dict[str, np.ndarray] = field(default_factory=dict)
    factors: dict[str, np.ndarray] = field(default_factory=dict)
    values: dict[str, np.ndarray] = field(default_factory=dict)
    images: dict[str, np.ndarray] = field(default_factory=dict)  # name -> [I, 32, 32, 3] uint8, when kept

    @torch.no_grad()
    def add(self, name: str, images: torch.Tensor | np.ndarray, judges: Judges, keep: bool = False) -> Judgements:
        """Judge samples of every identity (`[I, 3, H, W]` 0..1, or uint8 `[I, H, W, 3]` read from files)."""
        x = images01(images)
        if x.shape[0] != len(self.held):
            raise ValueError(f"{name!r}: {x.shape[0]} images for {len(self.held)} identities")
        self.identity[name] = (judges.attribute.predict(x) == torch.from_numpy(self.held.attributes)).numpy()
        if judges.base is not None:
            self.factors[name] = judges.base.predict(x).numpy()
        self.values[name] = per_identity(self.identity[name])
        if keep:
            self.images[name] = images if isinstance(images, np.ndarray) else uint8_pixels(x.permute(0, 2, 3, 1))
        return self

    def put(self, key: str, values) -> np.ndarray:
        """A named measure from per-identity values (`[I]`, or `[I, k]` averaged per identity)."""
        self.values[key] = per_identity(values)
        return self.values[key]

    def all6(self, name: str) -> np.ndarray:
        """`[I]`: every attribute right."""
        return self.identity[name].all(1)

    def factor_match(self, name: str, target: str | np.ndarray = "reference") -> np.ndarray:
        """`[I, 3]`: the base factors equal to the first photo's ("reference"), the editing caption's ("edit")
        or `target [I, 3]`."""
        want = {"reference": self.held.reference_factors, "edit": self.held.edits}.get(target, target) \
            if isinstance(target, str) else target
        return self.factors[name] == want

    def mean(self, key: str) -> float:
        return float(self.values[key].mean())

    def interval(self, key: str) -> Interval:
        """The mean over identities with its 95 % bootstrap interval."""
        return mean_interval(self.values[key])

    def difference(self, a: str, b: str) -> Interval:
        """`a - b` over the same identities (paired), with its 95 % interval."""
        return difference_interval(self.values[a], self.values[b])

    def grid(self, path: str | os.PathLike, rows: Sequence[str] = ("reference", "ID-LoRA x1", "no LoRA"),
             count: int = 16) -> Path:
        """One column per identity; rows: "reference" (its first photo) or names of kept images."""
        n = min(count, len(self.held))
        stacks = [(self.held.photos[:, 0] if r == "reference" else self.images[r])[:n] for r in rows]
        img = world.grid(np.concatenate(stacks), rows=len(stacks), scale=4)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        img.save(path)
        return path

    def table(self, names: Sequence[str] | None = None) -> str:
        """ID match per condition with its 95 % interval, all-6 exact and per attribute."""
        head = "| condition | ID match | 95 % CI | all-6 exact | " + " | ".join(world.ATTRIBUTE_NAMES) + " |"
        lines = [head, "|" + "---|" * (4 + world.NUM_ATTRIBUTES)]
        for name in names or list(self.identity):
            ci = self.interval(name)
            per = " | ".join(f"{v:.2f}" for v in self.identity[name].mean(0))
            lines.append(f"| {name} | {ci.mean:.3f} | [{ci.low:.3f}, {ci.high:.3f}] | {self.all6(name).mean():.3f} | {per} |")
        lines.append(f"| chance | {world.CHANCE_MATCH:.3f} | - | {1 / world.NUM_IDENTITIES:.4f} |" + " |" * world.NUM_ATTRIBUTES)
        return "\n".join(lines)


def summary_line(with_lora: float, without: float) -> str:
    """The toy world's headline, the last line `make demo` and the build print."""
    return f"heldout_match_with_lora={with_lora:.3f} without={without:.3f}"


# -- sampling --------------------------------------------------------------------------------------
class HookedSampler:
    """Samples of a batch of held-out identities, each with its own LoRAs and caption.

    Every identity gets its own LoRAs through the trainer's per-sample hooks (`lora_hooks`, on the
    toy world's UNet) and the batch runs through `comfy_bridge.diffusion.euler_sample`, with
    KSampler's noise for the seed: the same samples as the KSampler path with the LoRAs applied as
    weight patches (tests/test_toy_measure.py checks it), in one batch.
    """

    def __init__(self, toy: ToyWorld, count: int, seed: int = SEED, steps: int = 20, batch: int = 128) -> None:
        self.toy, self.count, self.seed, self.steps, self.batch = toy, count, seed, steps, batch
        self._noise: dict[int, torch.Tensor] = {}
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

    def noise(self, seed: int | None = None) -> torch.Tensor:
        """KSampler's noise for every identity and a seed (default the sampler's)."""
        seed = self.seed if seed is None else seed
        if seed not in self._noise:
            self._noise[seed] = self.toy.noise(self.count, seed)
        return self._noise[seed]

    def text(self, caption: str) -> dict[str, torch.Tensor]:
        """The model inputs of a caption (batch of one), as CLIPTextEncode + the toy crop's conditioning."""
        if caption not in self._text:
            self._text[caption] = self.denoiser.inputs({**self.toy.backbone.encode_text([caption]),
                                                         **self.toy.base.image_conditioning})
        return self._text[caption]

    @torch.no_grad()
    def sample(self, loras: Callable[[slice], list[LoRASet]] | None = None, captions: list[str] | None = None,
               cfg: float = 1.0, seed: int | None = None) -> torch.Tensor:
        """`[I, 3, 32, 32]` 0..1: identity i with `captions[i]` (default empty; the negative prompt is
        empty) and the LoRA sets `loras(rows)` gives for a slice of identities (None: no LoRA)."""
        n = self.count
        captions = captions or [""] * n
        noise = self.noise(seed)
        uncond = self.text("")
        out = []
        for s in range(0, n, self.batch):
            rows = slice(s, min(n, s + self.batch))
            b = rows.stop - rows.start
            texts = [self.text(c) for c in captions[rows]]
            inputs = {k: torch.cat([t[k] for t in texts]) for k in uncond}
            self.state.sets = loras(rows) if loras is not None else []
            try:
                x = euler_sample(self.denoiser, noise[rows], inputs,
                                 {k: v.expand(b, *v.shape[1:]) for k, v in uncond.items()}, steps=self.steps, cfg=cfg)
            finally:
                self.state.clear()
            out.append(self.toy.vae.decode(self.denoiser.latent_out(x)).float().clamp(0, 1).permute(0, 3, 1, 2))
        return torch.cat(out)


def lora_sets(loras: list[tuple[Loras, float]]) -> Callable[[slice], list[LoRASet]]:
    """For `HookedSampler.sample`: every LoRA kind's rows of a slice of identities, at its strength."""
    return lambda rows: [lo.set(strength, rows) for lo, strength in loras if strength]


@torch.no_grad()
def ksampler_images(toy: ToyWorld, held: Heldout, condition: Condition, hl: HyperLoRA | None = None,
                    steps: int = 20) -> torch.Tensor:
    """`[I, 3, 32, 32]`: what a user's graph makes, identity by identity: the LoRA files (Generate nodes) applied
    as weight patches (`apply_lora`), KSampler, VAEDecode. Slow; the proof that `HookedSampler` equals it."""
    hl = hl or toy.hyperlora
    noise = toy.noise(len(held), condition.seed)
    captions = condition.captions(len(held))
    out = []
    for i in range(len(held)):
        model = toy.unet
        for lora in condition.loras:
            if lora.strength:
                model = apply_lora(model, lora.state_dict(hl, held, i), lora.strength)
        out.append(toy.generate(None, noise[i : i + 1], captions[i], seed=condition.seed, steps=steps, cfg=condition.cfg,
                                model=model))
    return torch.cat(out).permute(0, 3, 1, 2)


@torch.no_grad()
def measure(toy: ToyWorld, held: Heldout, conditions: Sequence[Condition], judges: Judges,
            hl: HyperLoRA | None = None, steps: int = 20, keep_images: bool | Sequence[str] = False,
            into: Judgements | None = None, sampler: HookedSampler | None = None, log: Callable[[str], None] | None = None,
            ) -> Judgements:
    """Every condition for every identity through the batched hook sampler, judged; `hl` (default the world's)
    makes the LoRAs. `keep_images`: True or the names whose uint8 images to keep. `into`: add to these
    judgements (the same identities). `sampler`: reuse an open one (many checkpoints on the same noise)."""
    hl = hl or toy.hyperlora
    out = into if into is not None else Judgements(held)
    cache: dict[tuple, Loras] = {}

    def factors(lora: Lora) -> Loras:
        if lora.key() not in cache:
            cache[lora.key()] = lora.factors(hl, held)
        return cache[lora.key()]

    own = sampler is None
    sampler = sampler or HookedSampler(toy, len(held), steps=steps)
    try:
        for c in conditions:
            loras = [(factors(lo), lo.strength) for lo in c.loras]
            images = sampler.sample(lora_sets(loras) if loras else None, c.captions(len(held)), cfg=c.cfg, seed=c.seed)
            keep = keep_images is True or (not isinstance(keep_images, bool) and c.name in keep_images)
            out.add(c.name, images, judges, keep=keep)
            if log:
                log(f"{c.name}: ID match {out.mean(c.name):.3f}")
    finally:
        if own:
            sampler.close()
    return out


# -- the build's eval stage: held-out table, grid and strength sweep in one run ----------------------
def sweep_conditions(strengths: Sequence[float], has_base: bool, refs: Sequence[int] = (1, 4),
                     seed: int = SEED) -> list[tuple[Condition, int, float]]:
    """(condition, refs, ID strength): no LoRA, the ID-LoRA from each refs count at each strength (named
    "ID-LoRA x<refs>" at strength 1, "ID-LoRA x<refs> at <s>" else) and, with a Base branch, ID + Base (both 1)."""
    out = [(Condition("no LoRA", seed=seed), 0, 0.0)]
    for k in refs:
        for s in sorted({*strengths, 1.0}):
            out.append((Condition(f"ID-LoRA x{k}" if s == 1.0 else f"ID-LoRA x{k} at {s:g}", (ID(k, s),), seed=seed), k, s))
    if has_base:
        out.append((Condition("ID + Base", (ID(1), BASE()), seed=seed), 1, 1.0))
    return out


def strength_sweep(toy: ToyWorld, count: int, strengths: Sequence[float], steps: int = 20, seed: int = SEED,
                   folder: str | os.PathLike | None = None, log: Callable[[str], None] | None = None) -> Judgements:
    """`sweep_conditions` on the first `count` held-out identities (empty caption, CFG 1), images kept."""
    held = Heldout.make(toy.conditioner, count)
    conditions = [c for c, _, _ in sweep_conditions(strengths, toy.hyperlora.config.has_base, seed=seed)]
    return measure(toy, held, conditions, Judges.load(folder, toy.judge), steps=steps, keep_images=True, log=log)


def strength_rows(j: Judgements, strengths: Sequence[float], has_base: bool) -> list[dict]:
    """The sweep as `eval.report` rows (`plot_strength`): toy attribute match and all-6 per condition."""
    from ..eval.harness import METRICS

    rows = []
    for c, refs, s in sweep_conditions(strengths, has_base):
        row = {"method": c.name, "kind": "ID+Base" if len(c.loras) > 1 else "ID-LoRA" if c.loras else "no LoRA",
               "id_strength": s, "refs": refs, "images": len(j.held), **dict.fromkeys(METRICS, float("nan"))}
        row["attr_match"], row["attr_all6"] = j.mean(c.name), float(j.all6(c.name).mean())
        rows.append(row)
    return rows


def strength_table(j: Judgements, strengths: Sequence[float], has_base: bool) -> str:
    """Markdown: ID match (95 % interval), all-6 exact and, with a base-factor judge, how often the background,
    pattern and shirt are the first photo's, per condition of the sweep."""
    lines = ["| condition | refs | ID strength | ID match | 95 % CI | all-6 exact | = photo's background/shirt |",
             "|---|---|---|---|---|---|---|"]
    for c, refs, s in sweep_conditions(strengths, has_base):
        ci = j.interval(c.name)
        base = f"{float(j.factor_match(c.name).mean()):.3f}" if c.name in j.factors else "-"
        lines.append(f"| {c.name} | {refs or '-'} | {s:g} | {ci.mean:.3f} | [{ci.low:.3f}, {ci.high:.3f}] | "
                     f"{float(j.all6(c.name).mean()):.3f} | {base} |")
    return "\n".join(lines + ["", f"{len(j.held)} held-out identities, empty caption, CFG 1, the same noise in every row "
                                  "(ID + Base: both LoRAs at strength 1)."])
