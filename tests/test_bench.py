"""The benchmark scripts: the shared measuring method, and the GPU check at tiny size on the CPU.

`bench/gpu.py` is run on a GPU only now and then; running it here at tiny size through every part
(the same code paths, ComfyUI's model management, DDP and FSDP2 on a gloo group) keeps it from rotting.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from _measure import Stat, interleaved  # noqa: E402


def test_interleaved_alternates_order_and_pairs_ratios_by_round():
    calls: list[str] = []
    drift = iter([1 + 0.02 * k for k in range(100)])  # the machine gets 2 % slower with every call

    def timed(name: str, cost: float):
        def f() -> float:
            calls.append(name)
            return cost * next(drift)
        return f

    r = interleaved({"a": timed("a", 1.0), "b": timed("b", 2.0)}, rounds=4, baseline="a", warmup=1)
    assert calls == ["a", "b", "a", "b", "b", "a", "a", "b", "b", "a"]  # warm-up, then alternating rounds
    assert len(r.times["a"]) == len(r.times["b"]) == 4
    # per-round pairing: b costs twice a, up to the 2 % drift between the two calls of a round
    assert all(1.9 < x < 2.1 for x in (b / a for a, b in zip(r.times["a"], r.times["b"])))
    assert r.ratio("b").median == pytest.approx(2.0, abs=0.05)


def test_stat_median_and_spread():
    s = Stat.of([1.0, 2.0, 3.0, 4.0, 100.0])
    assert s.median == 3.0
    assert s.q1 == 2.0 and s.q3 == 4.0  # the outlier does not move the quartiles
    assert s.half_spread == pytest.approx(1 / 3)
    with pytest.raises(ValueError):
        Stat.of([])


def run_gpu_check(tmp_path, comfyui_path, parts: str) -> tuple[dict, str]:
    """`bench/gpu.py --tiny --parts <parts>` in its own process: (its figures, its stdout)."""
    out = tmp_path / "gpu.json"
    env = {"COMFYUI_PATH": str(comfyui_path), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "2"}
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "gpu.py"), "--tiny", "--parts", parts, "--json", str(out)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return json.loads(out.read_text()), proc.stdout


@pytest.mark.usefixtures("comfyui_path")
def test_gpu_check_runs_every_part_at_tiny_size(tmp_path, comfyui_path):
    """Every part but `flux` (its own test below)."""
    figures, stdout = run_gpu_check(tmp_path, comfyui_path, "mm,generate,photo,sample,train,toy")
    assert figures["failed_parts"] == "none"
    assert figures["device"] == "CPU"
    numbers = {k: v for k, v in figures.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    assert all(math.isfinite(v) for v in numbers.values()), numbers
    for photos in (1, 4):
        for dtype in ("float16", "bfloat16"):
            assert figures[f"generate_{dtype}_{photos}photo_speedup"] > 0
        assert figures[f"photo_path_{photos}photo_ms_per_photo"] > 0
    assert figures["photo_path_face_provider"] == "CPUExecutionProvider"
    assert figures["sample_lora_step_ratio"] > 0 and figures["sample_ip_adapter_step_ratio"] > 0
    trained = [k for k in figures if k.startswith("train_") and k.endswith("_ratio")]
    assert {"train_batch_1_grad_ckpt_off_ratio", "train_batch_4_grad_ckpt_on_ratio",
            "train_batch_1_ckpt_on_ddp_gloo_ratio", "train_batch_1_ckpt_on_fsdp2_gloo_ratio"} <= set(trained)
    assert "the step module is a DistributedDataParallel" in stdout
    assert figures["toy_build_stages_on_device"] == 1  # the judge (all 7 stages on a GPU)
    assert "gpu_check_failed_parts=none" in stdout
    # the generation-gap instrumentation: five paths, the ComfyUI-loaded model gives the direct LoRA bit for bit
    assert figures["generate_path_same_lora"] is True
    for path in ("direct", "comfy", "node", "after_face", "after_face_spinning"):
        assert figures[f"generate_path_{path}_ms"] > 0
    assert all(f"generate_phase_{path}_{phase}_ms" in figures for path in ("direct", "after_face_spinning")
               for phase in ("tokens", "mix", "copy_and_check"))


@pytest.mark.usefixtures("comfyui_path")
def test_gpu_check_flux_part_at_tiny_size(tmp_path, comfyui_path):
    """The FLUX.1-dev part at tiny size: sizes from the profile's target table, generation, Apply's merge checked
    weight by weight, sampling merged vs bare, the training step at batches 1 and 2."""
    from fixtures.bases import in_out, tiny_model

    figures, _ = run_gpu_check(tmp_path, comfyui_path, "flux")
    assert figures["failed_parts"] == "none"
    profile, model = tiny_model("flux")
    specs = profile.module_specs(model)  # the default target set, image_attention
    layers = sum(len(s.layers) for s in specs)
    assert figures["flux_layers"] == layers and figures["flux_in_out"] == in_out(specs)
    assert figures["flux_id_basis_params"] == figures["flux_basis_size"] * figures["flux_rank"] * in_out(specs)
    assert figures["flux_transformer_params"] == sum(p.numel() for p in model.model.diffusion_model.parameters())
    assert figures["flux_hypernetwork_params"] > figures["flux_id_basis_params"]
    # merged weights = W + s * alpha / r * up @ down on every target, and nothing else patched
    assert figures["flux_merge_weights"] == layers
    assert figures["flux_merge_within_rounding"] is True and figures["flux_merge_only_targets"] is True
    for photos in (1, 4):
        assert figures[f"flux_generate_{photos}photo_ms"] > 0
    assert figures["flux_switch_to_lora_s"] > 0 and math.isfinite(figures["flux_merge_s"])  # a difference: noise may sign it
    assert figures["flux_sample_bare_step_ms"] > 0
    assert figures["flux_sample_lora_step_ratio"] > 0
    for batch in (1, 2):
        assert figures[f"flux_train_batch_{batch}_ms"] > 0 and figures[f"flux_train_batch_{batch}_ratio"] > 0


def test_pack_copies_importable_comfy_source_within_the_carry_limit(tmp_path, comfyui_path):
    sys.path.insert(0, str(ROOT))
    from scripts.pack_gpu import LIMIT, RUN_THERE, copy_comfy, repository_size

    assert RUN_THERE in (ROOT / "README.md").read_text()  # the next GPU session's one command, as README gives it

    size = copy_comfy(comfyui_path, tmp_path / "ComfyUI")
    copied = tmp_path / "ComfyUI"
    assert (copied / "comfy" / "model_management.py").is_file()
    assert (copied / "comfy" / "clip_vision_config_vitl.json").is_file()  # data files travel too
    assert not (copied / "tests").exists() and not (copied / "custom_nodes").exists()
    assert not list(copied.rglob("__pycache__"))
    assert 5 * 2**20 < size < 40 * 2**20
    assert repository_size() + size < LIMIT
