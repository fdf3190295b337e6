"""`python -m hyperlora_core.toy.demo`: the toy world personalising images, headless (ComfyUI as a library).

Loads the shipped toy world (models/toy), makes an ID-LoRA from held-out reference photos,
samples with and without it through ComfyUI's KSampler path, prints the identity-match table and
writes a grid (references / with LoRA / without). The last line is
`heldout_match_with_lora=<x> without=<y>`.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--world", default=None, help="toy world folder (default models/toy)")
    parser.add_argument("--base", default=None, help="the world's base model: unet (default) or dit")
    parser.add_argument("--identities", type=int, default=32, help="held-out identities to test")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--out", default=None, help="output folder (default output/toy_demo)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch default)")
    args = parser.parse_args(argv)
    from ..comfy_bridge.boot import boot_comfy

    boot_comfy()
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from ..lora import save_lora
    from . import files
    from .measure import ID, Condition, Heldout, Judges, ksampler_images, measure, summary_line
    from .world_loader import ToyWorld

    out = Path(args.out) if args.out else files.ROOT / "output" / "toy_demo"
    t0 = time.time()
    toy = ToyWorld.load(args.world, base=args.base)
    print(f"toy world loaded from {files.world_dir(args.world)} ({time.time() - t0:.1f}s)")
    held = Heldout.make(toy.conditioner, count=args.identities)
    judges = Judges.load(args.world, toy.judge)
    result = measure(toy, held, [], judges)
    for c in (Condition("no LoRA", seed=args.seed), Condition("ID-LoRA x1", (ID(1),), seed=args.seed),
              Condition("ID-LoRA x4", (ID(4),), seed=args.seed)):
        result.add(c.name, ksampler_images(toy, held, c), judges, keep=True)  # the KSampler path, as a graph runs it
        print(f"{c.name}: mean match {result.mean(c.name):.3f}")
    grid = result.grid(out / "toy_demo_grid.png")
    lora_path = out / f"toy_id_lora_identity{held.identities[0]}.safetensors"
    save_lora(ID(1).state_dict(toy.hyperlora, held, 0), lora_path, overwrite=True, base_metadata=toy.base.profile.kohya_metadata())
    print()
    print(result.table())
    print()
    print(f"grid (references / with LoRA / without): {grid}")
    print(f"one generated LoRA (held-out identity {held.identities[0]}): {lora_path}")
    print(f"({time.time() - t0:.0f}s)")
    print(summary_line(result.mean("ID-LoRA x1"), result.mean("no LoRA")))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
