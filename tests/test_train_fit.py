"""The fit loop on a tiny SDXL-architecture model: overfitting a fixed batch, and all four stages."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from fixtures.training import TINY_TRAIN_CONFIG as TINY

from hyperlora_core.comfy_bridge.backbone import tiny_backbone
from hyperlora_core.train.config import load_config
from hyperlora_core.train.fit import close_session, open_session
from hyperlora_core.train.objective import HyperStep, StepRunner
from hyperlora_core.train.setup import new_hyperlora, set_trainable
from hyperlora_core.train.synthetic import write_synthetic_dataset

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("train_fit_data")
    write_synthetic_dataset(folder, tiny_backbone(0), identities=4, photos=3)
    return folder


def tiny_config(run_dir: Path, data_dir: Path, **extra):
    overrides = {"run_dir": str(run_dir), "data": {"shards": str(data_dir)},
                 "train": {"log": {"progress_bar": False}}}
    for key, value in extra.items():
        node = overrides
        parts = key.split("__")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = value
    return load_config(TINY, overrides)


def test_loss_decreases_on_a_fixed_batch(tmp_path, data_dir):
    cfg = tiny_config(tmp_path / "run", data_dir, train__dropout={"text": 0.0, "face": 0.0, "base_lora": 0.0},
                      train__samples={"every": -1})
    session = open_session(cfg)
    try:
        model = new_hyperlora(session.config, seed=0)
        set_trainable(model, "arcface_id", cfg.trainable("arcface_id"))
        step = HyperStep(model)
        before = {k: v.detach().clone() for k, v in model.state_dict().items()}
        opt = torch.optim.AdamW([p for p in step.parameters() if p.requires_grad], lr=2e-2)
        runner = StepRunner("arcface_id", cfg, session.backbone, session.denoiser, session.hook_state, session.info.device)
        batch = session.source.batch("arcface_id", 0, with_base=True)
        losses = []
        for _ in range(12):
            loss = runner.loss(step, batch)
            loss.backward()
            session.hook_state.clear()
            opt.step()
            opt.zero_grad()
            losses.append(loss.item())
    finally:
        close_session(session)
    assert losses[-1] < 0.6 * losses[0], losses
    assert sum(b < a for a, b in zip(losses, losses[1:])) >= 8, losses
    after = model.state_dict()
    changed = {k.split(".")[0] for k in after if not torch.equal(after[k], before[k])}
    assert changed == {"id_projector", "resampler", "id_basis"}  # the stage's parts, and only those


def test_bf16_autocast_step_runs_and_stays_close_to_fp32(tmp_path, data_dir):
    losses = {}
    for precision in ("fp32", "bf16"):
        cfg = tiny_config(tmp_path / "run", data_dir, train__precision=precision, train__samples={"every": -1},
                          train__gradient_checkpointing=True)
        session = open_session(cfg)
        try:
            model = new_hyperlora(session.config, seed=0)
            with torch.no_grad():
                for p in model.id_basis.up.values():
                    p.normal_(0, 0.05)  # a non-zero LoRA, so its bf16 path matters
            set_trainable(model, "arcface_id", cfg.trainable("arcface_id"))
            step = HyperStep(model)
            runner = StepRunner("arcface_id", cfg, session.backbone, session.denoiser, session.hook_state, session.info.device)
            loss = runner.loss(step, session.source.batch("arcface_id", 0, with_base=True))
            loss.backward()
            session.hook_state.clear()
            grads = [p.grad for p in step.parameters() if p.requires_grad]
            assert all(g is not None and torch.isfinite(g).all() for g in grads)
            assert sum(g.abs().sum() for g in grads) > 0
            losses[precision] = loss.item()
        finally:
            close_session(session)
    assert losses["bf16"] == pytest.approx(losses["fp32"], rel=0.05)


def test_a_stage_with_its_own_caption_dropout_and_objective(tmp_path, data_dir):
    """`stages.<name>.text_dropout` empties that stage's captions only; its `objective` replaces train.loss's."""
    cfg = tiny_config(tmp_path / "run", data_dir, train__dropout={"text": 0.0, "face": 0.0, "base_lora": 0.0},
                      train__samples={"every": -1}, stages__base={"steps": 2, "text_dropout": 1.0, "objective": "x0"})
    session = open_session(cfg)
    try:
        base = session.source.batch("base", 0, with_base=True)
        other = session.source.batch("arcface_id", 0, with_base=True)
        assert base.drop_text.all() and not other.drop_text.any()
        for key, empty in session.dataset.empty.items():  # every caption key: the empty caption's
            assert torch.equal(base.cond[key][0], empty.to(base.cond[key].dtype)), key
        model = new_hyperlora(session.config, seed=0)
        runner = StepRunner("base", cfg, session.backbone, session.denoiser, session.hook_state, session.info.device)
        losses = {}
        for objective in ("x0", "eps"):
            runner.cfg = cfg if objective == "x0" else tiny_config(
                tmp_path / "run", data_dir, train__dropout={"text": 0.0, "face": 0.0, "base_lora": 0.0},
                train__samples={"every": -1}, stages__base={"steps": 2, "text_dropout": 1.0, "objective": "eps"})
            with torch.no_grad():
                losses[objective] = runner.loss(HyperStep(model), base).item()
            session.hook_state.clear()
    finally:
        close_session(session)
    assert losses["x0"] != pytest.approx(losses["eps"], rel=0.05)  # 1 vs 1/sigma^2 on the same errors
