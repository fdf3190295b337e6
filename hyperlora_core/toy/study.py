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

Every setting is a `measure.Condition`, sampled and judged by `measure.measure` (the one batched hook
sampler, proven equal to ComfyUI's KSampler path); the numbers are means over identities of
`measure.Judgements`, which also gives their 95 % intervals.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..eval.intervals import ZERO, Interval, verdict
from ..model import HyperLoRA
from . import files, world
from .measure import BASE, ID, Condition, Heldout, Judgements, Judges, Lora, measure
from .recipe import config_file

Log = Callable[[str], None]
FINETUNE_STEPS = 50
FINETUNE_LR = 1e-3
"""The toy LoRA's factors are ~100x smaller than SDXL's; at the authors' 1e-4, 50 steps barely move them."""


@dataclass
class StudyResult:
    """The study's numbers (`numbers[k]`: the mean over identities of `judgements.values[k]`), the CFG sweep and
    the per-factor rates; `judgements` holds every per-identity value the intervals resample."""

    identities: int
    judgements: Judgements | None = None
    numbers: dict[str, float] = field(default_factory=dict)
    per_factor: dict[str, list[float]] = field(default_factory=dict)
    cfg_rows: list[dict] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def per_identity(self) -> dict[str, np.ndarray]:
        return self.judgements.values if self.judgements is not None else {}

    def interval(self, key: str) -> Interval:
        return self.judgements.interval(key)

    def difference(self, key: str, other: str) -> Interval:
        """`key - other` over the same identities (paired), with its 95 % interval."""
        return self.judgements.difference(key, other)

    def summary_line(self) -> str:
        keys = ("id_match_1ref", "id_match_4ref", "no_lora", "leakage", "no_lora_leakage", "edit_follow",
                "no_lora_edit_follow", "base_match", "finetune_id_match")
        return "toy_eval " + " ".join(f"{k}={self.numbers[k]:.3f}" if k in self.numbers else f"{k}=n/a" for k in keys)


def finetune_loras(toy, hl: HyperLoRA, study: Heldout, count: int, cfg, steps: int = FINETUNE_STEPS,
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
              train_config: str | os.PathLike | None = None, base: str | None = None) -> StudyResult:
    """Every measurement above for the toy world in `folder` with its base `base` ("unet", the default, or "dit")
    and the HyperLoRA `hyperlora` (default the base's own). `finetune_count` 0 skips fine-tuning; `cfgs` empty
    skips the CFG sweep."""
    from .world_loader import ToyWorld

    t0 = time.time()
    log = log or (lambda _m: None)
    toy = ToyWorld.load(folder, hyperlora, base)
    hl = toy.hyperlora
    judges = Judges.load(folder, toy.judge)
    study = Heldout.make(toy.conditioner, identities)
    edits = study.edit_captions
    one, four, base = ID(1), ID(4), BASE()
    conditions = [Condition("no LoRA", seed=seed), Condition("ID-LoRA x1", (one,), seed=seed),
                  Condition("ID-LoRA x4", (four,), seed=seed)]
    if hl.config.has_base:
        conditions += [Condition("ID + Base", (one, base), seed=seed), Condition("Base", (base,), seed=seed),
                       Condition("ID + Base, edit", (one, base), edits, edit_cfg, seed)]
    cfg_values = sorted({edit_cfg, *cfgs})
    conditions += [Condition(f"{label}, edit, CFG {c:g}", loras, edits, c, seed)
                   for c in cfg_values for label, loras in (("no LoRA", ()), ("ID-LoRA x1", (one,)))]
    j = measure(toy, study, conditions, judges, steps=steps, keep_images=("no LoRA", "ID-LoRA x1", "ID + Base"), log=log)
    result = StudyResult(len(study), j)
    n = result.numbers

    def put(key: str, values) -> None:
        n[key] = float(j.put(key, values).mean())

    def rate(values) -> list[float]:
        return list(values.mean(0))

    put("no_lora", j.identity["no LoRA"]), put("no_lora_all6", j.all6("no LoRA"))
    put("no_lora_leakage", j.factor_match("no LoRA"))
    for label, name in (("1ref", "ID-LoRA x1"), ("4ref", "ID-LoRA x4")):
        put(f"id_match_{label}", j.identity[name]), put(f"all6_{label}", j.all6(name))
    put("leakage", j.factor_match("ID-LoRA x1"))
    result.per_factor["leakage"] = rate(j.factor_match("ID-LoRA x1"))
    result.per_factor["no_lora_leakage"] = rate(j.factor_match("no LoRA"))
    result.per_factor["id_match_1ref"] = rate(j.identity["ID-LoRA x1"])
    if hl.config.has_base:
        put("base_match", j.factor_match("ID + Base")), put("id_match_id_base", j.identity["ID + Base"])
        result.per_factor["base_match"] = rate(j.factor_match("ID + Base"))
        put("base_only_base_match", j.factor_match("Base")), put("base_only_id_match", j.identity["Base"])
        edit = "ID + Base, edit"  # "Full" asked to change them
        put("edit_follow_id_base", j.factor_match(edit, "edit")), put("id_match_edit_id_base", j.identity[edit])
        put("leakage_edit_id_base", j.factor_match(edit))
        log(f"ID + Base: base match {n['base_match']:.3f}, ID match {n['id_match_id_base']:.3f}")
    for c in cfg_values:
        row = {"cfg": c}
        for label, name in (("no_lora", "no LoRA"), ("id", "ID-LoRA x1")):
            cond = f"{name}, edit, CFG {c:g}"
            row[f"{label}_edit_follow"] = float(j.factor_match(cond, "edit").mean())
            row[f"{label}_id_match"] = float(j.identity[cond].mean())
            row[f"{label}_leakage"] = float(j.factor_match(cond).mean())
            if c == edit_cfg:
                put({"no_lora": "no_lora_edit_follow", "id": "edit_follow"}[label], j.factor_match(cond, "edit"))
                put({"no_lora": "no_lora_id_match_edit", "id": "id_match_edit"}[label], j.identity[cond])
                result.per_factor[f"{label}_edit_follow"] = rate(j.factor_match(cond, "edit"))
        gain = j.identity[f"ID-LoRA x1, edit, CFG {c:g}"].mean(1) - j.identity[f"no LoRA, edit, CFG {c:g}"].mean(1)
        j.put(f"id_gain_edit_cfg{c:g}", gain)  # per identity, for the ablation's "tolerates CFG" interval
        result.cfg_rows.append(row)
        log(f"CFG {c:g}: {row}")
    if finetune_count:
        from ..train.config import load_config

        cfg = load_config(train_config or files.world_dir(folder) / config_file(toy.base))
        k = min(finetune_count, len(study))
        tuned, seconds = finetune_loras(toy, hl, study, k, cfg, log=log)
        sub = study.head(k)
        jf = measure(toy, sub, [Condition("fine-tuned", (Lora("files", files=tuple(tuned)),), seed=seed),
                                Condition("before", (four,), seed=seed)], judges, steps=steps)
        put("finetune_id_match", jf.identity["fine-tuned"])
        put("finetune_all6", jf.all6("fine-tuned"))
        put("finetune_before_id_match", jf.identity["before"])
        put("finetune_leakage", jf.factor_match("fine-tuned"))
        n["finetune_seconds"] = seconds
        n["finetune_identities"] = k
        log(f"fine-tune ({k} identities): ID match {n['finetune_before_id_match']:.3f} -> "
            f"{n['finetune_id_match']:.3f}, {seconds:.1f} s each")
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
