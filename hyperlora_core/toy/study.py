"""The paper's claims, measured in the toy world for one HyperLoRA checkpoint.

On held-out identities (never in any training stage), each with reference photos (renders 0..3,
each with its own background, pattern, clothing and pose), the same sampler noise with and
without every LoRA, judged by the identity judge and the base-factor judge:

- ID fidelity: mean attribute match and all-6 exact, LoRA from 1 and from 4 photos, empty caption;
- leakage: how often the output's background colour, pattern and clothing colour equal the first
  reference photo's (empty caption; the no-LoRA rate on the same noise is the floor);
- editability: a caption naming a background and a shirt that differ from the reference's
  ("red shirt, blue striped background"): how often the output follows it, with the ID-LoRA and
  without any LoRA, and the ID match while it does;
- Base fidelity: ID-LoRA + Base-LoRA (both from the first reference photo, strength 1), empty
  caption: how often background and clothing match the reference's (the paper's "Full" setting);
- fine-tune: `train.finetune` from the 4-photo ID-LoRA on those 4 photos: ID match after, wall time;
- CFG: ID match and caption-following at several CFG scales (with the editing captions: with the
  empty caption as both prompts CFG changes nothing).

Sampling runs every identity's own LoRA in one batch: the trainer's per-sample LoRA hooks
(`comfy_bridge.lora_hooks`) and the bridge's batched Euler sampler, which equal ComfyUI's KSampler
with the LoRA applied as weight patches (the toy study's tests check it, ID + Base and CFG).
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..comfy_bridge.lora_hooks import LoRASet
from ..config import LORA_SCALE
from ..eval.intervals import ZERO, Interval, difference_interval, mean_interval, per_identity, verdict
from ..lora import lora_modules, sample_scales
from ..model import HyperLoRA
from ..pixels import uint8_pixels
from . import files, world
from .base_judge import BaseJudge
from .recipe import CONFIG_FILE

Log = Callable[[str], None]
FINETUNE_STEPS = 50
FINETUNE_LR = 1e-3
"""The toy LoRA's factors are ~100x smaller than SDXL's; at the authors' 1e-4, 50 steps barely move them."""


def _images01(images: np.ndarray) -> torch.Tensor:
    """uint8 `[N, H, W, 3]` -> float `[N, 3, H, W]` in 0..1."""
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float().div_(255.0)


def edit_factors(reference: np.ndarray, seed: int = 3) -> np.ndarray:
    """Per identity a background colour, pattern and shirt colour that all differ from its reference
    photo's `[I, 3]`, so following the caption can never be mistaken for copying the photo."""
    rng = np.random.default_rng(seed)
    out = np.empty_like(reference)
    for f, n in enumerate(world.BASE_FACTOR_SIZES):
        out[:, f] = (reference[:, f] + rng.integers(1, n, size=len(reference))) % n
    return out


@dataclass
class StudySet:
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
    def make(cls, conditioner, count: int = 128, refs: int = 4, seed: int = 0) -> StudySet:
        ids = world.spread_heldout_identities(count)
        renders = world.render_set(ids, refs, seed)
        x = _images01(renders.images)
        tokens, embeds = conditioner(x)
        first = renders.render_index == 0
        with torch.no_grad():
            base_tokens = conditioner.clip.penultimate(world.face_blurred(tensor=x[torch.from_numpy(first)]))
        reference = renders.base_factors[first]
        edits = edit_factors(reference)
        n = len(ids)
        return cls(ids, world.all_attributes()[ids], reference, renders.images.reshape(n, refs, *renders.images.shape[1:]),
                   tokens.view(n, refs, *tokens.shape[1:]), embeds.view(n, refs, -1), base_tokens, edits,
                   [", ".join(world.base_phrases(e)) for e in edits])

    def __len__(self) -> int:
        return len(self.identities)

    def head(self, count: int) -> StudySet:
        """The first `count` identities."""
        return StudySet(*(getattr(self, f.name)[:count] for f in dataclasses.fields(self)))


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
def id_loras(hl: HyperLoRA, study: StudySet, refs: int) -> Loras:
    """Each identity's ID-LoRA from its first `refs` photos (`HyperLoRA.generate_id_lora`, for all
    identities at once)."""
    return Loras(*hl.id_factors(study.clip_tokens[:, :refs], study.id_embeds[:, :refs]), LORA_SCALE)


