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
import os
import time
from pathlib import Path

STAGES = ("judge", "arcface", "clip", "vae", "base", "hyper", "eval")

FULL_STEPS = {"judge": 800, "arcface": 800, "clip": 800, "vae": 800, "base": 1500}
SMOKE_STEPS = {"judge": 3, "arcface": 3, "clip": 3, "vae": 3, "base": 3}


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
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: all cores)")
    parser.add_argument("--base-steps", type=int, default=None)
    args = parser.parse_args(argv)
    _boot()
    import torch

    torch.set_num_threads(args.threads or os.cpu_count() or 1)
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

    def record(stage: str, started: float, **numbers) -> None:
        stats["stages"][stage] = {"minutes": round((time.time() - started) / 60, 2), "steps": steps.get(stage),
                                  "threads": torch.get_num_threads(), **numbers}
        files.write_stats(stats, out)
        log(f"== {stage}: {stats['stages'][stage]}")

    from .encoders import AttributeJudge, ToyArcFace, ToyCLIP

    if "judge" in stages_wanted:
        started = time.time()
        judge = stages.train_judge(data, steps["judge"], log=log)
        acc = stages.judge_accuracy(judge, data.heldout)
        files.save_module(judge, "judge", out, {"steps": steps["judge"]})
        record("judge", started, heldout_accuracy=[round(float(a), 4) for a in acc])
    else:
        judge = files.load_module(AttributeJudge(), "judge", out)

    if "arcface" in stages_wanted:
        started = time.time()
        arc = stages.train_arcface(data, steps["arcface"], log=log)
        report = stages.arcface_report(arc, data.heldout)
        files.save_module(arc, "arcface", out, {"steps": steps["arcface"]})
        record("arcface", started, heldout=report)
    else:
        arc = files.load_module(ToyArcFace(), "arcface", out)

    if "clip" in stages_wanted:
        started = time.time()
        clip = stages.train_clip(data, steps["clip"], log=log)
        files.save_module(clip, "clip_vision", out, {"steps": steps["clip"]})
        record("clip", started)
    else:
        clip = files.load_module(ToyCLIP(), "clip_vision", out)

    from .bridge import new_vae_model

    if "vae" in stages_wanted:
        started = time.time()
        vae = stages.train_vae(data, steps["vae"], log=log)
        psnr, judge_on_rec = stages.vae_report(vae, judge, data.heldout)
        files.save_module(vae, "vae", out, {"steps": steps["vae"]})
        record("vae", started, heldout_psnr=round(psnr, 2), judge_on_reconstructions=judge_on_rec)
    else:
        vae = new_vae_model()
        files.load_module(vae, "vae", out)

    if "base" in stages_wanted:
        started = time.time()
        latents = stages.vae_encode(vae, stages.to_tensor(data.train.images)) * stages.LATENT_SCALE
        curve: list = []

        def evaluate(model, step: int) -> None:
            acc = stages.base_fidelity(model, vae, judge, count=16 if args.smoke else 64)
            curve.append({"step": step, "minutes": round((time.time() - started) / 60, 2), "mean": round(float(acc.mean()), 4),
                          "per_attribute": [round(float(a), 3) for a in acc]})
            log(f"base fidelity at step {step}: {acc.round(2).tolist()} mean {acc.mean():.3f}")

        every = max(1, steps["base"] // 5)
        base = stages.train_base(latents, torch.from_numpy(data.train.attributes), steps["base"], log=log,
                                 eval_every=every, evaluate=evaluate)
        files.save_module(base.unet.model.diffusion_model, "unet", out, {"steps": steps["base"]})
        files.save_module(base.captions, "caption_encoder", out, {"steps": steps["base"]})
        record("base", started, fidelity_curve=curve)

    stats["total_minutes"] = round(sum(s["minutes"] for s in stats["stages"].values()), 2)
    files.write_stats(stats, out)
    return stats


if __name__ == "__main__":
    main()
