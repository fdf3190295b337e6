"""The ablation table of the toy world: every row trained by the same trainer, measured the same way.

    python -m hyperlora_core.toy.ablation prepare --work output/toy_ablation   # dataset + one config per row
    python -m hyperlora_core.toy.ablation fit full --work output/toy_ablation  # one row (resumable: rerun it)
    python -m hyperlora_core.toy.ablation measure --work output/toy_ablation   # toy/study.py per finished row
    python -m hyperlora_core.toy.ablation table --work output/toy_ablation     # the Markdown table

Rows (`recipe.ABLATIONS`) share one budget (`recipe.ABLATION_BUDGET`); `fit` runs
`python -m hyperlora_core.train fit --config <work>/configs/<row>.yaml`, so a row stopped at any
point resumes from its last checkpoint. Rows that start from another row's stage (the shared Base
warm-up) wait until it exists.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from .recipe import ABLATIONS, ROW, ablation_config

RESULTS = "results"


def final_model(work: Path, row: str) -> Path | None:
    """The row's trained HyperLoRA: its last stage's result, once every stage has finished."""
    from ..train.config import load_config
    from ..train.fit import final_path

    cfg = load_config(work / "configs" / f"{row}.yaml")
    finals = [final_path(cfg, s) for s in cfg.stage_names()]
    return finals[-1] if all(f.is_file() for f in finals) else None


def prepare(world: Path, work: Path) -> None:
    from .backbone import write_toy_dataset
    from .stages import Data

    shards = work / "shards"
    if not (shards / "index.json").is_file():
        t = time.time()
        write_toy_dataset(shards, Data.make().train, world)
        print(f"dataset -> {shards} ({time.time() - t:.0f}s)", flush=True)
    for row in ABLATIONS:
        print(f"{row.name}: {ablation_config(row, world, work)}", flush=True)


def fit(work: Path, row: str) -> None:
    from ..train.__main__ import main as train_cli

    r = ROW[row]
    if r.init_from:
        need = work / "runs" / r.init_from[0] / r.init_from[1] / "final.safetensors"
        while not need.is_file():
            print(f"{row}: waiting for {need}", flush=True)
            time.sleep(60)
    if train_cli(["fit", "--config", str(work / "configs" / f"{row}.yaml")]) != 0:
        raise SystemExit(f"{row}: train fit failed")


def measure(world: Path, work: Path, rows: list[str], identities: int, finetune: int, steps: int) -> None:
    from .study import run_study

    out = work / RESULTS
    out.mkdir(parents=True, exist_ok=True)
    for row in rows:
        path = out / f"{row}.json"
        model = final_model(work, row)
        if path.is_file() or model is None:
            print(f"{row}: {'measured already' if path.is_file() else 'not finished'}", flush=True)
            continue
        res = run_study(world, model, identities=identities, steps=steps,
                        finetune_count=finetune if row == "full" else 0,
                        cfgs=(1.0, 2.0, 4.0, 7.0) if row == "full" else (), log=lambda m, r=row: print(f"{r}: {m}", flush=True),
                        train_config=work / "configs" / f"{row}.yaml")
        write_result(work, row, res)
        print(f"{row}: {res.summary_line()} ({res.seconds:.0f}s)", flush=True)


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
    path.write_text(json.dumps({"row": row, "numbers": result.numbers, "per_factor": result.per_factor,
                                "cfg_rows": result.cfg_rows, "identities": result.identities,
                                "seconds": result.seconds}, indent=1))
    return path


def _f(v: float | None) -> str:
    return "-" if v is None else f"{v:.3f}"


def table(work: Path) -> str:
    """The Markdown ablation table from the measured rows."""
    res = {p.stem: json.loads(p.read_text()) for p in sorted((work / RESULTS).glob("*.json"))}
    if not res:
        return "(no rows measured yet)"
    head = ("| row | ID match, 1 photo | ID match, 4 photos | all-6, 1 photo | leakage (floor) | caption followed "
            "(no LoRA) | ID match while editing | Base fidelity |")
    lines = [head, "|" + "---|" * 8]
    any_row = next(iter(res.values()))["numbers"]
    floor = any_row["no_lora_leakage"]
    lines.append(f"| no LoRA | {_f(any_row['no_lora'])} | - | {_f(any_row['no_lora_all6'])} | {_f(floor)} | "
                 f"{_f(any_row['no_lora_edit_follow'])} | {_f(any_row['no_lora_id_match_edit'])} | - |")
    for name, label in _labelled_rows():
        if name not in res:
            continue
        n = res[name]["numbers"]
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


MARGIN = 0.02
"""A difference smaller than this (on 128 identities x 6 attributes or x 3 factors) is called a tie."""


def _verdict(diff: float | None, no_loss: bool = False) -> str:
    """`diff`: the claimed direction positive. A "no loss" claim (e.g. tolerates CFG) holds unless it
    loses more than the margin."""
    if diff is None:
        return "not measured"
    if no_loss:
        return "confirmed" if diff >= -MARGIN else "refuted"
    return "confirmed" if diff > MARGIN else "refuted" if diff < -MARGIN else "not distinguishable"


def claims(work: Path) -> str:
    """Each of the paper's claims with the numbers that test it and a verdict: confirmed when our
    numbers move the claimed way by more than `MARGIN`, refuted when they move the other way by more,
    else not distinguishable; not measured when a row is missing."""
    res = {p.stem: json.loads(p.read_text())["numbers"] for p in sorted((work / RESULTS).glob("*.json"))}
    # the claims that need only the full recipe read the ablation row, else the shipped model's study
    full_name = "full" if "full" in res else SHIPPED
    full, id_only = res.get(full_name, {}), res.get("id_only", {})
    g = lambda d, k: d.get(k)  # noqa: E731

    def diff(a, b):
        return None if a is None or b is None else a - b

    rows = [
        ("Base-LoRA split: with a Base-LoRA trained beside it, the ID-LoRA copies less of the photo's background and "
         "clothes (leakage, ID-only recipe minus full recipe)", g(id_only, "leakage"), g(full, "leakage"),
         diff(g(id_only, "leakage"), g(full, "leakage"))),
        ("Base-LoRA split: the ID-LoRA stays editable (caption followed, full recipe minus ID-only recipe)",
         g(full, "edit_follow"), g(id_only, "edit_follow"), diff(g(full, "edit_follow"), g(id_only, "edit_follow"))),
        ("Full (ID + Base) is more faithful to the photo than ID only (base factors = the photo's: ID + Base minus "
         "ID-LoRA)", g(full, "base_match"), g(full, "leakage"), diff(g(full, "base_match"), g(full, "leakage"))),
        ("ID only is more editable than Full (caption followed: ID-LoRA minus ID + Base)", g(full, "edit_follow"),
         g(full, "edit_follow_id_base"), diff(g(full, "edit_follow"), g(full, "edit_follow_id_base"))),
        ("Several photos are better than one (ID match, 4 photos minus 1)", g(full, "id_match_4ref"),
         g(full, "id_match_1ref"), diff(g(full, "id_match_4ref"), g(full, "id_match_1ref"))),
        ("The Base warm-up helps identity (ID match, full recipe minus without warm-up)", g(full, "id_match_1ref"),
         g(res.get("no_base_warmup", {}), "id_match_1ref"),
         diff(g(full, "id_match_1ref"), g(res.get("no_base_warmup", {}), "id_match_1ref"))),
        ("The CLIP stage helps identity (ID match, full recipe minus without the CLIP stage)", g(full, "id_match_1ref"),
         g(res.get("no_clip_stage", {}), "id_match_1ref"),
         diff(g(full, "id_match_1ref"), g(res.get("no_clip_stage", {}), "id_match_1ref"))),
        ("A short fine-tune from the generated LoRA gets closer (ID match after minus before)",
         g(full, "finetune_id_match"), g(full, "finetune_before_id_match"),
         diff(g(full, "finetune_id_match"), g(full, "finetune_before_id_match"))),
    ]
    cfg_file = work / RESULTS / f"{full_name}.json"
    cfg_rows = json.loads(cfg_file.read_text()).get("cfg_rows") if cfg_file.is_file() else None
    if cfg_rows:
        by = {r["cfg"]: r for r in cfg_rows}
        lo, hi = min(by), max(by)
        a = by[hi]["id_id_match"] - by[hi]["no_lora_id_match"]
        b = by[lo]["id_id_match"] - by[lo]["no_lora_id_match"]
        rows.append((f"LoRA tolerates CFG (the ID-LoRA's ID-match gain over no LoRA at CFG {hi:g}, against at CFG {lo:g}, "
                     "editing captions; holds unless the gain shrinks)", a, b, a - b))
    lines = ["| claim | ours | compared with | verdict |", "|---|---|---|---|"]
    for text, a, b, d in rows:
        lines.append(f"| {text} | {_f(a)} | {_f(b)} | {_verdict(d, no_loss=text.startswith('LoRA tolerates'))} |")
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
    args = p.parse_args(argv)
    work = Path(args.work)
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
        prepare(world, work)
    elif args.command == "fit":
        if len(args.rows) != 1 or args.rows[0] not in ROW:
            p.error(f"fit takes one row: {', '.join(ROW)}")
        fit(work, args.rows[0])
    else:
        measure(world, work, args.rows or list(ROW), args.identities, args.finetune, args.steps)
        print(table(work))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