@torch.no_grad()
def base_loras(hl: HyperLoRA, study: StudySet) -> Loras:
    """Each identity's Base-LoRA from its first photo, face blurred (`HyperLoRA.generate_base_lora`)."""
    return Loras(*hl.base_factors(study.base_tokens[:, None]), LORA_SCALE)


def loras_from_files(dicts: list[dict[str, torch.Tensor]], hl: HyperLoRA) -> Loras:
    """Kohya LoRA state dicts (e.g. fine-tuned ones), one per identity, in the checkpoint's layer order."""
    names = hl.config.layer_names()
    per = [lora_modules(d) for d in dicts]
    downs = [torch.stack([m[name][0].float() for m in per]) for name in names]
    ups = [torch.stack([m[name][1].float() for m in per]) for name in names]
    down0, _, alpha = per[0][names[0]]
    return Loras(downs, ups, float(alpha) / down0.shape[0])


def lora_sets(loras: list[tuple[Loras, float]]) -> Callable[[slice], list[LoRASet]]:
    """For `HookedSampler.sample`: every LoRA kind's rows of a slice of identities, at its strength."""
    return lambda rows: [lo.set(strength, rows) for lo, strength in loras if strength]


@dataclass
class Judged:
    """What the judges see in one set of samples."""

    identity: np.ndarray  # [I, 6] bool: attribute == the identity's
    factors: np.ndarray  # [I, 3] predicted background colour, pattern, clothing

    @property
    def id_match(self) -> float:
        return float(self.identity.mean())

    @property
    def all6(self) -> float:
        return float(self.identity.all(1).mean())

    def factor_rate(self, target: np.ndarray) -> float:
        """Mean over the three base factors of how often the prediction equals `target [I, 3]`."""
        return float((self.factors == target).mean())


@dataclass
class StudyResult:
    identities: int
    numbers: dict[str, float] = field(default_factory=dict)
    per_factor: dict[str, list[float]] = field(default_factory=dict)
    cfg_rows: list[dict] = field(default_factory=list)
    images: dict[str, np.ndarray] = field(default_factory=dict)  # label -> [I, 32, 32, 3] uint8
    per_identity: dict[str, np.ndarray] = field(default_factory=dict)
    """Each number's per-identity values (`numbers[k]` is their mean): what its 95 % interval resamples."""
    judged: dict[str, Judged] = field(default_factory=dict)
    """Per-identity judgements of each empty-caption setting ("no LoRA", "ID-LoRA x1", "ID-LoRA x4", "ID + Base"),
    the same identities in the same order: what `eval.intervals` resamples."""
    seconds: float = 0.0

    def interval(self, key: str) -> Interval:
        return mean_interval(self.per_identity[key])

    def difference(self, key: str, other: str) -> Interval:
        """`key - other` over the same identities (paired), with its 95 % interval."""
        return difference_interval(self.per_identity[key], self.per_identity[other])

    def summary_line(self) -> str:
        keys = ("id_match_1ref", "id_match_4ref", "no_lora", "leakage", "no_lora_leakage", "edit_follow",
                "no_lora_edit_follow", "base_match", "finetune_id_match")
        return "toy_eval " + " ".join(f"{k}={self.numbers[k]:.3f}" if k in self.numbers else f"{k}=n/a" for k in keys)


def finetune_loras(toy, hl: HyperLoRA, study: StudySet, count: int, cfg, steps: int = FINETUNE_STEPS,
                   lr: float = FINETUNE_LR, log: Log | None = None) -> tuple[list[dict], float]:
    """`train.finetune` from each of the first `count` identities' 4-photo ID-LoRA on those photos
    (captioned with their background and shirt, as a user describes a photo; 50 steps, batch 4).
    Returns the LoRAs and the mean wall seconds per identity."""
    from PIL import Image

    from ..safetensors_io import load_tensors, save_tensors_atomic
    from ..train.finetune import finetune
    from ..train.fit import build_backbone

    refs = study.photos.shape[1]
    backbone = getattr(toy, "backbone", None) or build_backbone(cfg)
    out, seconds = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(count):
            folder = Path(tmp) / f"id{i}"
            folder.mkdir()
            renders = world.render_set([int(study.identities[i])], refs, 0)
            for j in range(refs):
                Image.fromarray(study.photos[i, j]).save(folder / f"{j}.png")
                (folder / f"{j}.txt").write_text(", ".join(world.base_phrases(renders.base_factors[j])))
            lora = hl.generate_id_lora(study.clip_tokens[i], study.id_embeds[i])
            src, dst = Path(tmp) / f"id{i}.safetensors", Path(tmp) / f"id{i}_ft.safetensors"
            save_tensors_atomic(lora, src)
            t0 = time.perf_counter()
            finetune(cfg, src, folder, dst, steps=steps, lr=lr, batch=4, resolution=world.IMAGE_SIZE, seed=i,
                     backbone=backbone)
            seconds.append(time.perf_counter() - t0)
            out.append(load_tensors(dst))
            if log and (i + 1) % 8 == 0:
                log(f"fine-tuned {i + 1}/{count} LoRAs ({np.mean(seconds):.1f} s each)")
    return out, float(np.mean(seconds))


