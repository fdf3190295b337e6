"""The trainer's YAML config: strict keys, value checks, stage prerequisites, example configs."""

from __future__ import annotations

from pathlib import Path

import pytest

from hyperlora_core.errors import HyperLoRAError
from hyperlora_core.train.config import STAGE_ORDER, load_config, parse_config
from hyperlora_core.train.fit import check_prerequisites

CONFIGS = Path(__file__).resolve().parents[1] / "hyperlora_core" / "train" / "configs"
MINIMAL = "run_dir: r\ndata: {shards: d}\nstages: {base: {steps: 2}}\n"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("trian: {}\n", "unknown key 'trian' at the top level; allowed keys: run_dir, data, model, hypernetwork, train"),
        ("train: {optimiser: {lr: 1}}\n", "unknown key 'optimiser' in 'train'; allowed keys: precision,"),
        ("train: {loss: {objectve: eps}}\n", "unknown key 'objectve' in 'train.loss'; allowed keys: objective,"),
        ("hypernetwork: {resampler: {width: 3}}\n", "unknown key 'width' in 'hypernetwork.resampler'; allowed keys: dim,"),
    ],
)
def test_unknown_keys_name_the_key_and_the_allowed_ones(extra, message):
    with pytest.raises(HyperLoRAError, match=message.replace("(", r"\(")):
        parse_config(MINIMAL + extra)


def test_unknown_stage_and_stage_keys():
    with pytest.raises(HyperLoRAError, match="unknown stage 'warmup'; allowed stages: base, clip_id, arcface_id, distill"):
        parse_config("run_dir: r\ndata: {shards: d}\nstages: {warmup: {steps: 2}}\n")
    with pytest.raises(HyperLoRAError, match="unknown key 'step' in 'stages.base'; allowed keys: steps,"):
        parse_config("run_dir: r\ndata: {shards: d}\nstages: {base: {step: 2}}\n")


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("train: {batch: {identities: two}}\n", "'train.batch.identities' must be int; found 'two'"),
        ("train: {precision: fp8}\n", "'train.precision' is 'fp8'; allowed: fp32, bf16, fp16"),
        ("train: {dropout: {text: 1.5}}\n", r"train.dropout.text must be in \[0, 1\]"),
        ("train: {loss: {t_min: 900, t_max: 100}}\n", "t_min < t_max"),
        ("model: {backbone: checkpoint}\n", "model.checkpoint"),
        ("hypernetwork: {base_rank: null}\n", "stage 'base' needs the Base-LoRA branch but hypernetwork.base_rank is null"),
        ("stages: {base: {steps: 2, objective: v-pred}}\n", "'stages.base.objective' is 'v-pred'; allowed: eps, v, x0"),
        ("stages: {base: {steps: 2, text_dropout: 2}}\n", "stages.base.text_dropout must be between 0 and 1; found 2.0"),
    ],
)
def test_bad_values(extra, message):
    with pytest.raises(HyperLoRAError, match=message):
        parse_config(MINIMAL + extra)


def test_a_stage_may_set_its_own_objective_and_caption_dropout():
    cfg = parse_config("run_dir: r\ndata: {shards: d}\ntrain: {loss: {objective: eps, min_snr_gamma: 5, t_min: 100}, "
                       "dropout: {text: 0.5}}\n"
                       "stages: {base: {steps: 2, objective: x0, text_dropout: 1.0}, clip_id: {steps: 2}}\n")
    base, clip = cfg.loss_for("base"), cfg.loss_for("clip_id")
    assert (base.objective, base.min_snr_gamma, base.t_min, cfg.text_dropout_for("base")) == ("x0", None, 100, 1.0)
    assert (clip.objective, clip.min_snr_gamma, cfg.text_dropout_for("clip_id")) == ("eps", 5.0, 0.5)


def test_required_and_empty():
    with pytest.raises(HyperLoRAError, match="'data' is required"):
        parse_config("run_dir: r\nstages: {base: {}}\n")
    with pytest.raises(HyperLoRAError, match="'stages' is empty"):
        parse_config("run_dir: r\ndata: {shards: d}\n")
    with pytest.raises(HyperLoRAError, match="not valid YAML"):
        parse_config("run_dir: [\n")


