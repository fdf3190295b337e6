"""`make toy-world`: rebuild every toy-world weight file from nothing, stage by stage.

    python -m hyperlora_core.toy.build                      # everything (about an hour of 2-core CPU)
    python -m hyperlora_core.toy.build --stages base,hyper  # only some stages (others are loaded)
    python -m hyperlora_core.toy.build --smoke --out /tmp/w # a few steps of every stage (CI)

Stages: judge, arcface, clip, vae, base (UNet + caption encoder), hyper (HyperLoRA: CLIP-analogue
stage, then ID-analogue stage), eval. Each stage writes its fp16 file to the output folder and
its minutes and numbers to `toy_world.json`, so the model card can be regenerated from it.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

STAGES = ("judge", "base_judge", "arcface", "clip", "vae", "base", "hyper", "eval")

FULL_STEPS = {"judge": 800, "base_judge": 500, "arcface": 800, "clip": 800, "vae": 1000, "base": 1500}
SMOKE_STEPS = {"judge": 3, "base_judge": 3, "arcface": 3, "clip": 3, "vae": 3, "base": 3}


def _boot() -> None:
    try:
        from scripts.comfy_env import boot_comfy
    except ImportError:  # installed without the repository's scripts/: ComfyUI must be importable
        return
    boot_comfy()


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stages", default=",".join(STAGES), help=f"comma-separated subset of {','.join(STAGES)}")
    parser.add_argument("--out", default=None, help="output folder (default models/toy)")
    parser.add_argument("--smoke", action="store_true", help="a few steps per stage on a small data set")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch threads (0: torch's default; 1 is faster on a machine shared with other jobs)")
    parser.add_argument("--base-steps", type=int, default=None)
    parser.add_argument("--hyper-trainer", choices=("train", "toy-loop"), default="train",
                        help="train: `python -m hyperlora_core.train fit/export` (default); toy-loop: the toy "
                             "world's own reference loop (hyperlora_core.toy.hyper.train_hyperlora)")
    parser.add_argument("--resume-hyper", action="store_true",
                        help="keep the trainer's run folder: finished stages are skipped and an interrupted one resumes "
                             "from its last checkpoint (default: the hyper stage trains from scratch)")
    parser.add_argument("--work", default=None, help="scratch folder for the trainer's dataset and run "
                                                     "(default output/toy_build)")
    args = parser.parse_args(argv)
    _boot()
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from . import files, stages

    stages_wanted = [s.strip() for s in args.stages.split(",") if s.strip()]
    unknown = sorted(set(stages_wanted) - set(STAGES))
    if unknown:
        parser.error(f"unknown stage(s) {unknown}; choose from {', '.join(STAGES)}")
    out = files.world_dir(args.out)
    steps = dict(SMOKE_STEPS if args.smoke else FULL_STEPS)
    if args.base_steps:
        steps["base"] = args.base_steps
    stats = files.read_stats(out)
    stats.setdefault("stages", {})

    def log(msg: str) -> None:
        print(msg, flush=True)

    t0 = time.time()
    data = stages.Data.make(identities_limit=48 if args.smoke else None)
    stats["data"] = {"train_images": len(data.train), "heldout_images": len(data.heldout), "seconds": time.time() - t0}
    log(f"data: {len(data.train)} train renders, {len(data.heldout)} held-out renders ({time.time() - t0:.1f}s)")

    cpu_started: dict[float, float] = {}

    def clock() -> float:
        now = time.time()
        cpu_started[now] = time.process_time()
        return now

    def record(stage: str, started: float, **numbers) -> None:
        cpu = time.process_time() - cpu_started.get(started, time.process_time())
        entry = {"minutes": round((time.time() - started) / 60, 2), "cpu_minutes": round(cpu / 60, 2),
                 "steps": steps.get(stage), "threads": torch.get_num_threads(), **numbers}
        # re-read first: another build process may be training other stages into the same folder
        stats.update({k: v for k, v in files.read_stats(out).items() if k != "stages"})
        stats["stages"] = {**files.read_stats(out).get("stages", {}), **stats["stages"], stage: entry}
        files.write_stats(stats, out)
        log(f"== {stage}: {entry}")

    from .encoders import AttributeJudge, ToyArcFace, ToyCLIP

    if "judge" in stages_wanted:
        started = clock()
        judge = stages.train_judge(data, steps["judge"], log=log)
        acc = stages.judge_accuracy(judge, data.heldout)
        files.save_module(judge, "judge", out, {"steps": steps["judge"]})
        record("judge", started, heldout_accuracy=[round(float(a), 4) for a in acc])
    else:
        judge = None  # read when a later stage needs it: a parallel build process may still be training it

    from .base_judge import BaseJudge, base_judge_accuracy, train_base_judge

    if "base_judge" in stages_wanted:
        started = clock()
        base_judge = train_base_judge(data, steps["base_judge"], log=log)
        acc = base_judge_accuracy(base_judge, data.heldout)
        files.save_module(base_judge, "base_judge", out, {"steps": steps["base_judge"]})
        record("base_judge", started, heldout_accuracy=[round(float(a), 4) for a in acc])
    else:
        base_judge = None

    if "arcface" in stages_wanted:
        started = clock()
        arc = stages.train_arcface(data, steps["arcface"], log=log)
        report = stages.arcface_report(arc, data.heldout)
        files.save_module(arc, "arcface", out, {"steps": steps["arcface"]})
        record("arcface", started, heldout=report)
    else:
        arc = None

    if "clip" in stages_wanted:
        started = clock()
        clip = stages.train_clip(data, steps["clip"], log=log)
        files.save_module(clip, "clip_vision", out, {"steps": steps["clip"]})
        record("clip", started)
    else:
        clip = None

    from .bridge import new_vae_model

    if "vae" in stages_wanted:
        started = clock()
        vae = stages.train_vae(data, steps["vae"], log=log)
        judge = judge or files.load_module(AttributeJudge(), "judge", out)
        psnr, judge_on_rec = stages.vae_report(vae, judge, data.heldout, count=64 if args.smoke else 512)
        files.save_module(vae, "vae", out, {"steps": steps["vae"]})
        record("vae", started, heldout_psnr=round(psnr, 2), judge_on_reconstructions=judge_on_rec)
    else:
        vae = new_vae_model()
        files.load_module(vae, "vae", out)

    if "base" in stages_wanted:
        started = clock()
        judge = judge or files.load_module(AttributeJudge(), "judge", out)
        base_judge = base_judge or files.load_module(BaseJudge(), "base_judge", out)
        latents = stages.vae_encode(vae, stages.to_tensor(data.train.images)) * stages.LATENT_SCALE
        curve: list = []

        def evaluate(model, step: int) -> None:
            acc = stages.base_fidelity(model, vae, judge, count=8 if args.smoke else 64, steps=4 if args.smoke else 20,
                                       base_judge=base_judge)
            curve.append({"step": step, "minutes": round((time.time() - started) / 60, 2), "mean": round(float(acc.mean()), 4),
                          "per_attribute": [round(float(a), 3) for a in acc]})
            log(f"base fidelity at step {step}: {acc.round(2).tolist()} mean {acc.mean():.3f}")

        every = steps["base"] if args.smoke else max(1, steps["base"] // 5)
        labels = np.column_stack([data.train.attributes, data.train.base_factors])
        base = stages.train_base(latents, torch.from_numpy(labels), steps["base"], log=log,
                                 eval_every=every, evaluate=evaluate)
        files.save_module(base.unet.model.diffusion_model, "unet", out, {"steps": steps["base"]})
        files.save_module(base.captions, "caption_encoder", out, {"steps": steps["base"]})
        record("base", started, fidelity_curve=curve)

    if "hyper" in stages_wanted:
        started = clock()
        judge = judge or files.load_module(AttributeJudge(), "judge", out)
        arc = arc or files.load_module(ToyArcFace(), "arcface", out)
        clip = clip or files.load_module(ToyCLIP(), "clip_vision", out)
        work = Path(args.work) if args.work else (Path(out) / "_work" if args.smoke else files.ROOT / "output" / "toy_build")
        if args.hyper_trainer == "train":
            stats["stages"]["hyper"] = run_trainer_stage(data, judge, arc, clip, vae, out, work, args.smoke, log,
                                                           resume=args.resume_hyper)
        else:
            stats["stages"]["hyper"] = run_hyper_stage(data, judge, arc, clip, vae, out, args.smoke, log)
        stats["stages"]["hyper"]["minutes"] = round((time.time() - started) / 60, 2)
        stats["stages"]["hyper"]["cpu_minutes"] = round((time.process_time() - cpu_started[started]) / 60, 2)
        files.write_stats(stats, out)
        log(f"== hyper: {stats['stages']['hyper']}")

    stats["total_minutes"] = round(sum(s["minutes"] for s in stats["stages"].values()), 2)
    files.write_stats(stats, out)
    if "eval" in stages_wanted:
        started = clock()
        stats["eval"] = run_eval_stage(out, args.smoke, log)
        stats["eval"]["minutes"] = round((time.time() - started) / 60, 2)
        files.write_stats(stats, out)
    from .card import write_card

    log(f"model card: {write_card(out)}")
    return stats


class _Curve:
    """Held-out match of HyperLoRA snapshots (1 and 4 reference photos), against the no-LoRA samples."""

    def __init__(self, unet, captions, vae, judge, cond, smoke: bool, log) -> None:
        from . import hyper

        self.unet, self.captions, self.vae, self.judge, self.log = unet, captions, vae, judge, log
        self.held = hyper.HeldoutSet.make(cond, count=8 if smoke else 64)
        self.steps = 4 if smoke else 20
        base = hyper.generate_heldout(None, None, unet, captions, vae, self.held, steps=self.steps)
        self.no_lora = hyper.match(judge, base, self.held.attributes)
        self.rows: list[dict] = []
        self.t0 = time.time()

    def __call__(self, hl, hooks, step: int, use_id: bool, minutes: float | None = None) -> dict:
        from . import hyper

        own = hooks is None
        hooks = hooks or hyper.LoRAHooks(self.unet, hl.config)
        row = {"step": step, "stage": "id+clip" if use_id else "clip",
               "minutes": round(minutes if minutes is not None else (time.time() - self.t0) / 60, 2)}
        try:
            for refs in (1, 4):
                imgs = hyper.generate_heldout(hl, hooks, self.unet, self.captions, self.vae, self.held, refs=refs,
                                              use_id=use_id, steps=self.steps)
                m = hyper.match(self.judge, imgs, self.held.attributes)
                row[f"match_{refs}ref"] = round(float(m.mean()), 4)
                row[f"all6_{refs}ref"] = round(float(m.all(1).mean()), 4)
        finally:
            if own:
                hooks.remove()
        self.rows.append(row)
        self.log(f"held-out match at step {step}: {row} (no LoRA {self.no_lora.mean():.3f})")
        return row


def _frozen_world(out):
    from . import files
    from .bridge import wrap_unet
    from .caption import CaptionEncoder

    unet = wrap_unet(files.load_part("unet", out))
    captions = files.load_module(CaptionEncoder(), "caption_encoder", out)
    for p in captions.parameters():
        p.requires_grad_(False)
    return unet, captions


def run_trainer_stage(data, judge, arc, clip, vae, out, work: Path, smoke: bool, log, resume: bool = False) -> dict:
    """The toy HyperLoRA through the project's trainer: dataset -> `train fit` -> `train export`,
    then the held-out match of every checkpoint it kept (the curve of the model card).

    `resume` keeps an earlier run: the trainer skips finished stages and resumes an interrupted one
    (bit-identical to an uninterrupted run), so the step times are read from its logs."""
    import dataclasses
    import json
    import shutil

    import torch

    from ..model import HyperLoRA
    from ..train.__main__ import main as train_cli
    from ..train.config import load_config
    from ..train.fit import final_path, stage_dir
    from ..train.observe import read_losses
    from . import files, hyper
    from .trainer import checkpoint_hyperlora, write_toy_dataset, write_train_config

    # the full recipe is write_train_config's defaults; the smoke run a few steps of each stage
    config_path = (write_train_config(out, work, steps_clip=2, steps_id=3, every=2, decay_id=1) if smoke
                   else write_train_config(out, work))
    overrides = ["train.batch.identities=4"] if smoke else []
    cfg = load_config(config_path, overrides)
    steps_clip, steps_id = cfg.stages["clip_id"].steps, cfg.stages["arcface_id"].steps
    shards = Path(cfg.data.shards)
    if not (shards / "index.json").is_file():
        t = time.time()
        write_toy_dataset(shards, data.train, out)
        log(f"trainer dataset: {len(data.train)} renders -> {shards} ({time.time() - t:.0f}s)")
    run = Path(cfg.run_dir)
    if run.exists() and not resume:
        shutil.rmtree(run)  # a rebuild trains from scratch (the trainer would resume or skip finished stages)
    args = ["--config", str(config_path)] + [a for o in overrides for a in ("--set", o)]
    t = time.time()
    if train_cli(["fit", *args]) != 0:
        raise RuntimeError("hyperlora_core.train fit failed")
    fit_minutes = (time.time() - t) / 60
    single = files.part_path("hyperlora", out)
    train_cli(["export", *args, "--out", str(work / "export"), "--single", str(single)])
    hl = HyperLoRA.from_pretrained(single)  # the trainer knows no face packs but insightface's: name the toy one
    hl.config = dataclasses.replace(hl.config, face_pack=hyper.FACE_PACK)
    hl.save_single_file(single)

    unet, captions = _frozen_world(out)
    curve = _Curve(unet, captions, vae, judge, hyper.Conditioner(arc, clip), smoke, log)
    losses, step_seconds = {}, {}
    offset = 0
    for stage in cfg.stage_names():
        folder = stage_dir(cfg, stage)
        steps = cfg.stages[stage].steps
        points = sorted((int(p.name.split("-")[1]), p) for p in (folder / "checkpoints").glob("step-*"))
        for step, path in points:
            curve(checkpoint_hyperlora(path, cfg, stage), None, offset + step, stage == "arcface_id")
        curve(HyperLoRA.from_pretrained(final_path(cfg, stage)).eval(), None, offset + steps, stage == "arcface_id")
        rows = read_losses(folder)
        losses[stage] = [(r["step"], round(r["loss"], 5)) for r in rows][:: max(1, steps // 40)]
        step_seconds[stage] = round(sum(r["seconds"] for r in rows) / max(1, len(rows)), 3)
        offset += steps
    return {"recipe": {"steps_clip": steps_clip, "steps_id": steps_id, "batch": cfg.train.batch.identities *
                       cfg.train.batch.photos_per_identity, "lr_basis": cfg.train.optimizer.basis_lr,
                       "lr_net": cfg.train.optimizer.lr, "warmup": cfg.train.scheduler.warmup_steps,
                       "t_min": cfg.train.loss.t_min, "w_distill": 0.0, "seed": cfg.seed,
                       "decay_id": cfg.stages["arcface_id"].decay_steps},
            "seconds_per_step": step_seconds, "threads": torch.get_num_threads(), "resumed": resume,
            "trainer": "python -m hyperlora_core.train fit / export (config models/toy/toy_train.yaml)",
            "fit_minutes": round(fit_minutes, 2), "no_lora_match": round(float(curve.no_lora.mean()), 4),
            "match_curve": curve.rows, "losses": losses, "file_bytes": single.stat().st_size,
            "config": json.loads(json.dumps(cfg.source))}


def run_hyper_stage(data, judge, arc, clip, vae, out, smoke: bool, log) -> dict:
    """Train the toy HyperLoRA on the frozen world and save it as a single-file checkpoint."""
    import torch

    from . import files, hyper, stages
    from .bridge import wrap_unet
    from .caption import CaptionEncoder

    unet = wrap_unet(files.load_part("unet", out))
    captions = files.load_module(CaptionEncoder(), "caption_encoder", out)
    for p in captions.parameters():
        p.requires_grad_(False)
    cond = hyper.Conditioner(arc, clip)
    x = stages.to_tensor(data.train.images)
    latents = stages.vae_encode(vae, x) * stages.LATENT_SCALE
    tok, emb = cond(x)
    tok_f, emb_f = cond(x.flip(-1))
    clip_tokens = torch.stack([tok, tok_f]).half()
    id_embeds = torch.stack([emb, emb_f])
    del tok, tok_f, emb, emb_f
    held = hyper.HeldoutSet.make(cond, count=8 if smoke else 64)
    recipe = hyper.HyperRecipe(steps_clip=2, steps_id=3) if smoke else hyper.HyperRecipe()
    sample_steps = 4 if smoke else 20
    base_images = hyper.generate_heldout(None, None, unet, captions, vae, held, steps=sample_steps)
    no_lora = hyper.match(judge, base_images, held.attributes)
    curve: list = []
    t0 = time.time()

    def evaluate(hl, hooks, step: int, use_id: bool) -> None:
        row = {"step": step, "minutes": round((time.time() - t0) / 60, 2), "stage": "id+clip" if use_id else "clip"}
        for refs in (1, 4):
            imgs = hyper.generate_heldout(hl, hooks, unet, captions, vae, held, refs=refs, use_id=use_id,
                                          steps=sample_steps)
            m = hyper.match(judge, imgs, held.attributes)
            row[f"match_{refs}ref"] = round(float(m.mean()), 4)
            row[f"all6_{refs}ref"] = round(float(m.all(1).mean()), 4)
        curve.append(row)
        log(f"held-out match at step {step}: {row} (no LoRA {no_lora.mean():.3f})")

    hl = hyper.new_hyperlora(hyper.toy_config(unet))
    every = recipe.steps_clip + recipe.steps_id if smoke else 125
    hyper.train_hyperlora(hl, unet, captions, latents, torch.from_numpy(data.train.identity),
                          torch.from_numpy(data.train.attributes), clip_tokens, id_embeds, recipe, log=log,
                          evaluate=evaluate, eval_every=every)
    path = files.part_path("hyperlora", out)
    hl.eval().save_single_file(path)
    from dataclasses import asdict

    return {"recipe": asdict(recipe), "no_lora_match": round(float(no_lora.mean()), 4), "match_curve": curve,
            "trainer": "hyperlora_core.toy.hyper.train_hyperlora", "file_bytes": path.stat().st_size}


def run_eval_stage(out, smoke: bool, log) -> dict:
    """The ComfyUI-path evaluation (table, grid) and a strength sweep with the metric harness."""
    from ..eval.backends import ToyBackend
    from ..eval.harness import default_methods, evaluate, summarise
    from ..eval.report import markdown_table, plot_strength
    from .card import FIGURES
    from .evaluate import ToyWorld
    from .evaluate import evaluate as toy_evaluate

    figures = out / FIGURES
    figures.mkdir(parents=True, exist_ok=True)
    toy = ToyWorld.load(out)
    count = 2 if smoke else 64
    steps = 4 if smoke else 20
    result = toy_evaluate(toy, identities=count, steps=steps, log=log)
    grid = result.save_grid(figures / "heldout_grid.png")
    log(result.table())
    log(result.summary_line())
    backend = ToyBackend(out, steps=steps)
    persons = ToyBackend.heldout_persons(2 if smoke else 16)
    strengths = (0.5, 1.0) if smoke else (0.25, 0.5, 0.75, 1.0, 1.25)
    records = evaluate(backend, persons, [""], default_methods(strengths, backend.has_base, refs=(1, 4)))
    rows = summarise(records)
    plot = plot_strength(rows, figures / "metrics_vs_strength.png", "toy world, held-out identities")
    table = markdown_table(rows, [f"{len(persons)} held-out identities, empty caption, CFG 1; "
                                  "ArcFace = the toy ArcFace analogue (the conditioning face model); dlib and CLIP are "
                                  "not meaningful on 32-px cartoons and are left out here"])
    return {"identities": count, "table": result.table(), "summary_line": result.summary_line(),
            "with_lora_1ref": result.with_lora, "with_lora_4ref": result.row("ID-LoRA", 4).mean,
            "without": result.without, "grid": grid.relative_to(out).as_posix(), "strength_table": table,
            "strength_plot": plot.relative_to(out).as_posix() if plot else None}


if __name__ == "__main__":
    main()