def run_study(folder: str | os.PathLike | None = None, hyperlora: str | os.PathLike | None = None,
              identities: int = 128, steps: int = 20, seed: int = 11, finetune_count: int = 32,
              cfgs: tuple[float, ...] = (1.0, 2.0, 4.0, 7.0), edit_cfg: float = 1.0, log: Log | None = None,
              train_config: str | os.PathLike | None = None) -> StudyResult:
    """Every measurement above for the toy world in `folder` with the HyperLoRA `hyperlora` (default
    the world's own). `finetune_count` 0 skips fine-tuning; `cfgs` empty skips the CFG sweep."""
    from .evaluate import HookedSampler
    from .world_loader import ToyWorld

    t0 = time.time()
    log = log or (lambda _m: None)
    toy = ToyWorld.load(folder, hyperlora)
    hl = toy.hyperlora
    judge = toy.judge
    base_judge = files.load_module(BaseJudge(), "base_judge", folder)
    study = StudySet.make(toy.conditioner, identities)
    result = StudyResult(len(study))
    n = result.numbers

    def put(key: str, values) -> None:
        """A number and its per-identity values (`[I]`, or `[I, k]` averaged per identity)."""
        result.per_identity[key] = per_identity(values)
        n[key] = float(result.per_identity[key].mean())
    attrs = torch.from_numpy(study.attributes)

    def judged(images: torch.Tensor) -> Judged:
        return Judged((judge.predict(images) == attrs).numpy(), base_judge.predict(images).numpy())

    one, four = id_loras(hl, study, 1), id_loras(hl, study, 4)
    base = base_loras(hl, study) if hl.config.has_base else None
    edits = study.edit_captions
    with HookedSampler(toy, study, seed=seed, steps=steps, batch=128) as sampler:
        plain = sampler.sample(None)
        j0 = result.judged["no LoRA"] = judged(plain)
        put("no_lora", j0.identity), put("no_lora_all6", j0.identity.all(1))
        put("no_lora_leakage", j0.factors == study.reference_factors)
        result.images["no LoRA"] = uint8_pixels(plain.permute(0, 2, 3, 1))
        for label, lo in (("1ref", one), ("4ref", four)):
            imgs = sampler.sample(lora_sets([(lo, 1.0)]))
            j = result.judged[f"ID-LoRA x{label[0]}"] = judged(imgs)
            put(f"id_match_{label}", j.identity), put(f"all6_{label}", j.identity.all(1))
            if label == "1ref":
                put("leakage", j.factors == study.reference_factors)
                result.per_factor["leakage"] = list((j.factors == study.reference_factors).mean(0))
                result.per_factor["no_lora_leakage"] = list((j0.factors == study.reference_factors).mean(0))
                result.per_factor["id_match_1ref"] = list(j.identity.mean(0))
                result.images["ID-LoRA"] = uint8_pixels(imgs.permute(0, 2, 3, 1))
            log(f"ID-LoRA {label}: match {j.id_match:.3f} all-6 {j.all6:.3f}")
        if base is not None:
            imgs = sampler.sample(lora_sets([(one, 1.0), (base, 1.0)]))
            j = result.judged["ID + Base"] = judged(imgs)
            put("base_match", j.factors == study.reference_factors), put("id_match_id_base", j.identity)
            result.per_factor["base_match"] = list((j.factors == study.reference_factors).mean(0))
            result.images["ID + Base"] = uint8_pixels(imgs.permute(0, 2, 3, 1))
            imgs = sampler.sample(lora_sets([(base, 1.0)]))
            j = judged(imgs)
            put("base_only_base_match", j.factors == study.reference_factors), put("base_only_id_match", j.identity)
            imgs = sampler.sample(lora_sets([(one, 1.0), (base, 1.0)]), edits, cfg=edit_cfg)  # "Full" asked to change them
            j = judged(imgs)
            put("edit_follow_id_base", j.factors == study.edits), put("id_match_edit_id_base", j.identity)
            put("leakage_edit_id_base", j.factors == study.reference_factors)
            log(f"ID + Base: base match {n['base_match']:.3f}, ID match {n['id_match_id_base']:.3f}")
        for c in sorted({edit_cfg, *cfgs}):
            row = {"cfg": c}
            for label, loras in (("no_lora", []), ("id", [(one, 1.0)])):
                imgs = sampler.sample(lora_sets(loras), edits, cfg=c)
                j = judged(imgs)
                row[f"{label}_edit_follow"] = j.factor_rate(study.edits)
                row[f"{label}_id_match"] = j.id_match
                row[f"{label}_leakage"] = j.factor_rate(study.reference_factors)
                if c == edit_cfg:
                    put({"no_lora": "no_lora_edit_follow", "id": "edit_follow"}[label], j.factors == study.edits)
                    put({"no_lora": "no_lora_id_match_edit", "id": "id_match_edit"}[label], j.identity)
                    result.images[f"edit {label}"] = uint8_pixels(imgs.permute(0, 2, 3, 1))
                    result.per_factor[f"{label}_edit_follow"] = list((j.factors == study.edits).mean(0))
            result.cfg_rows.append(row)
            log(f"CFG {c:g}: {row}")
    if finetune_count:
        from ..train.config import load_config

        cfg = load_config(train_config or files.world_dir(folder) / CONFIG_FILE)
        k = min(finetune_count, len(study))
        tuned, seconds = finetune_loras(toy, hl, study, k, cfg, log=log)
        sub = study.head(k)
        with HookedSampler(toy, sub, seed=seed, steps=steps, batch=128) as sampler:
            imgs = sampler.sample(lora_sets([(loras_from_files(tuned, hl), 1.0)]))
            j = Judged((judge.predict(imgs) == torch.from_numpy(sub.attributes)).numpy(), base_judge.predict(imgs).numpy())
            before = sampler.sample(lora_sets([(id_loras(hl, sub, 4), 1.0)]))
            jb = (judge.predict(before) == torch.from_numpy(sub.attributes)).numpy()
        put("finetune_id_match", j.identity), put("finetune_all6", j.identity.all(1))
        put("finetune_before_id_match", jb)
        put("finetune_leakage", j.factors == sub.reference_factors)
        n["finetune_seconds"] = seconds
        n["finetune_identities"] = k
        log(f"fine-tune ({k} identities): ID match {float(jb.mean()):.3f} -> {j.id_match:.3f}, {seconds:.1f} s each")
    result.seconds = time.time() - t0
    return result


