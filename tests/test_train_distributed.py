"""Two-process torchrun (gloo) with DDP and with FSDP2 equals one process with the same global batch.

What must be equal, and only that: the per-step losses and the weights after each stage, trained with
SGD. Two processes and one differ only in float rounding (each rank sums half the batch and the
all-reduce averages the halves; one process sums the whole batch); the tolerances and why they hold
on any CPU are in fixtures/training.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from fixtures.training import SGD, assert_same_losses, assert_same_training
from fixtures.training import TINY_TRAIN_CONFIG as TINY
from safetensors.torch import load_file

from hyperlora_core.comfy_bridge.backbone import tiny_backbone
from hyperlora_core.train.config import load_config
from hyperlora_core.train.fit import close_session, fit, open_session
from hyperlora_core.train.observe import read_losses
from hyperlora_core.train.setup import new_hyperlora
from hyperlora_core.train.synthetic import write_synthetic_dataset

ROOT = Path(__file__).resolve().parents[1]
STAGES = {"base": {"steps": 2}, "clip_id": {"steps": 2}, "arcface_id": {"steps": 2}, "distill": {"steps": 2}}


pytestmark = pytest.mark.usefixtures("one_thread")


def overrides(run_dir: Path, data_dir: Path) -> dict:
    return {"run_dir": str(run_dir), "data": {"shards": str(data_dir)}, "stages": STAGES,
            "train": {"samples": {"every": -1}, "log": {"progress_bar": False}, "optimizer": SGD}}


@pytest.fixture(scope="module")
def single_run(tmp_path_factory):
    """The reference: one process, global batch 2 identities x 2 photos."""
    root = tmp_path_factory.mktemp("train_dist")
    write_synthetic_dataset(root / "data", tiny_backbone(0), identities=4, photos=3)
    cfg = load_config(TINY, overrides(root / "single", root / "data"))
    fit(cfg)
    session = open_session(cfg)
    try:  # the weights the first stage starts from (the trainer's seeded initialisation)
        new_hyperlora(session.config, cfg.seed).save_single_file(root / "init.safetensors", dtype=None)
    finally:
        close_session(session)
    return root


@pytest.mark.parametrize("mode", ["ddp", "fsdp2"])
def test_two_processes_match_one(single_run, mode, comfyui_path):
    root = single_run
    env = {**os.environ, "COMFYUI_PATH": str(comfyui_path), "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    sgd = ", ".join(f"{k}: {v}" for k, v in SGD.items())
    sets = [f"run_dir={root / mode}", f"data.shards={root / 'data'}", "train.samples.every=-1",
            "train.log.progress_bar=false", f"train.distributed={mode}", f"train.optimizer={{{sgd}}}",
            "stages={" + ", ".join(f"{k}: {{steps: {v['steps']}}}" for k, v in STAGES.items()) + "}"]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "hyperlora_core.train", "fit", "--config", str(TINY)]
    for s in sets:
        cmd += ["--set", s]
    proc = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    init = load_file(root / "init.safetensors")
    for stage in STAGES:
        one = [r["loss"] for r in read_losses(root / "single" / stage)]
        two = [r["loss"] for r in read_losses(root / mode / stage)]
        assert len(one) == STAGES[stage]["steps"]
        assert_same_losses(one, two, stage)
        a = load_file(root / "single" / stage / "final.safetensors")
        b = load_file(root / mode / stage / "final.safetensors")
        assert_same_training(a, b, init, f"{mode} {stage}")
