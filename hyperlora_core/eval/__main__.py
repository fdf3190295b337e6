"""`python -m hyperlora_core.eval`: metrics per method (no LoRA, ID-LoRA at several strengths,
ID+Base) as a Markdown/CSV table and metric-vs-strength plots."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

DEFAULT_PROMPTS = ("a photo of a person", "a portrait photo of a person in a garden, soft light",
                   "a person wearing a suit, studio photo")


def _floats(text: str) -> tuple[float, ...]:
    return tuple(float(v) for v in text.split(",") if v.strip())


def _read_prompts(path: str | None, default: tuple[str, ...]) -> list[str]:
    if not path:
        return list(default)
    lines = [ln.strip() for ln in Path(path).read_text(encoding="utf-8").splitlines()]
    return [ln for ln in lines if ln and not ln.startswith("#")]


def _read_persons(folder: str):
    """A folder of photos (one person), or a folder of sub-folders (one person each)."""
    import numpy as np
    from PIL import Image

    from ..errors import HyperLoRAError
    from .harness import Person

    root = Path(folder)
    exts = {".png", ".jpg", ".jpeg", ".webp", ".bmp"}
    groups = [d for d in sorted(root.iterdir()) if d.is_dir()] if root.is_dir() else []
    groups = groups or [root]
    persons = []
    for g in groups:
        photos = [np.asarray(Image.open(p).convert("RGB")) for p in sorted(g.iterdir()) if p.suffix.lower() in exts]
        if photos:
            persons.append(Person(g.name, photos))
    if not persons:
        raise HyperLoRAError(f"{folder}: no photos (.png/.jpg/.webp) found; give a folder of one person's photos "
                             "or a folder of per-person sub-folders.")
    return persons


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--toy", action="store_true", help="evaluate the toy world (no real weights needed)")
    p.add_argument("--toy-world", default=None, help="toy world folder (default models/toy)")
    p.add_argument("--base", default=None,
                   help="toy: the world's base model, unet (default: the tiny SDXL-class UNet) or dit (the tiny "
                        "FLUX-class DiT), each with its own HyperLoRA")
    p.add_argument("--identities", type=int, default=None,
                   help="toy: held-out identities (default 16; 128 with --summary)")
    p.add_argument("--summary", action="store_true",
                   help="toy: the paper's measurements (ID fidelity, leakage, editability, Base fidelity, fine-tune, "
                        "CFG) for the toy HyperLoRA; the last line is `toy_eval id_match_1ref=... finetune_id_match=...`")
    p.add_argument("--finetune", type=int, default=32, help="toy --summary: identities fine-tuned (50 steps each)")
    p.add_argument("--record", action="store_true",
                   help="toy --summary: also write the measurements into the world's toy_world.json and MODEL_CARD.md")
    p.add_argument("--ablation-work", default=None,
                   help="toy --summary: also write them as the `shipped` row of the ablation table in this folder "
                        "(python -m hyperlora_core.toy.ablation --work)")
    p.add_argument("--checkpoint", help="SDXL checkpoint (.safetensors)")
    p.add_argument("--hyperlora", help="HyperLoRA checkpoint (published folder or single file)")
    p.add_argument("--face-pack", help="insightface pack folder (antelopev2)")
    p.add_argument("--clip-vision", help="CLIP ViT-L/14 vision weights (.safetensors)")
    p.add_argument("--refs", help="reference photos: a folder (one person) or a folder of per-person folders")
    p.add_argument("--prompts", help="text file, one prompt per line")
    p.add_argument("--strengths", default="0.5,0.75,0.85,1.0", help="ID-LoRA strengths")
    p.add_argument("--ref-counts", default="", help="comma list of reference counts to compare (default: all photos)")
    p.add_argument("--base-strength", type=float, default=0.5, help="Base-LoRA strength of the ID+Base method")
    p.add_argument("--seeds", default="0", help="comma list of seeds")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--cfg", type=float, default=None, help="CFG (default 5 for SDXL, 1 for the toy)")
    p.add_argument("--size", type=int, default=1024)
    p.add_argument("--clip-model", default="ViT-B-32", help="open_clip architecture for CLIP-I/CLIP-T")
    p.add_argument("--clip-pretrained", default=None,
                   help="open_clip weights (local file); omitted = RANDOM weights (offline): CLIP numbers are then meaningless")
    p.add_argument("--no-clip", action="store_true", help="skip CLIP-I/CLIP-T")
    p.add_argument("--no-dlib", action="store_true", help="skip the dlib metrics and face detection")
    p.add_argument("--out", default="output/eval", help="output folder")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch default)")
    args = p.parse_args(argv)

    from ..comfy_bridge.boot import boot_comfy

    boot_comfy()
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from .backends import SDXLBackend
    from .harness import default_methods, evaluate, summarise
    from .metrics import ClipScorer, DlibFaces
    from .report import markdown_table, write_report

    t0 = time.time()
    notes = []
    if args.toy and args.summary:
        return toy_summary(args)
    if args.toy:
        return toy_sweep(args)
    missing = [n for n in ("checkpoint", "hyperlora", "face_pack", "clip_vision", "refs") if not getattr(args, n)]
    if missing:
        p.error("for SDXL give --" + ", --".join(m.replace("_", "-") for m in missing) + " (or use --toy)")
    backend = SDXLBackend.from_files(args.checkpoint, args.hyperlora, args.face_pack, args.clip_vision, size=args.size,
                                     steps=args.steps, cfg=args.cfg or 5.0)
    persons = _read_persons(args.refs)
    prompts = _read_prompts(args.prompts, DEFAULT_PROMPTS)
    ref_counts = [int(v) for v in args.ref_counts.split(",") if v.strip()] or [None]
    methods = default_methods(_floats(args.strengths), backend.has_base, args.base_strength, refs=ref_counts)
    if not backend.has_base:
        notes.append("ID+Base skipped: this HyperLoRA checkpoint has no Base-LoRA branch")
    clip = None if args.no_clip else ClipScorer(args.clip_model, args.clip_pretrained)
    if clip is not None:
        notes.append(f"CLIP-I / CLIP-T with open_clip {clip.label}"
                     + (": no pretrained weights offline, so these two columns only test the pipeline" if clip.random_weights else ""))
    dlib = None if args.no_dlib else DlibFaces()
    if dlib is not None:
        notes.append("independent identity model: dlib ResNet 128-d descriptor (face-recognition-models); "
                     "n/a where dlib finds no face (e.g. toy cartoons)")
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    records = evaluate(backend, persons, prompts, methods, seeds, clip=clip, dlib=dlib, log=print)
    rows = summarise(records)
    notes.append(f"{len(records)} images in {time.time() - t0:.0f}s")
    paths = write_report(records, rows, args.out, notes, title=f"HyperLoRA evaluation ({backend.name})")
    print(markdown_table(rows, notes))
    for k, v in paths.items():
        print(f"{k}: {v}")
    return 0


def toy_sweep(args) -> int:
    """`--toy`: the ID-LoRA strength sweep on held-out identities (`toy.measure.strength_sweep`: the build's eval
    stage), its table with 95 % intervals, plot and grid; the last line is `heldout_match_with_lora=... without=...`."""
    from ..toy.measure import strength_rows, strength_sweep, strength_table, summary_line
    from ..toy.world_loader import ToyWorld
    from .report import plot_strength

    toy = ToyWorld.load(args.toy_world, args.hyperlora, args.base)
    strengths = _floats(args.strengths)
    has_base = toy.hyperlora.config.has_base
    j = strength_sweep(toy, args.identities or 16, strengths, steps=args.steps, folder=args.toy_world)
    print(f"toy world base: {toy.base.description}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print(strength_table(j, strengths, has_base))
    plot = plot_strength(strength_rows(j, strengths, has_base), out / "toy_strength.png", "toy world, held-out identities")
    print(f"plot: {plot}")
    print(f"grid: {j.grid(out / 'toy_grid.png')}")
    print(summary_line(j.mean("ID-LoRA x1"), j.mean("no LoRA")))
    return 0


def toy_summary(args) -> int:
    """`--toy --summary`: `toy.study.run_study` on the toy world, its tables, the summary line last."""
    import json

    from ..toy.study import interval_tables, run_study, study_tables

    result = run_study(args.toy_world, args.hyperlora, identities=args.identities or 128, steps=args.steps,
                       finetune_count=args.finetune, edit_cfg=args.cfg or 1.0, log=print, base=args.base)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "toy_summary.json").write_text(json.dumps({"numbers": result.numbers, "per_factor": result.per_factor,
                                                      "cfg_rows": result.cfg_rows, "identities": result.identities,
                                                      "seconds": result.seconds}, indent=1))
    tables = study_tables(result)
    intervals = interval_tables(result)
    if args.ablation_work:
        from ..toy.ablation import SHIPPED, write_result

        print(f"ablation row: {write_result(Path(args.ablation_work), SHIPPED, result)}")
    print(tables)
    print()
    print(intervals)
    print(f"{out / 'toy_summary.json'} ({result.seconds:.0f}s)")
    if args.record:
        import torch

        from ..toy import files
        from ..toy.card import write_card

        stats = files.read_stats(args.toy_world)
        from ..toy.models import toy_base

        stats[f"{toy_base(args.base).prefix}study"] = {"tables": tables, "intervals": intervals, "summary_line": result.summary_line(), "numbers": result.numbers,
                          "identities": result.identities, "minutes": round(result.seconds / 60, 1),
                          "threads": torch.get_num_threads()}
        files.write_stats(stats, args.toy_world)
        print(f"model card: {write_card(args.toy_world)}")
    print(result.summary_line())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