def _f(v) -> str:
    return "-" if v is None else f"{v:.3f}"


MEASURES = (
    ("no_lora", "ID match, no LoRA"), ("id_match_1ref", "ID match, ID-LoRA from 1 photo"),
    ("id_match_4ref", "ID match, ID-LoRA from 4 photos"), ("no_lora_leakage", "photo's background/shirt, no LoRA"),
    ("leakage", "photo's background/shirt, ID-LoRA (leakage)"), ("no_lora_edit_follow", "caption followed, no LoRA"),
    ("edit_follow", "caption followed, ID-LoRA"), ("id_match_edit", "ID match while editing"),
    ("base_match", "photo's background/shirt, ID + Base (Base fidelity)"), ("id_match_id_base", "ID match, ID + Base"),
    ("finetune_before_id_match", "ID match before the 50-step fine-tune"),
    ("finetune_id_match", "ID match after the 50-step fine-tune"),
)
"""The study's numbers shown with intervals, and what each says."""

COMPARISONS = (
    ("id_match_1ref", "no_lora", "the ID-LoRA carries identity (1 photo vs no LoRA)"),
    ("id_match_4ref", "id_match_1ref", "more photos help (4 vs 1)"),
    ("leakage", "no_lora_leakage", "the ID-LoRA copies the photo's background/shirt more than no LoRA (leakage)"),
    ("edit_follow", "no_lora_edit_follow", "the ID-LoRA follows captions more than no LoRA (less: it costs editability)"),
    ("base_match", "leakage", "the Base-LoRA brings back the photo's background/shirt (ID + Base vs ID-LoRA)"),
    ("finetune_id_match", "finetune_before_id_match", "the 50-step fine-tune helps"),
)
"""Paired comparisons on the same identities: (a, b, the claim that a > b tests)."""


def _signed(v: float) -> str:
    """+0.012; a bound that rounds to zero keeps enough digits to show its side of zero (+0.0003)."""
    if abs(v) <= ZERO:
        return "+0.000"
    return f"{v:+.3f}" if abs(v) >= 0.0005 else f"{v:+.1e}" if abs(v) < 0.00005 else f"{v:+.4f}"


