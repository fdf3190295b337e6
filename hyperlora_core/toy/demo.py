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
    from .evaluate import evaluate
    from .models import BASE
    from .world_loader import ToyWorld

    out = Path(args.out) if args.out else files.ROOT / "output" / "toy_demo"
    t0 = time.time()
    toy = ToyWorld.load(args.world)
    print(f"toy world loaded from {files.world_dir(args.world)} ({time.time() - t0:.1f}s)")
    result = evaluate(toy, identities=args.identities, seed=args.seed, log=print)
    grid = result.save_grid(out / "toy_demo_grid.png")
    held = result.identities[0]
    from .evaluate import HeldoutSet

    one = HeldoutSet.make(toy.conditioner, count=args.identities, refs=1)
    lora_path = out / f"toy_id_lora_identity{held}.safetensors"
    save_lora(toy.lora_for(one.clip_tokens[0, :1], one.id_embeds[0, :1]), lora_path, overwrite=True,
              base_metadata=BASE.kohya_metadata())
    print()
    print(result.table())
    print()
    print(f"grid (references / with LoRA / without): {grid}")
    print(f"one generated LoRA (held-out identity {held}): {lora_path}")
    print(f"({time.time() - t0:.0f}s)")
    print(result.summary_line())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
