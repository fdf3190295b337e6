"""`make toy-world`'s recipe cannot rot: every stage runs a few steps on a small data set, the
HyperLoRA stage through the project's trainer (`train fit` + `train export`) as in the full build."""

from __future__ import annotations

import json

import torch

from hyperlora_core.toy import files
from hyperlora_core.toy.build import main


def _build(args: list[str]) -> dict:
    threads = torch.get_num_threads()
    try:
        return main(["--smoke", "--threads", "1", *args])
    finally:
        torch.set_num_threads(threads)


def test_every_build_stage_runs_and_writes_loadable_files(tmp_path):
    stats = _build(["--out", str(tmp_path)])
    for part in files.FILES:
        assert files.part_path(part, tmp_path).is_file(), part
    recorded = json.loads((tmp_path / files.STATS_FILE).read_text())
    assert set(recorded["stages"]) == {"judge", "arcface", "clip", "vae", "base", "hyper"}
    assert all(s["minutes"] >= 0 and s["cpu_minutes"] >= 0 for s in recorded["stages"].values())
    hyper = stats["stages"]["hyper"]
    assert hyper["trainer"].startswith("python -m hyperlora_core.train fit")
    assert [r["stage"] for r in hyper["match_curve"]] == ["clip", "id+clip", "id+clip"]  # final clip_id, ckpt, final
    assert 0 <= hyper["no_lora_match"] <= 1 and set(hyper["losses"]) == {"clip_id", "arcface_id"}
    config = (tmp_path / "toy_train.yaml").read_text()
    assert "backbone: toy" in config and "clip_id" in config and "arcface_id" in config
    ev = stats["eval"]
    assert ev["summary_line"].startswith("heldout_match_with_lora=") and "| no LoRA |" in ev["table"]
    card = (tmp_path / "MODEL_CARD.md").read_text()
    assert "Held-out match over training" in card and "hyper_lora/toy_hyperlora.safetensors" in card
    for fig in ("match_curve.png", "heldout_grid.png", "metrics_vs_strength.png"):
        assert (tmp_path / "figures" / fig).stat().st_size > 1000, fig

    from hyperlora_core.toy.evaluate import ToyWorld
    from hyperlora_core.toy.hyper import FACE_PACK

    toy = ToyWorld.load(tmp_path)  # every part through the same loaders the nodes and demo use
    assert len(toy.hyperlora.config.modules) == 22 and toy.hyperlora.config.rank == 4
    assert toy.hyperlora.config.face_pack == FACE_PACK
    photos = torch.rand(2, 3, 32, 32)
    lora = toy.lora_for(*toy.conditioner(photos))
    assert len(lora) == 22 * 4 * 3

    # the toy world's own reference loop (hyperlora_core.toy.hyper) still runs on the same world
    own = _build(["--out", str(tmp_path), "--stages", "hyper", "--hyper-trainer", "toy-loop"])
    assert own["stages"]["hyper"]["trainer"] == "hyperlora_core.toy.hyper.train_hyperlora"
