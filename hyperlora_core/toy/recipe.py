"""The toy HyperLoRA's training recipe (the paper's stages, with a Base-LoRA branch) and its ablations.

One table of trainer configs, all for `python -m hyperlora_core.train fit` with the toy backbone:

- `shipped_config`: what `make toy-world` trains and `models/toy` ships: Base-LoRA warm-up ->
  CLIP-guided ID-LoRA -> ArcFace stage, the Base-LoRA frozen and added (dropped for half of the
  samples) while the ID-LoRA trains, captions naming the target's background and shirt (empty
  for half of the samples), each target's ID-LoRA made from another photo of the same person.
- `ABLATIONS`: the same recipe with one thing changed per row, on a shorter shared budget
  (`ABLATION_BUDGET`: the same batch and the same total number of steps for every row).
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass, field
from pathlib import Path

import yaml

BASE: dict = {
    "seed": 7,
    "data": {"verify": "quick"},
    "model": {"backbone": "toy"},
    "hypernetwork": {
        "basis_size": 16, "rank": 4, "base_rank": 1, "id_tokens": 16, "face_embed_dim": 512,
        "resampler": {"dim": 64, "depth": 4, "heads": 4, "dim_head": 16, "ff_mult": 4},
        "base_resampler": {"dim": 64, "depth": 1, "heads": 4, "dim_head": 16, "ff_mult": 4},
    },
    "train": {
        "precision": "fp32", "gradient_checkpointing": False,
        "batch": {"identities": 32, "photos_per_identity": 2},
        "references": "other_photos",
        "loss": {"objective": "eps", "t_min": 200, "t_max": 1000},
        "dropout": {"text": 0.5, "face": 0.0, "base_lora": 0.5},
        "optimizer": {"lr": 2.0e-3, "basis_lr": 5.0e-4, "weight_decay": 1.0e-4, "grad_clip": 1.0},
        "scheduler": {"kind": "constant", "warmup_steps": 50},
        "checkpoint": {"every": 100, "keep_last": 40},
        "log": {"every": 25, "progress_bar": False, "tensorboard": False},
        "samples": {"every": -1},
    },
}
"""Everything but the paths and the stages: the same for the shipped model and every ablation row."""

BASE_WARMUP: dict = {"objective": "x0", "text_dropout": 1.0, "basis_lr": 2.0e-3}
"""How the Base-LoRA warm-up trains, beside its step count. Measured on the candidate world (64 held-out
identities, 300 steps at batch 32, Base-LoRA alone, share of the photo's background colour / pattern / shirt;
no LoRA 0.11 / 0.42 / 0.08): with the ID stages' settings (eps loss, half the captions naming the very factors
it should learn, basis lr 5e-4) 0.13 / 0.44 / 0.11; x0 loss alone 0.20 / 0.42 / 0.11; x0, empty captions and
basis lr 2e-3 0.22 / 0.78 / 0.47 (rank 2, base resampler depth 2), 0.20 / 0.77 / 0.58 (rank 1, depth 1: what the
recipe uses, so the world stays under 20 MiB). The caption, which names the same factors, must not do the
Base-LoRA's work."""

SHIPPED_STAGES: dict = {
    "base": {"steps": 400, **BASE_WARMUP},
    "clip_id": {"steps": 100},
    "arcface_id": {"steps": 2000, "decay_steps": 400},
}
"""2,500 steps at batch 64 (about 75 minutes on one CPU core)."""

ABLATION_BUDGET = {"identities": 16, "base": 200, "clip_id": 100, "arcface_id": 500, "decay": 200}
"""Every row: batch 16 identities x 2 photos, 800 steps in all (the Base warm-up counts), the last
200 with the learning rate falling to 0."""

_B = ABLATION_BUDGET
_ID_PARTS = ["id_projector", "id_resampler", "id_basis"]
_BASE_PARTS = ["base_resampler", "base_basis"]


@dataclass(frozen=True)
class Row:
    """One ablation: a name (its run folder), what it is, and how it differs from the full recipe."""

    name: str
    label: str
    stages: dict
    overrides: dict = field(default_factory=dict)
    init_from: tuple[str, str] | None = None
    """(row, stage): start from that row's stage result (e.g. the shared Base-LoRA warm-up)."""


_TOTAL = _B["base"] + _B["clip_id"] + _B["arcface_id"]
ABLATIONS: tuple[Row, ...] = (
    Row("full", "full recipe (Base warm-up -> CLIP stage -> ArcFace stage)",
        {"base": {"steps": _B["base"], **BASE_WARMUP}, "clip_id": {"steps": _B["clip_id"]},
         "arcface_id": {"steps": _B["arcface_id"], "decay_steps": _B["decay"]}}),
    Row("id_only", "ID-only recipe (no Base branch: CLIP stage -> ArcFace stage)",
        {"clip_id": {"steps": _B["clip_id"]},
         "arcface_id": {"steps": _TOTAL - _B["clip_id"], "decay_steps": _B["decay"]}},
        {"hypernetwork": {"base_rank": None}}),
    Row("no_base_warmup", "full recipe without the Base warm-up (Base-LoRA trained with the ID-LoRA)",
        {"clip_id": {"steps": _B["clip_id"], "trainable": ["id_resampler", "id_basis", *_BASE_PARTS]},
         "arcface_id": {"steps": _TOTAL - _B["clip_id"], "decay_steps": _B["decay"],
                        "trainable": [*_ID_PARTS, *_BASE_PARTS]}}),
    Row("no_clip_stage", "full recipe without the CLIP stage (Base warm-up -> ArcFace stage)",
        {"arcface_id": {"steps": _TOTAL - _B["base"], "decay_steps": _B["decay"]}},
        init_from=("full", "base")),
    Row("id_only_same_photo", "ID-only recipe, each ID-LoRA made from its own target photo (one photo per person)",
        {"clip_id": {"steps": _B["clip_id"]},
         "arcface_id": {"steps": _TOTAL - _B["clip_id"], "decay_steps": _B["decay"]}},
        {"hypernetwork": {"base_rank": None}, "train": {"references": "same_photo"}}),
    Row("full_same_photo", "full recipe, each ID-LoRA made from its own target photo (one photo per person)",
        {"clip_id": {"steps": _B["clip_id"]},
         "arcface_id": {"steps": _B["arcface_id"], "decay_steps": _B["decay"]}},
        {"train": {"references": "same_photo"}}, init_from=("full", "base")),
)
ROW: dict[str, Row] = {r.name: r for r in ABLATIONS}


