"""Tables (Markdown, CSV) and plots (metric vs ID-LoRA strength) of an evaluation run."""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .harness import METRICS, Record

LABELS = {
    "id_arcface": "ID sim (conditioning ArcFace, cos)",
    "id_dlib_cos": "ID sim (dlib, cos)",
    "id_dlib_l2": "dlib L2 (<0.6 = same)",
    "clip_i": "CLIP-I",
    "clip_t": "CLIP-T",
    "face_detected": "face detection rate",
    "attr_match": "toy attribute match",
    "attr_all6": "toy all-6 exact",
}


def _fmt(v: float) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.3f}"


def markdown_table(rows: Sequence[dict], notes: Sequence[str] = ()) -> str:
    present = [k for k in METRICS if any(not math.isnan(r[k]) for r in rows)]
    head = "| method | images | " + " | ".join(LABELS[k] for k in present) + " |"
    lines = [head, "|---|---|" + "---|" * len(present)]
    for r in rows:
        lines.append(f"| {r['method']} | {r['images']} | " + " | ".join(_fmt(r[k]) for k in present) + " |")
    lines += [""] + [f"- {n}" for n in notes]
    return "\n".join(lines)


def write_csv(rows: Sequence[dict], path: Path) -> Path:
    keys = ["method", "kind", "id_strength", "base_strength", "refs", "images", *METRICS]
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        for r in rows:
            w.writerow({k: r[k] for k in keys})
    return path


def write_records_csv(records: Sequence[Record], path: Path) -> Path:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["person", "method", "prompt", "seed", *METRICS])
        for r in records:
            w.writerow([r.person, r.method.label, r.prompt, r.seed, *(r.metrics[k] for k in METRICS)])
    return path


def plot_strength(rows: Sequence[dict], path: Path, title: str = "") -> Path | None:
    """One panel per metric: value vs ID-LoRA strength (strength 0 = no LoRA)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series: dict[int, list[dict]] = {}
    base = [r for r in rows if r["kind"] == "no LoRA"]
    for r in rows:
        if r["kind"] == "ID-LoRA":
            series.setdefault(r["refs"], []).append(r)
    present = [k for k in METRICS if k != "id_dlib_l2" and any(not math.isnan(r[k]) for r in rows)]
    if not series or not present:
        return None
    fig, axes = plt.subplots(1, len(present), figsize=(3.2 * len(present), 3.0), squeeze=False)
    for ax, key in zip(axes[0], present):
        for refs, rs in sorted(series.items()):
            pts = sorted([(0.0, base[0][key])] if base else [], key=lambda p: p[0])
            pts += sorted((r["id_strength"], r[key]) for r in rs)
            xs, ys = zip(*pts)
            ax.plot(xs, ys, marker="o", label=f"{refs} ref{'s' if refs != 1 else ''}" if refs else "all refs")
        ax.set_title(LABELS[key], fontsize=9)
        ax.set_xlabel("ID-LoRA strength")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def image_grid(records: Sequence[Record], path: Path, persons: int = 8, scale: int = 1) -> Path:
    """Rows: methods; columns: the first prompt/seed of each of the first `persons` persons."""
    from PIL import Image

    names: list[str] = []
    methods: list = []
    for r in records:
        if r.person not in names:
            names.append(r.person)
        if r.method not in methods:
            methods.append(r.method)
    names = names[:persons]
    first = {}
    for r in records:
        first.setdefault((r.person, r.method), r.image)
    h, w = records[0].image.shape[:2]
    canvas = Image.new("RGB", (len(names) * (w * scale + 2) + 2, len(methods) * (h * scale + 2) + 2), "white")
    for i, m in enumerate(methods):
        for j, n in enumerate(names):
            img = first.get((n, m))
            if img is not None:
                tile = Image.fromarray(np.asarray(img)).resize((w * scale, h * scale), Image.NEAREST)
                canvas.paste(tile, (2 + j * (w * scale + 2), 2 + i * (h * scale + 2)))
    canvas.save(path)
    return path


def write_report(records: Sequence[Record], rows: Sequence[dict], out: str | os.PathLike, notes: Sequence[str] = (),
                 title: str = "") -> dict[str, Path]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"markdown": out / "results.md", "csv": out / "results.csv", "samples_csv": out / "samples.csv"}
    paths["markdown"].write_text((f"# {title}\n\n" if title else "") + markdown_table(rows, notes) + "\n")
    write_csv(rows, paths["csv"])
    write_records_csv(records, paths["samples_csv"])
    plot = plot_strength(rows, out / "metrics_vs_strength.png", title)
    if plot:
        paths["plot"] = plot
    if records:
        scale = max(1, 128 // records[0].image.shape[0])
        paths["grid"] = image_grid(records, out / "grid.png", scale=scale)
    return paths
