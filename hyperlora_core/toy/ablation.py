"""The ablation table of the toy world: every row trained by the same trainer, measured the same way.

    python -m hyperlora_core.toy.ablation prepare --work output/toy_ablation   # dataset + one config per row
    python -m hyperlora_core.toy.ablation fit full --work output/toy_ablation  # one row (resumable: rerun it)
    python -m hyperlora_core.toy.ablation measure --work output/toy_ablation   # toy/study.py per finished row
    python -m hyperlora_core.toy.ablation table --work output/toy_ablation     # the Markdown table and verdicts
    python -m hyperlora_core.toy.ablation fit full --seeds 7,8,9 ...            # the row once per training seed

Rows (`recipe.ABLATIONS`) share one budget (`recipe.ABLATION_BUDGET`); `fit` runs
`python -m hyperlora_core.train fit --config <work>/configs/<row>.yaml`, so a row stopped at any
point resumes from its last checkpoint. Rows that start from another row's stage (the shared Base
warm-up) wait until it exists. `--seeds` trains, measures and reads each row once per training seed, each
seed in its own folder (`recipe.seed_work`: `<work>/seed<s>/configs, runs, results`; the dataset is shared).

Verdicts (`claims`) come from paired 95 % bootstrap intervals over the held-out identities (`eval.intervals`):
every row is measured on the same identities with the same noise, so a comparison resamples the
identities' differences. A row trained with several seeds enters with each identity's value averaged over
its seeds (the interval then resamples identities of the seed-pooled row; training-seed noise is shown as
the per-seed differences beside the verdict, not inside the interval: three seeds are too few to resample).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .recipe import ABLATIONS, ROW, ablation_config, seed_work

RESULTS = "results"


Seeds = Sequence[int | None]
"""Training seeds of a run: None is the recipe's own seed (the folders directly under `<work>`)."""


def final_model(work: Path, row: str, seed: int | None = None) -> Path | None:
    """The row's trained HyperLoRA: its last stage's result, once every stage has finished."""
    from ..train.config import load_config
    from ..train.fit import final_path

    cfg = load_config(seed_work(work, seed) / "configs" / f"{row}.yaml")
    finals = [final_path(cfg, s) for s in cfg.stage_names()]
    return finals[-1] if all(f.is_file() for f in finals) else None


def prepare(world: Path, work: Path, seeds: Seeds = (None,)) -> None:
    from .backbone import write_toy_dataset
    from .stages import Data

    shards = work / "shards"
    if not (shards / "index.json").is_file():
        t = time.time()
        write_toy_dataset(shards, Data.make().train, world)
        print(f"dataset -> {shards} ({time.time() - t:.0f}s)", flush=True)
    for seed in seeds:
        for row in ABLATIONS:
            print(f"{row.name}: {ablation_config(row, world, work, seed)}", flush=True)


def fit(work: Path, row: str, seeds: Seeds = (None,)) -> None:
    from ..train.__main__ import main as train_cli

    r = ROW[row]
    for seed in seeds:
        here = seed_work(work, seed)
        if r.init_from:
            need = here / "runs" / r.init_from[0] / r.init_from[1] / "final.safetensors"
            while not need.is_file():
                print(f"{row}: waiting for {need}", flush=True)
                time.sleep(60)
        if train_cli(["fit", "--config", str(here / "configs" / f"{row}.yaml")]) != 0:
            raise SystemExit(f"{row} (seed {seed or 'of the recipe'}): train fit failed")