def _merge(base: dict, extra: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in extra.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else copy.deepcopy(v)
    return out


def _rel(path: Path, start: Path) -> str:
    return Path(os.path.relpath(Path(path).resolve(), start.resolve())).as_posix()


def config_dict(world: str | os.PathLike, shards: str | os.PathLike, run_dir: str | os.PathLike, stages: dict,
                overrides: dict | None = None, init: str | os.PathLike | None = None,
                relative_to: str | os.PathLike | None = None) -> dict:
    """A complete trainer config; paths relative to `relative_to` (the config file's folder) if given."""
    rel = (lambda p: _rel(Path(p), Path(relative_to))) if relative_to else (lambda p: str(Path(p).resolve()))
    cfg = _merge(BASE, overrides or {})
    cfg["run_dir"] = rel(run_dir)
    cfg["data"]["shards"] = rel(shards)
    cfg["model"]["checkpoint"] = rel(world)
    if init:
        cfg["hypernetwork"]["init"] = rel(init)
    cfg["stages"] = copy.deepcopy(stages)
    return cfg


def write_config(path: str | os.PathLike, cfg: dict, header: str = "") -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = yaml.safe_dump(cfg, sort_keys=False, default_flow_style=None, width=110)
    path.write_text((header + "\n" if header else "") + text, encoding="utf-8")
    return path


def seed_work(work: str | os.PathLike, seed: int | None) -> Path:
    """Where one training seed's ablation rows live: `<work>` for the recipe's own seed (None), else
    `<work>/seed<seed>` (its own configs, runs and results; the dataset `<work>/shards` is shared)."""
    return Path(work) if seed is None else Path(work) / f"seed{seed}"


def ablation_config(row: Row, world: str | os.PathLike, work: str | os.PathLike, seed: int | None = None) -> Path:
    """`<seed work>/configs/<row>.yaml` for one ablation row (runs in `<seed work>/runs/<row>`; `seed_work`), trained
    with `seed` (None: the recipe's)."""
    work = Path(work)
    here = seed_work(work, seed)
    folder = here / "configs"
    init = None
    if row.init_from:
        init = here / "runs" / row.init_from[0] / row.init_from[1] / "final.safetensors"
    overrides = _merge({"train": {"batch": {"identities": ABLATION_BUDGET["identities"]}}}, row.overrides)
    if seed is not None:
        overrides["seed"] = seed
    cfg = config_dict(world, work / "shards", here / "runs" / row.name, row.stages, overrides, init, relative_to=folder)
    return write_config(folder / f"{row.name}.yaml", cfg, f"# ablation '{row.name}': {row.label}" +
                        (f" (training seed {seed})" if seed is not None else ""))


CONFIG_FILE = "toy_train.yaml"
"""The shipped HyperLoRA's trainer config, in the toy world's folder."""
SMOKE_STAGES: dict = {"base": {"steps": 2}, "clip_id": {"steps": 2}, "arcface_id": {"steps": 3, "decay_steps": 1}}


def config_file(base=None) -> str:
    """The trainer config's file name in the world's folder for toy base `base` (`models.ToyBase`; None: the UNet):
    `toy_train.yaml`, `toy_dit_train.yaml`."""
    return CONFIG_FILE if base is None or not base.prefix else f"toy_{base.prefix}train.yaml"


def shipped_config(world: str | os.PathLike, work: str | os.PathLike, stages: dict | None = None,
                   overrides: dict | None = None, base=None) -> Path:
    """`<world>/toy_train.yaml`: the shipped recipe, its dataset and run folder under `work`. `base`: the toy base
    (`models.ToyBase`) it trains for, None the UNet; another base's config (`toy_dit_train.yaml`) is the same
    recipe with `model.base` set to the base's profile, its own dataset (`<work>/dit_shards`: its caption
    encoder's conditioning) and run (`<work>/dit_run`)."""
    world = Path(world)
    prefix = base.prefix if base is not None else ""
    if prefix:
        overrides = _merge({"model": {"base": base.profile.name}}, overrides or {})
    cfg = config_dict(world, Path(work) / f"{prefix}shards", Path(work) / f"{prefix}run", stages or SHIPPED_STAGES,
                      overrides, relative_to=world)
    header = ("# The toy HyperLoRA's training config (hyperlora_core/toy/recipe.py). `make toy-world` writes the\n"
              f"# dataset and runs `python -m hyperlora_core.train fit --config {config_file(base)}`, then `export`.\n"
              "# Relative paths are relative to this file; model.checkpoint is the toy world in this folder.")
    return write_config(world / config_file(base), cfg, header)
