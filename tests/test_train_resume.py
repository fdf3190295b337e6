"""SIGKILL mid-stage, then resume: weights, optimiser state and losses equal an uninterrupted run's.

The runs train with SGD + momentum: the killed part runs in a child process, the resumed part in
this one, and SGD keeps float-rounding differences between processes and CPUs at rounding size
(fixtures/training.py says why and how close). Restoring Adam's own state exactly is
test_train_checkpointing's job.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from fixtures.training import SGD, assert_same_losses, assert_same_training
from fixtures.training import TINY_TRAIN_CONFIG as TINY
from safetensors.torch import load_file

from hyperlora_core.comfy_bridge.backbone import tiny_backbone
from hyperlora_core.train import checkpointing
from hyperlora_core.train.config import load_config
from hyperlora_core.train.distributed import init_distributed
from hyperlora_core.train.fit import fit, make_optimizer
from hyperlora_core.train.objective import HyperStep
from hyperlora_core.train.observe import read_losses
from hyperlora_core.train.schedule import lr_lambda
from hyperlora_core.train.setup import new_hyperlora, set_trainable
from hyperlora_core.train.synthetic import write_synthetic_dataset

ROOT = Path(__file__).resolve().parents[1]
SETS = ["train.samples.every=-1", "train.log.progress_bar=false", "train.checkpoint.every=2",
        "train.checkpoint.keep_last=3", "stages={base: {steps: 2}, clip_id: {steps: 6}}",
        "train.optimizer={" + ", ".join(f"{k}: {v}" for k, v in SGD.items()) + "}"]


pytestmark = pytest.mark.usefixtures("one_thread")


def _config(run: Path, data: Path):
    return load_config(TINY, [f"run_dir={run}", f"data.shards={data}", *SETS])


def _optimizer_state(cfg, ckpt: Path) -> tuple[dict, dict]:
    """Model and optimiser state of a checkpoint, restored into a fresh stage set-up."""
    from hyperlora_core.train.fit import close_session, open_session

    session = open_session(cfg)
    try:
        model = new_hyperlora(session.config, 123)  # different start: everything must come from the file
        set_trainable(model, "clip_id", cfg.trainable("clip_id"))
        step = HyperStep(model)
        opt = make_optimizer(step, cfg, "clip_id")
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda("constant", 0, 6))
        checkpointing.load_checkpoint(ckpt, step, opt, sched, init_distributed())
        return {k: v.clone() for k, v in step.state_dict().items()}, opt.state_dict()
    finally:
        close_session(session)


def test_sigkill_mid_stage_then_resume_equals_uninterrupted(tmp_path, comfyui_path):
    # one thread here (fixture) and OMP_NUM_THREADS=1 in the killed process: the same float reduction order
    data = tmp_path / "data"
    write_synthetic_dataset(data, tiny_backbone(0), identities=4, photos=3)
    fit(_config(tmp_path / "straight", data))

    run = tmp_path / "killed"
    cmd = [sys.executable, "-m", "hyperlora_core.train", "fit", "--config", str(TINY),
           "--set", f"run_dir={run}", "--set", f"data.shards={data}"]
    for s in SETS:
        cmd += ["--set", s]
    env = {**os.environ, "COMFYUI_PATH": str(comfyui_path), "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    marker = run / "clip_id" / "checkpoints" / "step-00000002" / "trainer.json"
    deadline = time.time() + 300
    while not marker.exists():
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        assert time.time() < deadline
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    assert not (run / "clip_id" / "final.safetensors").exists()  # really killed mid-stage
    killed_at = checkpointing.latest_checkpoint(run / "clip_id" / "checkpoints")
    partial = run / "clip_id" / "checkpoints" / ".tmp-step-00000099"  # as if killed while writing
    partial.mkdir()

    fit(_config(run, data))

    assert not partial.exists()
    straight, resumed = tmp_path / "straight" / "clip_id", run / "clip_id"
    assert_same_losses([r["loss"] for r in read_losses(resumed)], [r["loss"] for r in read_losses(straight)], "clip_id")
    assert [r["step"] for r in read_losses(resumed)] == list(range(1, 7))
    start = load_file(tmp_path / "straight" / "base" / "final.safetensors")
    a, b = load_file(straight / "final.safetensors"), load_file(resumed / "final.safetensors")
    assert_same_training(a, b, start, "final")
    # the optimiser state written after the resume equals the uninterrupted run's
    step = int(killed_at.name.split("-")[1]) + 2
    assert step <= 4, f"killed too late ({killed_at.name})"
    name = f"step-{step:08d}"
    m1, o1 = _optimizer_state(_config(tmp_path / "straight", data), straight / "checkpoints" / name)
    m2, o2 = _optimizer_state(_config(run, data), resumed / "checkpoints" / name)
    m0, _ = _optimizer_state(_config(tmp_path / "straight", data), straight / "checkpoints" / "step-00000002")
    assert_same_training(m1, m2, m0, f"{name} model")
    # the momentum sums past gradients, as the weights do: the same bound, measured from zero
    momentum = [{pid: st["momentum_buffer"] for pid, st in o["state"].items()} for o in (o1, o2)]
    assert_same_training(*momentum, {pid: torch.zeros_like(v) for pid, v in momentum[0].items()}, f"{name} momentum")