def measure(world: Path, work: Path, rows: list[str], identities: int, finetune: int, steps: int,
            seeds: Seeds = (None,)) -> None:
    """`study.run_study` for every finished row and seed not measured yet (results without per-identity values,
    written before the intervals, are measured again)."""
    from .study import run_study

    for seed in seeds:
        here = seed_work(work, seed)
        for row in rows:
            path = here / RESULTS / f"{row}.json"
            model = final_model(work, row, seed)
            name = row if seed is None else f"{row} (seed {seed})"
            done = path.is_file() and "per_identity" in json.loads(path.read_text())
            if done or model is None:
                print(f"{name}: {'measured already' if done else 'not finished'}", flush=True)
                continue
            res = run_study(world, model, identities=identities, steps=steps,
                            finetune_count=finetune if row == "full" else 0,
                            cfgs=(1.0, 2.0, 4.0, 7.0) if row == "full" else (),
                            log=lambda m, r=name: print(f"{r}: {m}", flush=True),
                            train_config=here / "configs" / f"{row}.yaml")
            write_result(here, row, res)
            print(f"{name}: {res.summary_line()} ({res.seconds:.0f}s)", flush=True)


SHIPPED = "shipped"
"""`results/shipped.json`: the shipped model's own study (`record_shipped`), a row on its own budget."""


def _labelled_rows() -> list[tuple[str, str]]:
    from .recipe import SHIPPED_STAGES

    steps = sum(s["steps"] for s in SHIPPED_STAGES.values())
    return [(SHIPPED, f"full recipe on the shipped budget ({steps} steps at batch 64)"), *((r.name, r.label) for r in ABLATIONS)]


def write_result(work: Path, row: str, result) -> Path:
    """`<work>/results/<row>.json` from a `study.StudyResult` (row `shipped`: the shipped model's study)."""
    out = work / RESULTS
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{row}.json"
    per = {k: [round(float(v), 6) for v in vals] for k, vals in result.per_identity.items()}
    path.write_text(json.dumps({"row": row, "numbers": result.numbers, "per_factor": result.per_factor,
                                "cfg_rows": result.cfg_rows, "identities": result.identities,
                                "seconds": result.seconds, "per_identity": per}, indent=1))
    return path


def load_results(work: Path) -> dict[str, list[dict]]:
    """Every measured row: its results, one per training seed (`<work>/results`, `<work>/seed*/results`)."""
    out: dict[str, list[dict]] = {}
    for folder in [work / RESULTS, *sorted(work.glob(f"seed*/{RESULTS}"))]:
        for p in sorted(folder.glob("*.json")):
            res = json.loads(p.read_text())
            res["seed"] = None if folder == work / RESULTS else folder.parent.name.removeprefix("seed")
            out.setdefault(p.stem, []).append(res)
    return out


def pooled_numbers(results: list[dict]) -> dict[str, float]:
    """A row's numbers, each the mean over its seeds (of the seeds that measured it)."""
    keys = {k for r in results for k in r["numbers"]}
    return {k: float(np.mean([r["numbers"][k] for r in results if k in r["numbers"]])) for k in keys}


def pooled_values(results: list[dict], key: str) -> np.ndarray | None:
    """Each identity's value of `key`, averaged over the row's seeds; None when no seed has per-identity values."""
    vals = [np.asarray(r["per_identity"][key]) for r in results if key in r.get("per_identity", {})]
    if not vals or len({len(v) for v in vals}) != 1:
        return None
    return np.mean(vals, axis=0)


def _f(v: float | None) -> str:
    return "-" if v is None else f"{v:.3f}"


