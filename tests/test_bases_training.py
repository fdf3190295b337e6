"""The trainer's distributed and resume guarantees on every base the registry adds to SDXL (whose own cases are
tests/test_train_distributed.py and tests/test_train_resume.py), on tiny models from ComfyUI's classes:
torchrun with 2 gloo processes (DDP, FSDP2) equals one process, and a run SIGKILLed mid-stage and resumed
equals an uninterrupted one, within fixtures/training.py's bounds (SGD + momentum)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fixtures.training import SGD, TINY_TRAIN_CONFIG, assert_same_losses, assert_same_training
from safetensors.torch import load_file

from hyperlora_core.comfy_bridge.backbone import tiny_backbone
from hyperlora_core.comfy_bridge.bases import PROFILES
from hyperlora_core.config import LEGACY_BASE
from hyperlora_core.train.__main__ import main
from hyperlora_core.train.config import load_config
from hyperlora_core.train.fit import close_session, fit, open_session
from hyperlora_core.train.observe import read_losses
from hyperlora_core.train.setup import new_hyperlora
from hyperlora_core.train.synthetic import write_synthetic_dataset

pytestmark = pytest.mark.usefixtures("one_thread")

ROOT = Path(__file__).resolve().parents[1]
BASES = [name for name in PROFILES if name != LEGACY_BASE]
STAGES = {"base": 2, "clip_id": 2, "arcface_id": 2, "distill": 2}


def _sets(base: str) -> list[str]:
    return [f"model.base={base}", "train.samples.every=-1", "train.log.progress_bar=false",
            "train.optimizer={" + ", ".join(f"{k}: {v}" for k, v in SGD.items()) + "}",
            "stages={" + ", ".join(f"{k}: {{steps: {v}}}" for k, v in STAGES.items()) + "}"]


def _env(comfyui_path) -> dict:
    return {**os.environ, "COMFYUI_PATH": str(comfyui_path), "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}


@pytest.fixture(scope="module", params=BASES)
def base_data(request, tmp_path_factory) -> tuple[str, Path]:
    folder = tmp_path_factory.mktemp(f"{request.param}_data")
    write_synthetic_dataset(folder, tiny_backbone(0, base=request.param), identities=4, photos=3)
    return request.param, folder


@pytest.fixture(scope="module")
def single_run(tmp_path_factory, base_data) -> Path:
    """One process on the tiny base, every stage (the reference for the two-process runs)."""
    base, data = base_data
    root = tmp_path_factory.mktemp(f"{base}_dist")
    sets = [f"run_dir={root / 'single'}", f"data.shards={data}", *_sets(base)]
    assert main(["fit", "--config", str(TINY_TRAIN_CONFIG), *[x for s in sets for x in ("--set", s)]]) == 0
    cfg = load_config(TINY_TRAIN_CONFIG, sets)
    session = open_session(cfg)
    try:  # the weights the first stage starts from (the trainer's seeded initialisation)
        new_hyperlora(session.config, cfg.seed).save_single_file(root / "init.safetensors", dtype=None)
    finally:
        close_session(session)
    return root


@pytest.mark.parametrize("mode", ["ddp", "fsdp2"])
def test_two_processes_match_one(single_run, base_data, mode, comfyui_path):
    base, data = base_data
    root = single_run
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "hyperlora_core.train", "fit", "--config", str(TINY_TRAIN_CONFIG)]
    for s in [f"run_dir={root / mode}", f"data.shards={data}", f"train.distributed={mode}", *_sets(base)]:
        cmd += ["--set", s]
    proc = subprocess.run(cmd, env=_env(comfyui_path), cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    init = load_file(root / "init.safetensors")
    for stage, steps in STAGES.items():
        one = [r["loss"] for r in read_losses(root / "single" / stage)]
        assert len(one) == steps
        assert_same_losses(one, [r["loss"] for r in read_losses(root / mode / stage)], f"{base} {stage}")
        assert_same_training(load_file(root / "single" / stage / "final.safetensors"),
                             load_file(root / mode / stage / "final.safetensors"), init, f"{base} {mode} {stage}")


def test_sigkill_mid_stage_then_resume_equals_uninterrupted(tmp_path, base_data, comfyui_path):
    """Killed after its clip_id checkpoint at step 2 and resumed, a run ends where an uninterrupted run ends."""
    base, data = base_data
    sets = [f"data.shards={data}", *_sets(base), "train.checkpoint.every=2", "train.checkpoint.keep_last=3",
            "stages={base: {steps: 2}, clip_id: {steps: 6}}"]
    fit(load_config(TINY_TRAIN_CONFIG, [f"run_dir={tmp_path / 'straight'}", *sets]))
    run = tmp_path / "killed"
    cmd = [sys.executable, "-m", "hyperlora_core.train", "fit", "--config", str(TINY_TRAIN_CONFIG)]
    for s in [f"run_dir={run}", *sets]:
        cmd += ["--set", s]
    proc = subprocess.Popen(cmd, env=_env(comfyui_path), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
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

    fit(load_config(TINY_TRAIN_CONFIG, [f"run_dir={run}", *sets]))

    one, two = tmp_path / "straight" / "clip_id", run / "clip_id"
    assert [r["step"] for r in read_losses(two)] == list(range(1, 7))
    assert_same_losses([r["loss"] for r in read_losses(two)], [r["loss"] for r in read_losses(one)], "clip_id")
    assert_same_training(load_file(one / "final.safetensors"), load_file(two / "final.safetensors"),
                         load_file(tmp_path / "straight" / "base" / "final.safetensors"), f"{base} final")
