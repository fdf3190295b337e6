"""`make demo` chooses the real models only when every one is in the host's folders."""

from __future__ import annotations

from scripts.demo import find_real_models


def _touch(path, text=""):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_real_models_are_found_in_the_host_folders(tmp_path):
    m = tmp_path / "models"
    _touch(m / "checkpoints" / "sd_xl_base_1.0.safetensors")
    _touch(m / "clip_vision" / "clip_vit_large_patch14.safetensors")
    _touch(m / "hyper_lora" / "sdxl_hyper_id_lora_v1_fidelity" / "hyper_lora_modules.json", "{}")
    _touch(m / "insightface" / "models" / "antelopev2" / "glintr100.onnx")
    photo = tmp_path / "me.png"
    _touch(photo)
    found, missing = find_real_models(tmp_path, str(photo))
    assert missing == []
    assert found["hyperlora"] == "sdxl_hyper_id_lora_v1_fidelity" and found["faces"] == "antelopev2"


def test_stand_ins_are_used_when_anything_is_missing(tmp_path):
    m = tmp_path / "models"
    _touch(m / "checkpoints" / "any_sdxl.safetensors")
    _touch(m / "insightface" / "models" / "antelopev2" / "tiny_det.onnx")
    _touch(m / "insightface" / "models" / "antelopev2" / "STANDIN.txt")  # a stand-in pack is not the real one
    found, missing = find_real_models(tmp_path, None)
    assert found["ckpt"] == "any_sdxl.safetensors"
    assert any("antelopev2" in x for x in missing) and any("CLIP" in x for x in missing)
    assert any("photo" in x for x in missing) and any("HyperLoRA" in x for x in missing)


def test_make_demo_runs_the_toy_world_over_the_http_api(tmp_path):
    """Without real models `make demo` personalises never-seen toy identities through ComfyUI's HTTP API
    and ends with the summary line (a short run: 2 identities, 6 sampler steps)."""
    import os
    import re
    import subprocess
    import sys
    from pathlib import Path

    from PIL import Image

    root = Path(__file__).resolve().parents[1]
    out = tmp_path / "demo"
    proc = subprocess.run([sys.executable, "-m", "scripts.demo", "--identities", "2", "--steps", "6", "--out", str(out)],
                          cwd=root, capture_output=True, text=True, timeout=900,
                          env={**os.environ, "PYTHONPATH": str(root)})
    lines = proc.stdout.strip().splitlines()
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "TOY WORLD" in proc.stdout and "6 prompts ran through POST /prompt" in proc.stdout  # 1, 4 photos, editing
    assert re.fullmatch(r"heldout_match_with_lora=\d\.\d{3} without=\d\.\d{3}", lines[-1]), lines[-1]
    table = [ln.split("|")[1].strip() for ln in lines if ln.startswith("| ") and "---" not in ln]
    assert table == ["method", "no LoRA", "ID-LoRA", "ID-LoRA", "chance",  # identity match, then editing
                     "images", "no LoRA", "ID-LoRA x1", "ID-LoRA, caption 1", "ID-LoRA, caption 2", "ID + Base"], table
    grid = Image.open(out / "toy_demo_grid.png")
    assert grid.size == (2 + 2 * (4 * 32 + 2), 2 + 6 * (4 * 32 + 2))  # 2 identities; reference, 4 sample rows, no LoRA
    saved = sorted(p.name for p in (out / "images" / "toy").glob("*.png"))
    assert len(saved) == 2 * 6, saved  # per identity: 1 photo, 4 photos, no LoRA, ID + Base, two captions
