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