def interval_tables(result: StudyResult) -> str:
    """Every measured number with its 95 % interval (bootstrap over identities), then the paired comparisons with
    the verdicts the intervals allow."""
    lines = ["| measure | mean | 95 % CI |", "|---|---|---|"]
    for key, text in MEASURES:
        if key in result.per_identity:
            ci = result.interval(key)
            lines.append(f"| {text} | {ci.mean:.3f} | [{ci.low:.3f}, {ci.high:.3f}] |")
    lines += ["", "| claim (a > b) | a - b | 95 % CI | verdict |", "|---|---|---|---|"]
    for a, b, claim in COMPARISONS:
        if a in result.per_identity and b in result.per_identity and \
                len(result.per_identity[a]) == len(result.per_identity[b]):
            d = result.difference(a, b)
            lines.append(f"| {claim} | {_signed(d.mean)} | [{_signed(d.low)}, {_signed(d.high)}] | "
                         f"{verdict(d).split(' (')[0]} |")
    return "\n".join(lines)


def study_tables(result: StudyResult) -> str:
    """The measurements as Markdown: one table of settings, the CFG sweep, the per-factor rates."""
    n = result.numbers
    g = n.get
    lines = [f"{result.identities} held-out identities (never in any training stage), the same sampler noise in every "
             "row; identity judged by the attribute judge, background colour / pattern / shirt by the base judge.", "",
             "| setting | ID match | all-6 exact | base factors = reference photo's | base factors = caption's |",
             "|---|---|---|---|---|",
             f"| no LoRA, empty caption | {_f(g('no_lora'))} | {_f(g('no_lora_all6'))} | {_f(g('no_lora_leakage'))} | - |",
             f"| ID-LoRA (1 photo), empty caption | {_f(g('id_match_1ref'))} | {_f(g('all6_1ref'))} | {_f(g('leakage'))} | - |",
             f"| ID-LoRA (4 photos), empty caption | {_f(g('id_match_4ref'))} | {_f(g('all6_4ref'))} | - | - |",
             f"| no LoRA, editing caption | {_f(g('no_lora_id_match_edit'))} | - | - | {_f(g('no_lora_edit_follow'))} |",
             f"| ID-LoRA (1 photo), editing caption | {_f(g('id_match_edit'))} | - | - | {_f(g('edit_follow'))} |"]
    if "base_match" in n:
        lines.append(f"| ID + Base-LoRA (1 photo), empty caption | {_f(g('id_match_id_base'))} | - | {_f(g('base_match'))} | - |")
        lines.append(f"| ID + Base-LoRA (1 photo), editing caption | {_f(g('id_match_edit_id_base'))} | - | "
                     f"{_f(g('leakage_edit_id_base'))} | {_f(g('edit_follow_id_base'))} |")
        lines.append(f"| Base-LoRA alone, empty caption | {_f(g('base_only_id_match'))} | - | "
                     f"{_f(g('base_only_base_match'))} | - |")
    if "finetune_id_match" in n:
        k = int(n["finetune_identities"])
        lines.append(f"| ID-LoRA (4 photos) on the first {k} identities, before fine-tuning | "
                     f"{_f(g('finetune_before_id_match'))} | - | - | - |")
        lines.append(f"| the same after `train finetune` (50 steps, 4 photos; {g('finetune_seconds'):.1f} s each) | "
                     f"{_f(g('finetune_id_match'))} | {_f(g('finetune_all6'))} | {_f(g('finetune_leakage'))} | - |")
    if result.cfg_rows:
        lines += ["", "CFG sweep (editing captions; negative prompt empty):", "",
                  "| CFG | ID match, ID-LoRA | ID match, no LoRA | caption followed, ID-LoRA | caption followed, no LoRA |",
                  "|---|---|---|---|---|"]
        for r in result.cfg_rows:
            lines.append(f"| {r['cfg']:g} | {_f(r['id_id_match'])} | {_f(r['no_lora_id_match'])} | "
                         f"{_f(r['id_edit_follow'])} | {_f(r['no_lora_edit_follow'])} |")
    if result.per_factor:
        lines += ["", "Per factor (background colour, pattern, shirt colour; identity: the six attributes):", ""]
        for k, v in result.per_factor.items():
            lines.append(f"- {k}: " + ", ".join(f"{x:.2f}" for x in v))
    return "\n".join(lines)
