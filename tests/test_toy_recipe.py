"""The toy HyperLoRA's recipe table: the shipped config and every ablation row are valid trainer configs."""

from __future__ import annotations

from hyperlora_core.toy.recipe import ABLATION_BUDGET, ABLATIONS, ROW, ablation_config, shipped_config
from hyperlora_core.train.config import load_config, prerequisite
from hyperlora_core.train.fit import check_prerequisites, start_weights


def _total_steps(cfg) -> int:
    return sum(cfg.stages[s].steps for s in cfg.stage_names())


def test_every_ablation_row_is_a_valid_config_on_one_budget(tmp_path):
    budget = ABLATION_BUDGET["base"] + ABLATION_BUDGET["clip_id"] + ABLATION_BUDGET["arcface_id"]
    for row in ABLATIONS:
        cfg = load_config(ablation_config(row, tmp_path / "world", tmp_path / "work"))
        check_prerequisites(cfg)  # raises if a stage lacks what it builds on
        shared = ROW[row.init_from[0]].stages[row.init_from[1]]["steps"] if row.init_from else 0
        assert _total_steps(cfg) + shared == budget, row.name
        assert cfg.train.batch.identities == ABLATION_BUDGET["identities"]
        assert cfg.stages[cfg.stage_names()[-1]].decay_steps == ABLATION_BUDGET["decay"]
        if row.init_from:  # starts from the shared Base warm-up of another row
            assert cfg.hypernetwork.init.endswith(f"runs/{row.init_from[0]}/{row.init_from[1]}/final.safetensors")
            assert start_weights(cfg, cfg.stage_names()[0]) is not None


def test_rows_differ_from_the_full_recipe_in_what_their_name_says(tmp_path):
    cfgs = {r.name: load_config(ablation_config(r, tmp_path / "world", tmp_path / "work")) for r in ABLATIONS}
    full = cfgs["full"]
    assert full.stage_names() == ["base", "clip_id", "arcface_id"] and full.hypernetwork.base_rank
    assert cfgs["id_only"].hypernetwork.base_rank is None
    assert cfgs["no_clip_stage"].stage_names() == ["arcface_id"]
    joint = cfgs["no_base_warmup"]
    assert "base" not in joint.stage_names() and prerequisite("clip_id", joint) is None
    assert {"base_resampler", "base_basis"} <= set(joint.trainable("arcface_id"))
    assert prerequisite("clip_id", full) == "base"  # a frozen Base-LoRA must be warmed up first
    for name in ("id_only_same_photo", "full_same_photo"):
        assert cfgs[name].train.references == "same_photo"
    assert full.train.references == "other_photos"
    for name, cfg in cfgs.items():  # everything not named stays the full recipe's
        assert cfg.train.optimizer == full.train.optimizer and cfg.train.loss == full.train.loss, name
        assert cfg.train.dropout == full.train.dropout and cfg.seed == full.seed, name


def test_shipped_config_lives_in_the_world_folder_with_relative_paths(tmp_path):
    world = tmp_path / "toy"
    path = shipped_config(world, tmp_path / "work")
    text = path.read_text()
    assert path == world / "toy_train.yaml" and str(tmp_path) not in text
    cfg = load_config(path)
    check_prerequisites(cfg)
    assert cfg.stage_names() == ["base", "clip_id", "arcface_id"]
    assert cfg.model.backbone == "toy" and cfg.model.checkpoint == str(world.resolve())
    assert cfg.hypernetwork.base_rank == 1  # rank 1 learned the base factors as well as 2 (BASE_WARMUP's note)
    assert (cfg.loss_for("base").objective, cfg.text_dropout_for("base")) == ("x0", 1.0)
    assert (cfg.loss_for("arcface_id").objective, cfg.text_dropout_for("arcface_id")) == ("eps", 0.5)
