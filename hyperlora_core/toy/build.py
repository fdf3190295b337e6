"""`make toy-world`: rebuild every toy-world weight file from nothing, stage by stage.

    python -m hyperlora_core.toy.build                      # everything (about 80 minutes of 2-core CPU)
    python -m hyperlora_core.toy.build --stages base,hyper  # only some stages (others are loaded)
    python -m hyperlora_core.toy.build --smoke --out /tmp/w # a few steps of every stage (CI)
    python -m hyperlora_core.toy.build --device cuda        # train on a GPU (the default when there is one)
    python -m hyperlora_core.toy.build --base dit           # the DiT base beside the UNet (its base, hyper, eval)

Stages (`STAGES`, run in this order): judge, base_judge, arcface, clip, vae, base (UNet + caption
encoder), hyper (the HyperLoRA, through `python -m hyperlora_core.train fit` and `export`, the
recipe of `toy/recipe.py`: Base-LoRA warm-up, CLIP-analogue stage, ArcFace-analogue stage), eval. Each stage writes its fp16 file to the output folder and its
minutes and numbers to `toy_world.json`, from which the model card is written.

`--base` picks the base model the base, hyper and eval stages make (`models.TOY_BASES`): `unet` (default, the
tiny SDXL-class UNet) or `dit` (the tiny FLUX-class DiT, its files `toy_dit*.safetensors` beside the UNet's,
its HyperLoRA config `toy_dit_train.yaml`, recorded as `dit_base`, `dit_hyper`, `dit_eval`); the judges,
analogues and VAE are the same for both.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .models import ToyBase

FULL_STEPS = {"judge": 800, "base_judge": 500, "arcface": 800, "clip": 800, "vae": 1000, "base": 3000}
SMOKE_STEPS = {"judge": 3, "base_judge": 3, "arcface": 3, "clip": 3, "vae": 3, "base": 3}


@dataclass
class Build:
    """What the stages share: the options, the data, the output folder and the parts made so far."""

    out: Path
    work: Path
    smoke: bool
    steps: dict[str, int]
    resume_hyper: bool = False
    device: str = "cpu"
    """Where the judge, analogues, VAE and base UNet train; the HyperLoRA trainer picks its own (every visible GPU)."""
    base: ToyBase | None = None
    """The base model the base, hyper and eval stages make (`models.TOY_BASES`; None: the UNet)."""

    def __post_init__(self) -> None:
        from .models import UNET

        self.base = self.base or UNET
    log: Callable[[str], None] = print
    parts: dict = field(default_factory=dict)
    data: object = None

    def part(self, name: str):
        """A frozen part: the one this run trained, else the one in the output folder."""
        if name not in self.parts:
            from . import files
            from .base_judge import BaseJudge
            from .encoders import AttributeJudge, ToyArcFace, ToyCLIP
            from .models import new_vae_model

            make = {"judge": AttributeJudge, "base_judge": BaseJudge, "arcface": ToyArcFace, "clip_vision": ToyCLIP,
                    "vae": new_vae_model}[name]
            self.parts[name] = files.load_module(make(), name, self.out)
        return self.parts[name]

    def save(self, module, part: str, stage: str) -> None:
        from . import files

        files.save_module(module, part, self.out, {"steps": self.steps[stage]})
        self.parts[part] = module


# -- the stages: each trains or measures one thing and returns the numbers to record -----------------
def judge_stage(b: Build) -> dict:
    from . import stages

    judge = stages.train_judge(b.data, b.steps["judge"], log=b.log, device=b.device)
    b.save(judge, "judge", "judge")
    return {"heldout_accuracy": [round(float(a), 4) for a in stages.judge_accuracy(judge, b.data.heldout)]}


def base_judge_stage(b: Build) -> dict:
    from .base_judge import base_judge_accuracy, train_base_judge

    judge = train_base_judge(b.data, b.steps["base_judge"], log=b.log, device=b.device)
    b.save(judge, "base_judge", "base_judge")
    return {"heldout_accuracy": [round(float(a), 4) for a in base_judge_accuracy(judge, b.data.heldout)]}


def arcface_stage(b: Build) -> dict:
    from . import stages

    net = stages.train_arcface(b.data, b.steps["arcface"], log=b.log, device=b.device)
    b.save(net, "arcface", "arcface")
    return {"heldout": stages.arcface_report(net, b.data.heldout)}


def clip_stage(b: Build) -> dict:
    from . import stages

    b.save(stages.train_clip(b.data, b.steps["clip"], log=b.log, device=b.device), "clip_vision", "clip")
    return {}


def vae_stage(b: Build) -> dict:
    from . import stages

    vae = stages.train_vae(b.data, b.steps["vae"], log=b.log, device=b.device)
    psnr, judge_on_rec = stages.vae_report(vae, b.part("judge"), b.data.heldout, count=64 if b.smoke else 512)
    b.save(vae, "vae", "vae")
    return {"heldout_psnr": round(psnr, 2), "judge_on_reconstructions": judge_on_rec}


def base_stage(b: Build) -> dict:
    import numpy as np
    import torch

    from . import stages
    from .encoders import to_tensor

    vae, judge, base_judge, steps = b.part("vae"), b.part("judge"), b.part("base_judge"), b.steps["base"]
    latents = stages.vae_encode(vae, to_tensor(b.data.train.images)) * stages.LATENT_SCALE
    curve: list = []
    started = time.time()

    def evaluate(model, step: int) -> None:
        acc = stages.base_fidelity(model, vae, judge, count=8 if b.smoke else 64, steps=4 if b.smoke else 20,
                                   base_judge=base_judge)
        curve.append({"step": step, "minutes": round((time.time() - started) / 60, 2), "mean": round(float(acc.mean()), 4),
                      "per_attribute": [round(float(a), 3) for a in acc]})
        b.log(f"base fidelity at step {step}: {acc.round(2).tolist()} mean {acc.mean():.3f}")

    labels = np.column_stack([b.data.train.attributes, b.data.train.base_factors])  # each render's full caption
    base = stages.train_base(latents, torch.from_numpy(labels), steps, log=b.log,
                             eval_every=steps if b.smoke else max(1, steps // 5), evaluate=evaluate, device=b.device,
                             base=b.base)
    b.save(base.unet.model.diffusion_model, b.base.parts["model"], "base")
    b.save(base.captions, b.base.parts["captions"], "base")
    return {"fidelity_curve": curve, **({"model": b.base.description} if b.base.prefix else {})}


def hyper_stage(b: Build) -> dict:
    """The toy HyperLoRA through the project's trainer: dataset -> `train fit` -> `train export`, then
    the held-out match of every checkpoint the trainer kept (the curve of the model card).

    `--resume-hyper` keeps an earlier run: the trainer skips finished stages and resumes an interrupted
    one (bit-identical to an uninterrupted run), so the step times are read from its logs."""
    import torch

    from ..model import HyperLoRA
    from ..train.__main__ import main as train_cli
    from ..train.config import load_config
    from ..train.fit import stage_dir
    from ..train.observe import read_losses
    from . import files, recipe, world
    from .backbone import write_toy_dataset

    # the shipped recipe (toy/recipe.py); the smoke run a few steps of each stage
    config_path = (recipe.shipped_config(b.out, b.work, recipe.SMOKE_STAGES, {"train": {"checkpoint": {"every": 2}}},
                                         base=b.base)
                   if b.smoke else recipe.shipped_config(b.out, b.work, base=b.base))
    overrides = ["train.batch.identities=4"] if b.smoke else []
    cfg = load_config(config_path, overrides)
    shards = Path(cfg.data.shards)
    if not (shards / "index.json").is_file():
        t = time.time()
        write_toy_dataset(shards, b.data.train, b.out, base=b.base.name)
        b.log(f"trainer dataset: {len(b.data.train)} renders -> {shards} ({time.time() - t:.0f}s)")
    run = Path(cfg.run_dir)
    resumed = b.resume_hyper and run.exists()  # an earlier run's checkpoints are continued, not merely allowed
    if run.exists() and not b.resume_hyper:
        shutil.rmtree(run)  # a rebuild trains from scratch (the trainer would resume or skip finished stages)
    args = ["--config", str(config_path)] + [a for o in overrides for a in ("--set", o)]
    t = time.time()
    if train_cli(["fit", *args]) != 0:
        raise RuntimeError("hyperlora_core.train fit failed")
    fit_minutes = (time.time() - t) / 60
    single = files.part_path(b.base.parts["hyperlora"], b.out)
    train_cli(["export", *args, "--out", str(b.work / f"{b.base.prefix}export"), "--single", str(single)])
    hl = HyperLoRA.from_pretrained(single)  # the trainer knows no face packs but insightface's: name the toy one
    hl.config = dataclasses.replace(hl.config, face_pack=world.NAME)
    hl.save_single_file(single)

    rows, no_lora = held_out_curve(b, cfg)
    losses, step_seconds = {}, {}
    for stage in cfg.stage_names():
        logged = read_losses(stage_dir(cfg, stage))
        losses[stage] = [(r["step"], round(r["loss"], 5)) for r in logged][:: max(1, cfg.stages[stage].steps // 40)]
        step_seconds[stage] = round(sum(r["seconds"] for r in logged) / max(1, len(logged)), 3)
    return {"recipe": {"steps_base": cfg.stages["base"].steps, "steps_clip": cfg.stages["clip_id"].steps, "steps_id": cfg.stages["arcface_id"].steps,
                       "batch": cfg.train.batch.identities * cfg.train.batch.photos_per_identity,
                       "lr_basis": cfg.train.optimizer.basis_lr, "lr_net": cfg.train.optimizer.lr,
                       "warmup": cfg.train.scheduler.warmup_steps, "t_min": cfg.train.loss.t_min, "w_distill": 0.0,
                       "seed": cfg.seed, "decay_id": cfg.stages["arcface_id"].decay_steps},
            "seconds_per_step": step_seconds, "threads": torch.get_num_threads(), "resumed": resumed,
            "trainer": f"python -m hyperlora_core.train fit / export (config models/toy/{config_path.name})",
            "fit_minutes": round(fit_minutes, 2), "no_lora_match": no_lora, "match_curve": rows, "losses": losses,
            "file_bytes": single.stat().st_size, "config": json.loads(json.dumps(cfg.source))}


def held_out_curve(b: Build, cfg) -> tuple[list[dict], float]:
    """Held-out match (1 and 4 reference photos) of every checkpoint and stage result of the run,
    and the no-LoRA match on the same noise; through `measure.measure` on one sampler."""
    from ..model import HyperLoRA
    from ..train.checkpointing import list_checkpoints, load_model_weights
    from ..train.config import STAGE
    from ..train.fit import final_path, stage_dir
    from ..train.objective import HyperStep
    from .measure import ID, Condition, Heldout, HookedSampler, Judges, measure
    from .world_loader import ToyWorld

    toy = ToyWorld.load(b.out, base=b.base.name)
    held = Heldout.make(toy.conditioner, count=8 if b.smoke else 64)
    judges = Judges(toy.judge)  # identity only
    rows, offset, t0 = [], 0, time.time()
    with HookedSampler(toy, len(held), steps=4 if b.smoke else 20, batch=64) as sampler:
        no_lora = round(measure(toy, held, [Condition("no LoRA")], judges, sampler=sampler).mean("no LoRA"), 4)
        for stage in cfg.stage_names():
            if not STAGE[stage].id_lora:  # the Base-LoRA warm-up makes no ID-LoRA: nothing to match yet
                offset += cfg.stages[stage].steps
                continue
            face = STAGE[stage].face_embedding
            final = HyperLoRA.from_pretrained(final_path(cfg, stage)).eval()
            snapshots = [(int(p.name.split("-")[1]), p) for p in list_checkpoints(stage_dir(cfg, stage) / "checkpoints")]
            for step, path in [*snapshots, (cfg.stages[stage].steps, None)]:
                hl = final
                if path is not None:  # a checkpoint: the final result's architecture with its weights
                    hl = HyperLoRA(final.config).eval()
                    load_model_weights(path, HyperStep(hl))
                row = {"step": offset + step, "stage": "id+clip" if face else "clip",
                       "minutes": round((time.time() - t0) / 60, 2)}
                j = measure(toy, held, [Condition(f"{refs}ref", (ID(refs, face=face),)) for refs in (1, 4)], judges,
                            hl=hl, sampler=sampler)
                for refs in (1, 4):
                    row[f"match_{refs}ref"] = round(j.mean(f"{refs}ref"), 4)
                    row[f"all6_{refs}ref"] = round(float(j.all6(f"{refs}ref").mean()), 4)
                rows.append(row)
                b.log(f"held-out match at step {row['step']}: {row} (no LoRA {no_lora:.3f})")
            offset += cfg.stages[stage].steps
    return rows, no_lora


def eval_stage(b: Build) -> dict:
    """The held-out table (with 95 % intervals), its grid and the strength sweep: one `measure.measure` run."""
    from ..eval.report import plot_strength
    from .card import FIGURES
    from .measure import strength_rows, strength_sweep, strength_table, summary_line
    from .world_loader import ToyWorld

    figures = b.out / FIGURES
    figures.mkdir(parents=True, exist_ok=True)
    count, steps = (2, 4) if b.smoke else (64, 20)
    strengths = (0.5, 1.0) if b.smoke else (0.25, 0.5, 0.75, 1.0, 1.25)
    toy = ToyWorld.load(b.out, base=b.base.name)
    has_base = toy.hyperlora.config.has_base
    j = strength_sweep(toy, count, strengths, steps=steps, folder=b.out, log=b.log)
    grid = j.grid(figures / f"{b.base.prefix}heldout_grid.png")
    table = j.table(["no LoRA", "ID-LoRA x1", "ID-LoRA x4", *(["ID + Base"] if has_base else [])])
    line = summary_line(j.mean("ID-LoRA x1"), j.mean("no LoRA"))
    b.log(table)
    b.log(line)
    plot = plot_strength(strength_rows(j, strengths, has_base), figures / f"{b.base.prefix}metrics_vs_strength.png",
                         f"toy world ({b.base.description}), held-out identities")
    return {"identities": count, "table": table, "summary_line": line, "with_lora_1ref": j.mean("ID-LoRA x1"),
            "with_lora_4ref": j.mean("ID-LoRA x4"), "without": j.mean("no LoRA"),
            "grid": grid.relative_to(b.out).as_posix(), "strength_table": strength_table(j, strengths, has_base),
            "strength_plot": plot.relative_to(b.out).as_posix() if plot else None}


def trainer_device() -> str:
    """Where `python -m hyperlora_core.train fit` trains in this process: the first visible GPU, else the CPU."""
    import torch

    from .stages import device_name

    return device_name("cuda" if torch.cuda.is_available() else "cpu")


STAGES: dict[str, Callable[[Build], dict]] = {
    "judge": judge_stage, "base_judge": base_judge_stage, "arcface": arcface_stage, "clip": clip_stage,
    "vae": vae_stage, "base": base_stage, "hyper": hyper_stage, "eval": eval_stage,
}
"""Stage name -> what it does, in the order they run; `eval` measures, the others train."""
BASE_STAGES = ("base", "hyper", "eval")
"""The stages that make (or measure) one base model's parts (`--base`); the others are shared by every base."""


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stages", default=None,
                        help=f"comma-separated subset of {','.join(STAGES)} (default: all; with a --base other than unet "
                             f"only {','.join(BASE_STAGES)}, so the shared parts the UNet was trained with stay)")
    parser.add_argument("--out", default=None, help="output folder (default models/toy)")
    parser.add_argument("--smoke", action="store_true", help="a few steps per stage on a small data set")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch threads (0: torch's default; 1 is faster on a machine shared with other jobs)")
    parser.add_argument("--base-steps", type=int, default=None)
    parser.add_argument("--base", default="unet",
                        help="the base model the base, hyper and eval stages make: unet (tiny SDXL-class UNet) or dit "
                             "(tiny FLUX-class DiT, files toy_dit*.safetensors beside the UNet's; recorded as dit_base, "
                             "dit_hyper, dit_eval). The other stages are shared by both")
    parser.add_argument("--device", default=None,
                        help="where the judge, analogues, VAE and base UNet train: cpu, cuda, cuda:1 ... (default: the "
                             "first GPU if torch sees one, else cpu). The HyperLoRA stage runs the trainer, which uses "
                             "every visible GPU: hide them with CUDA_VISIBLE_DEVICES= to keep it on the CPU")
    parser.add_argument("--resume-hyper", action="store_true",
                        help="keep the trainer's run folder: finished stages are skipped and an interrupted one resumes "
                             "from its last checkpoint (default: the hyper stage trains from scratch)")
    parser.add_argument("--work", default=None, help="scratch folder for the trainer's dataset and run "
                                                     "(default output/toy_build)")
    args = parser.parse_args(argv)
    default = STAGES if args.base == "unet" else BASE_STAGES
    wanted = [s.strip() for s in (args.stages or ",".join(default)).split(",") if s.strip()]
    unknown = sorted(set(wanted) - set(STAGES))
    if unknown:
        parser.error(f"unknown stage(s) {unknown}; choose from {', '.join(STAGES)}")
    from ..comfy_bridge.boot import boot_comfy

    boot_comfy()
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    try:
        torch.empty(0, device=device)
    except (RuntimeError, AssertionError) as e:
        parser.error(f"--device {device}: torch cannot use it here ({str(e).splitlines()[0]}); "
                     "pick cpu, or a GPU torch sees (torch.cuda.is_available()).")
    from ..errors import HyperLoRAError
    from . import files, stages
    from .card import write_card
    from .models import toy_base

    try:
        base = toy_base(args.base)
    except HyperLoRAError as e:
        parser.error(f"--base: {e}")

    out = files.world_dir(args.out)
    steps = dict(SMOKE_STEPS if args.smoke else FULL_STEPS)
    if args.base_steps:
        steps["base"] = args.base_steps
    work = Path(args.work) if args.work else (out / "_work" if args.smoke else files.ROOT / "output" / "toy_build")

    def log(msg: str) -> None:
        print(msg, flush=True)

    b = Build(out=out, work=work, smoke=args.smoke, steps=steps, resume_hyper=args.resume_hyper, device=device, log=log,
              base=base)
    mine: dict = {"stages": {}}  # what this process measured; other build processes may fill other stages

    def record() -> dict:
        stats = files.read_stats(out)  # re-read: a parallel build process may have written meanwhile
        stats = {**stats, **{k: v for k, v in mine.items() if k != "stages"},
                 "stages": {**stats.get("stages", {}), **mine["stages"]}}
        stats["total_minutes"] = round(sum(s["minutes"] for s in stats["stages"].values()), 2)
        files.write_stats(stats, out)
        return stats

    t0 = time.time()
    b.data = stages.Data.make(identities_limit=48 if args.smoke else None)
    mine["data"] = {"train_images": len(b.data.train), "heldout_images": len(b.data.heldout), "seconds": time.time() - t0}
    log(f"data: {len(b.data.train)} train renders, {len(b.data.heldout)} held-out renders ({time.time() - t0:.1f}s)")
    for name in (s for s in STAGES if s in wanted):
        started, cpu = time.time(), time.process_time()
        numbers = STAGES[name](b)
        minutes = round((time.time() - started) / 60, 2)
        key = f"{b.base.prefix}{name}" if name in BASE_STAGES else name  # a DiT's base, hyper, eval: dit_base ...
        if name == "eval":
            mine[key] = {**numbers, "minutes": minutes}
        else:
            trained_on = trainer_device() if name == "hyper" else stages.device_name(device)
            mine["stages"][key] = {"minutes": minutes, "cpu_minutes": round((time.process_time() - cpu) / 60, 2),
                                   "threads": torch.get_num_threads(), "device": trained_on, **numbers}
            if name in steps:
                mine["stages"][key]["steps"] = steps[name]
            log(f"== {key}: {mine['stages'][key]}")
        record()
    stats = record()
    log(f"model card: {write_card(out)}")
    return stats


if __name__ == "__main__":
    main()
