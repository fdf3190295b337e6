"""`python -m hyperlora_core.train {prepare,fit,export,finetune}` (console script `hyperlora-train`).

Runs headless: ComfyUI is used as a library (COMFYUI_PATH, or the host the set-up script
installed), in CPU mode when no GPU exists. Under `torchrun` every process runs this same
command; errors a user can fix print one line and exit with status 2.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hyperlora-train", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)

    pr = sub.add_parser("prepare", help="photos -> webdataset shards with cached face crops, embeddings, latents")
    pr.add_argument("--config", required=True, help="training config (model section and data.shards are used)")
    src = pr.add_mutually_exclusive_group(required=True)
    src.add_argument("--input", help="folder of photos (identity = sub-folder) or a .jsonl of {image, caption, identity}")
    src.add_argument("--synthetic", action="store_true", help="write a small synthetic dataset instead (tests, demos)")
    pr.add_argument("--out", help="output folder (default: data.shards of the config)")
    pr.add_argument("--resolution", type=int, default=None, help="side of the square training crop (default: the backbone's: 1024 for checkpoint, 64 tiny, 32 toy)")
    pr.add_argument("--face-models", default=None,
                    help="the antelopev2 face model folder (holding its .onnx files), or a folder holding antelopev2/ "
                         "(default: ComfyUI's models/insightface/models/antelopev2)")
    pr.add_argument("--per-shard", type=int, default=1000)
    pr.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config value")

    fi = sub.add_parser("fit", help="train the configured stages (resumes where it stopped)")
    fi.add_argument("--config", required=True)
    fi.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config value")

    ex = sub.add_parser("export", help="write the published folder layout and our single file (fp16)")
    ex.add_argument("--config", help="training config: exports the last finished stage")
    ex.add_argument("--weights", help="or: a stage's final.safetensors to export")
    ex.add_argument("--stage", help="export this stage instead of the last finished one")
    ex.add_argument("--out", required=True, help="output folder for the published layout")
    ex.add_argument("--single", help="also write one .safetensors here (default: <out>.safetensors)")
    ex.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")

    ft = sub.add_parser("finetune", help="refine a generated kohya LoRA on one person's photos")
    ft.add_argument("--config", required=True, help="training config (model section is used)")
    ft.add_argument("--lora", required=True, help="the LoRA to refine (.safetensors)")
    ft.add_argument("--photos", required=True, help="a prepared dataset folder, or a folder of photos")
    ft.add_argument("--out", required=True, help="where to write the refined LoRA (.safetensors)")
    ft.add_argument("--steps", type=int, default=50)
    ft.add_argument("--lr", type=float, default=1e-4)
    ft.add_argument("--batch", type=int, default=4)
    ft.add_argument("--caption", default=None, help="caption for photos without a .txt (default: trigger words + 'a photo of a person')")
    ft.add_argument("--resolution", type=int, default=None)
    ft.add_argument("--seed", type=int, default=0)
    ft.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    return p


def _run(args: argparse.Namespace) -> int:
    from .config import load_config

    if args.command == "fit":
        from .distributed import init_distributed, shutdown
        from .fit import fit

        cfg = load_config(args.config, args.set)
        info = init_distributed()
        try:
            results = fit(cfg, info)
        finally:
            shutdown(info)
        if info.is_main:
            for stage, path in results.items():
                print(f"{stage}: {path}")
        if info.active:  # gloo can abort in its own teardown; the work is done and saved
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(0)
        return 0
    if args.command == "export":
        from .export import export

        cfg = load_config(args.config, args.set) if args.config else None
        out = export(cfg, args.out, weights=args.weights, stage=args.stage, single=args.single)
        for path in out:
            print(path)
        return 0
    if args.command == "prepare":
        from .prepare import prepare

        cfg = load_config(args.config, args.set)
        report = prepare(cfg, args.input, out=args.out, synthetic=args.synthetic, resolution=args.resolution,
                         face_models=args.face_models, per_shard=args.per_shard)
        print(report.summary())
        return 0
    if args.command == "finetune":
        from .finetune import finetune

        cfg = load_config(args.config, args.set)
        result = finetune(cfg, args.lora, args.photos, args.out, steps=args.steps, lr=args.lr, batch=args.batch,
                          caption=args.caption, resolution=args.resolution, seed=args.seed)
        print(f"{args.out}: loss on the photos {result['loss_before']:.5f} -> {result['loss_after']:.5f} "
              f"after {args.steps} steps")
        return 0
    raise AssertionError(args.command)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from .. import temporaries
    from ..comfy_bridge.boot import boot_comfy
    from ..errors import HyperLoRAError

    temporaries.install_signal_cleanup()
    try:
        boot_comfy()
        return _run(args)
    except HyperLoRAError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