def table(work: Path) -> str:
    """The Markdown ablation table from the measured rows (a row with several seeds: the mean over them)."""
    loaded = load_results(work)
    if not loaded:
        return "(no rows measured yet)"
    res = {name: pooled_numbers(rs) for name, rs in loaded.items()}
    head = ("| row | ID match, 1 photo | ID match, 4 photos | all-6, 1 photo | leakage (floor) | caption followed "
            "(no LoRA) | ID match while editing | Base fidelity |")
    lines = [head, "|" + "---|" * 8]
    any_row = next(iter(res.values()))
    floor = any_row["no_lora_leakage"]
    lines.append(f"| no LoRA | {_f(any_row['no_lora'])} | - | {_f(any_row['no_lora_all6'])} | {_f(floor)} | "
                 f"{_f(any_row['no_lora_edit_follow'])} | {_f(any_row['no_lora_id_match_edit'])} | - |")
    for name, label in _labelled_rows():
        if name not in res:
            continue
        n = res[name]
        seeds = len(loaded[name])
        label = f"{label} ({seeds} seeds)" if seeds > 1 else label
        lines.append(f"| {label}, ID-LoRA | {_f(n['id_match_1ref'])} | {_f(n['id_match_4ref'])} | {_f(n['all6_1ref'])} | "
                     f"{_f(n['leakage'])} | {_f(n['edit_follow'])} | {_f(n['id_match_edit'])} | - |")
        if "base_match" in n:
            lines.append(f"| {label}, ID + Base | {_f(n['id_match_id_base'])} | - | - | - | "
                         f"{_f(n.get('edit_follow_id_base'))} | {_f(n.get('id_match_edit_id_base'))} | {_f(n['base_match'])} |")
        if "finetune_id_match" in n:
            lines.append(f"| {label} + {int(n['finetune_identities'])}-identity 50-step fine-tune (4 photos) | - | "
                         f"{_f(n['finetune_id_match'])} (before {_f(n['finetune_before_id_match'])}) | "
                         f"{_f(n['finetune_all6'])} | {_f(n['finetune_leakage'])} | - | - | - |")
    return "\n".join(lines)


CLAIMS: tuple[tuple[str, tuple[str, str], tuple[str, str]], ...] = (
    ("Base-LoRA split: with a Base-LoRA trained beside it, the ID-LoRA copies less of the photo's background and "
     "clothes (leakage, ID-only recipe minus full recipe)", ("id_only", "leakage"), ("full", "leakage")),
    ("Base-LoRA split: the ID-LoRA stays editable (caption followed, full recipe minus ID-only recipe)",
     ("full", "edit_follow"), ("id_only", "edit_follow")),
    ("Full (ID + Base) is more faithful to the photo than ID only (base factors = the photo's: ID + Base minus "
     "ID-LoRA)", ("full", "base_match"), ("full", "leakage")),
    ("ID only is more editable than Full (caption followed: ID-LoRA minus ID + Base)", ("full", "edit_follow"),
     ("full", "edit_follow_id_base")),
    ("Several photos are better than one (ID match, 4 photos minus 1)", ("full", "id_match_4ref"),
     ("full", "id_match_1ref")),
    ("The Base warm-up helps identity (ID match, full recipe minus without warm-up)", ("full", "id_match_1ref"),
     ("no_base_warmup", "id_match_1ref")),
    ("The CLIP stage helps identity (ID match, full recipe minus without the CLIP stage)", ("full", "id_match_1ref"),
     ("no_clip_stage", "id_match_1ref")),
    ("A short fine-tune from the generated LoRA gets closer (ID match after minus before)",
     ("full", "finetune_id_match"), ("full", "finetune_before_id_match")),
)
"""(claim, (row, measure) claimed higher, (row, measure) compared with); row "full" falls back to the shipped
model's study when the ablation's full row is not measured."""


def _per_seed(a: list[dict], ka: str, b: list[dict], kb: str) -> list[float]:
    """The difference of the means for each training seed both rows were measured with."""
    by_a = {r["seed"]: r["numbers"].get(ka) for r in a}
    by_b = {r["seed"]: r["numbers"].get(kb) for r in b}
    return [by_a[s] - by_b[s] for s in by_a if s in by_b and by_a[s] is not None and by_b[s] is not None]