def test_stage_without_its_prerequisite(tmp_path):
    cfg = parse_config(f"run_dir: {tmp_path}\ndata: {{shards: d}}\nstages: {{arcface_id: {{steps: 2}}}}\n")
    with pytest.raises(HyperLoRAError, match="stage 'arcface_id' needs stage 'clip_id' to have finished first"):
        check_prerequisites(cfg)
    cfg = parse_config(f"run_dir: {tmp_path}\ndata: {{shards: d}}\nstages: {{clip_id: {{steps: 2}}, distill: {{}}}}\n")
    with pytest.raises(HyperLoRAError, match="stage 'clip_id' needs stage 'base'"):
        check_prerequisites(cfg)
    # listed earlier, finished in the run folder, or waived by an init checkpoint: fine
    check_prerequisites(parse_config(f"run_dir: {tmp_path}\ndata: {{shards: d}}\nstages: {{base: {{}}, clip_id: {{}}}}\n"))
    (tmp_path / "clip_id").mkdir()
    (tmp_path / "clip_id" / "final.safetensors").write_bytes(b"")
    check_prerequisites(parse_config(f"run_dir: {tmp_path}\ndata: {{shards: d}}\nstages: {{arcface_id: {{}}}}\n"))
    check_prerequisites(parse_config(
        f"run_dir: {tmp_path / 'other'}\ndata: {{shards: d}}\nhypernetwork: {{init: x}}\nstages: {{distill: {{}}}}\n"))


def test_overrides_and_relative_paths(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(MINIMAL + "train: {batch: {identities: 2}}\n")
    cfg = load_config(path, ["train.batch.identities=4", "stages={base: {steps: 7}}", "train.optimizer.lr=1e-5"])
    assert cfg.train.batch.identities == 4 and cfg.stages["base"].steps == 7
    assert cfg.train.optimizer.lr == pytest.approx(1e-5)
    assert cfg.run_dir == str((tmp_path / "r").resolve()) and cfg.data.shards == str((tmp_path / "d").resolve())
    with pytest.raises(HyperLoRAError, match="key.path=value"):
        load_config(path, ["train.batch.identities"])


@pytest.mark.parametrize("name", ["tiny.yaml", "sdxl.yaml", "flux.yaml"])
def test_example_configs_are_valid(name):
    cfg = load_config(CONFIGS / name)
    assert cfg.stage_names() == list(STAGE_ORDER)
    check_prerequisites(cfg)


def test_decay_tail_leaves_the_earlier_steps_alone():
    """A finished stage lengthened with a cosine tail replays its first steps at the same lr, so
    resuming it from a checkpoint equals training the longer stage from scratch."""
    from hyperlora_core.train.schedule import lr_lambda

    plain, tail = lr_lambda("constant", 50, 1000), lr_lambda("constant", 50, 1750, 750)
    assert [tail(s) for s in range(1000)] == [plain(s) for s in range(1000)]
    assert tail(1000) == 1.0 and 0.49 < tail(1375) < 0.51 and tail(1749) < 1e-4
    assert all(tail(s) >= tail(s + 1) for s in range(1000, 1749))
    cfg = parse_config(MINIMAL.replace("{steps: 2}", "{steps: 10, decay_steps: 4}"))
    assert cfg.stages["base"].decay_steps == 4
    with pytest.raises(HyperLoRAError, match=r"stages.base.decay_steps must be between 0 and the stage's steps \(2\)"):
        parse_config(MINIMAL.replace("{steps: 2}", "{steps: 2, decay_steps: 3}"))


def test_backbones_come_from_a_registry(monkeypatch):
    """`model.backbone` names a registered kind: its factory builds the backbone, its defaults travel with it."""
    from hyperlora_core.comfy_bridge import backbone
    from hyperlora_core.train.fit import build_backbone

    monkeypatch.setattr(backbone, "_KINDS", dict(backbone._KINDS))
    calls = []

    def load(**model) -> backbone.Backbone:
        calls.append(model)
        return backbone.Backbone(unet=None, clip=None, vae=None, clip_vision=None, name="made", profile=None)

    backbone.register_backbone(backbone.BackboneKind("mine", load, resolution=48, needs_checkpoint=True))
    with pytest.raises(HyperLoRAError, match="model.backbone is 'mine' but model.checkpoint is not set"):
        parse_config(MINIMAL + "model: {backbone: mine}\n")
    cfg = parse_config(MINIMAL + "model: {backbone: mine, checkpoint: /w, tiny_seed: 3}\n")
    assert build_backbone(cfg).name == "made"
    assert calls == [{"checkpoint": "/w", "clip_vision": None, "seed": 3, "base": None}]
    build_backbone(parse_config(MINIMAL + "model: {backbone: mine, checkpoint: /w, base: sd15}\n"))
    assert calls[-1]["base"] == "sd15"  # model.base reaches the factory
    with pytest.raises(HyperLoRAError, match=r"model.base: 'sd3' is not a base HyperLoRA supports; supported: SDXL"):
        parse_config(MINIMAL + "model: {backbone: mine, checkpoint: /w, base: sd3}\n")
    with pytest.raises(HyperLoRAError, match="'model.backbone' is 'sd15'; allowed: tiny, checkpoint, ") as refused:
        parse_config(MINIMAL + "model: {backbone: sd15}\n")
    assert {"mine", "toy"} <= set(str(refused.value).rstrip(".").split("allowed: ")[1].split(", "))
    # the toy world registers itself when first named (the trainer never imports it)
    assert backbone.backbone_kind("toy").resolution == 32
