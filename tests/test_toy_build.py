"""`make toy-world`'s recipe cannot rot: every stage runs a few steps on a small data set, the
HyperLoRA stage through the project's trainer (`train fit` + `train export`) as in the full build."""

from __future__ import annotations

import json

import pytest
import torch

from hyperlora_core.toy import files, world
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
    assert set(recorded["stages"]) == {"judge", "base_judge", "arcface", "clip", "vae", "base", "hyper"}
    # where each part trained is recorded and on the card (no GPU here: every stage says cpu)
    expected_device = "cpu" if not torch.cuda.is_available() else None
    if expected_device:
        assert {s["device"] for s in recorded["stages"].values()} == {expected_device}
    hyper = stats["stages"]["hyper"]
    # the trainer's run (Base warm-up 2, clip_id 2, arcface_id 3 steps): the clip_id result, an arcface_id checkpoint
    # (every 2 steps) and its result, each measured; the Base warm-up makes no ID-LoRA to measure
    assert [(r["step"], r["stage"]) for r in hyper["match_curve"]] == [(4, "clip"), (6, "id+clip"), (7, "id+clip")]
    assert all(0 <= r["match_1ref"] <= 1 for r in hyper["match_curve"])
    assert 0 <= hyper["no_lora_match"] <= 1 and set(hyper["losses"]) == {"base", "clip_id", "arcface_id"}
    from hyperlora_core.train.config import load_config

    cfg = load_config(tmp_path / "toy_train.yaml")  # the config the HyperLoRA was trained with, as written
    assert cfg.model.backbone == "toy" and cfg.stage_names() == ["base", "clip_id", "arcface_id"]
    ev = stats["eval"]
    assert 0 <= ev["with_lora_1ref"] <= 1 and ev["identities"] == 2
    card = (tmp_path / "MODEL_CARD.md").read_text()
    assert f"heldout_match_with_lora={ev['with_lora_1ref']:.3f}" in card
    assert "| 7 | id+clip |" in card  # the curve's last row, from the stats
    assert "| trained on |" in card and f"| {recorded['stages']['base']['device']} |" in card
    for fig in ("match_curve.png", "heldout_grid.png", "metrics_vs_strength.png"):
        assert (tmp_path / "figures" / fig).stat().st_size > 1000, fig

    from hyperlora_core.toy.world_loader import ToyWorld

    toy = ToyWorld.load(tmp_path)  # every part through the same loaders the nodes and demo use
    assert len(toy.hyperlora.config.modules) == 22 and toy.hyperlora.config.rank == 4
    assert toy.hyperlora.config.face_pack == world.NAME and toy.hyperlora.config.has_base  # the full recipe
    photos = torch.rand(2, 3, 32, 32)
    lora = toy.lora_for(*toy.conditioner(photos))
    assert len(lora) == 22 * 4 * 3

    # the trainer trained: the LoRA basis' up factors start at zero (a fresh HyperLoRA's LoRA changes nothing) and
    # the exported model's are not
    ups = [v for k, v in lora.items() if k.endswith(".lora_up.weight")]
    assert sum(float(u.abs().sum()) for u in ups) > 0, "the exported HyperLoRA's LoRA is still zero: nothing trained"
    # what the build recorded is what its world does: the same measurement (`measure.strength_sweep`), re-run on
    # the files it wrote with the build's one thread, gives the recorded numbers
    from hyperlora_core.toy.measure import strength_sweep

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        again = strength_sweep(toy, ev["identities"], (0.5, 1.0), steps=4, folder=tmp_path)
    finally:
        torch.set_num_threads(threads)
    assert abs(again.mean("ID-LoRA x1") - ev["with_lora_1ref"]) < 1e-6 and abs(again.mean("no LoRA") - ev["without"]) < 1e-6
    assert "ID-LoRA x1 at 0.5" in ev["strength_table"] and "ID + Base" in ev["strength_table"]


@pytest.mark.parametrize("device", ["cuda:99", "gpu"])
def test_a_device_torch_cannot_use_is_refused_before_any_work(capsys, tmp_path, device):
    with pytest.raises(SystemExit):
        main(["--smoke", "--stages", "judge", "--out", str(tmp_path), "--device", device])
    err = capsys.readouterr().err
    assert f"--device {device}: torch cannot use it here" in err and "pick cpu" in err
    assert not any(tmp_path.iterdir()), "nothing may be written before the device is known to work"


def test_unknown_stage_is_refused_before_any_work(capsys):
    with pytest.raises(SystemExit):
        main(["--stages", "judge,hyperloop"])
    assert "unknown stage(s) ['hyperloop']" in capsys.readouterr().err