def claims(work: Path) -> str:
    """Each of the paper's claims with the numbers that test it and a verdict from the paired 95 % interval of the
    difference over identities (`eval.intervals.verdict`: confirmed or refuted only when it excludes zero);
    not measured when a row, or its per-identity values, is missing. Several seeds: pooled per identity, the
    per-seed differences listed."""
    from ..eval.intervals import difference_interval, verdict

    res = load_results(work)
    full_name = "full" if "full" in res else SHIPPED
    rows = [(text, (full_name if ra == "full" else ra, ka), (full_name if rb == "full" else rb, kb))
            for text, (ra, ka), (rb, kb) in CLAIMS]
    cfg_rows = res[full_name][0].get("cfg_rows") if full_name in res else None
    if cfg_rows:
        cfgs = sorted(r["cfg"] for r in cfg_rows)
        lo, hi = cfgs[0], cfgs[-1]
        rows.append((f"LoRA tolerates CFG (the ID-LoRA's ID-match gain over no LoRA, editing captions, at CFG {hi:g} "
                     f"minus at CFG {lo:g}; refuted only if it shrinks)", (full_name, f"id_gain_edit_cfg{hi:g}"),
                     (full_name, f"id_gain_edit_cfg{lo:g}")))
    lines = ["| claim | ours | compared with | verdict |", "|---|---|---|---|"]
    for text, (ra, ka), (rb, kb) in rows:
        a, b = res.get(ra, []), res.get(rb, [])
        va, vb = pooled_values(a, ka), pooled_values(b, kb)
        if va is None or vb is None or len(va) != len(vb):
            mean_a = pooled_numbers(a).get(ka) if a else None
            mean_b = pooled_numbers(b).get(kb) if b else None
            lines.append(f"| {text} | {_f(mean_a)} | {_f(mean_b)} | not measured |")
            continue
        word = verdict(difference_interval(va, vb))
        seeds = _per_seed(a, ka, b, kb)
        if len(seeds) > 1:
            word += f"; per training seed: {', '.join(f'{d:+.3f}' for d in seeds)}"
        lines.append(f"| {text} | {_f(float(va.mean()))} | {_f(float(vb.mean()))} | {word} |")
    return "\n".join(lines)


def record(world: Path, work: Path) -> None:
    """The table and the verdicts into the world's `toy_world.json` and model card."""
    from . import files
    from .card import write_card
    from .recipe import ABLATION_BUDGET

    b = ABLATION_BUDGET
    note = (f"Every row trained by `python -m hyperlora_core.train fit` on one shared budget (`toy/recipe.py` "
            f"ABLATION_BUDGET): batch {b['identities']} identities x 2 photos, {b['base'] + b['clip_id'] + b['arcface_id']} "
            f"steps in all, the last {b['decay']} decaying (shorter than the shipped model's). Measured by "
            "`toy/study.py` on the same held-out identities and noise as the shipped model.")
    stats = files.read_stats(world)
    stats["ablation"] = {"note": note, "table": table(work), "claims": claims(work)}
    files.write_stats(stats, world)
    print(f"model card: {write_card(world)}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("command", choices=("prepare", "fit", "measure", "table", "record"))
    p.add_argument("rows", nargs="*", help="fit: one row; measure: rows (default all)")
    p.add_argument("--work", default="output/toy_ablation")
    p.add_argument("--world", default=None, help="toy world folder (default models/toy)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--identities", type=int, default=128)
    p.add_argument("--finetune", type=int, default=32, help="identities fine-tuned for the full recipe's row")
    p.add_argument("--steps", type=int, default=20, help="sampler steps")
    p.add_argument("--seeds", default="", help="training seeds, e.g. 7,8,9: each in its own folder <work>/seed<s> "
                                                "(default: the recipe's seed, folders directly under --work)")
    args = p.parse_args(argv)
    work = Path(args.work)
    try:
        seeds: Seeds = [int(s) for s in args.seeds.split(",") if s.strip()] or [None]
    except ValueError:
        p.error(f"--seeds takes comma-separated integers, e.g. 7,8,9; got {args.seeds!r}")
    if args.command == "table":
        print(table(work))
        print()
        print(claims(work))
        return 0
    from ..comfy_bridge.boot import boot_comfy

    boot_comfy()
    import torch

    torch.set_num_threads(args.threads)
    from . import files

    world = files.world_dir(args.world)
    if args.command == "record":
        record(world, work)
    elif args.command == "prepare":
        prepare(world, work, seeds)
    elif args.command == "fit":
        if len(args.rows) != 1 or args.rows[0] not in ROW:
            p.error(f"fit takes one row: {', '.join(ROW)}")
        fit(work, args.rows[0], seeds)
    else:
        measure(world, work, args.rows or list(ROW), args.identities, args.finetune, args.steps, seeds)
        print(table(work))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
