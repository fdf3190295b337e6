"""`hyperlora_core.models`: the manifest, and `check` on ComfyUI folders with the mistakes users make."""

from __future__ import annotations

import subprocess
import sys

import pytest
from fixtures.pack import ROOT

from hyperlora_core import standins
from hyperlora_core.models import check, comfyui_roots, download_entry, item, items
from hyperlora_core.models.check import item_for, missing_message
from hyperlora_core.standins import write_tiny_face_pack

FIDELITY = "sdxl_hyper_id_lora_v1_fidelity"


def write_face_pack_with_real_names(folder):
    """The tiny stand-in models under antelopev2's file names, without the stand-in marker (the layout check
    looks at names and framing only)."""
    write_tiny_face_pack(folder)
    for tiny, real in [("tiny_det", "scrfd_10g_bnkps"), ("tiny_2d106", "2d106det"), ("tiny_rec", "glintr100")]:
        (folder / f"{tiny}.onnx").rename(folder / f"{real}.onnx")
    (folder / "STANDIN.txt").unlink()


def statuses(report, item_id: str) -> dict[str, str]:
    return {f.file.target: f.status for f in report.for_item(item_id)}


def test_manifest_names_sources_revisions_and_places():
    ids = [it.id for it in items()]
    assert ids == ["hyperlora-fidelity", "hyperlora-edit", "clip-vit-large-patch14", "antelopev2", "sdxl-base",
                   "controlnet-openpose-sdxl"]
    for it in items():
        assert (it.hub is None) != (it.manual is None) and it.licence
        assert sum(f.main for f in it.files) == 1
        if it.hub:
            assert it.hub.revision and all(f.path for f in it.files)
    entry = download_entry(item("hyperlora-fidelity"))
    assert entry == {"name": f"{FIDELITY}/hyper_lora_modules.safetensors", "directory": "hyper_lora",
                     "url": f"https://huggingface.co/bytedance-research/HyperLoRA/resolve/main/{FIDELITY}/hyper_lora_modules.safetensors"}
    assert download_entry(item("clip-vit-large-patch14"))["name"] == "clip_vit_large_patch14.safetensors"
    assert item_for("insightface", "antelopev2/glintr100.onnx").id == "antelopev2"
    assert item_for("insightface", "antelopev2").id == "antelopev2"  # older workflows name the pack
    assert item_for("hyper_lora", FIDELITY).id == "hyperlora-fidelity"
    assert item_for("hyper_lora", "mine.safetensors") is None


def test_a_complete_install_is_ready(tmp_path):
    comfyui = tmp_path / "ComfyUI"
    models = comfyui / "models"
    standins.write_tiny_checkpoint(models / "hyper_lora" / FIDELITY, published_layout=True, base_rank=None)
    (models / "clip_vision").mkdir(parents=True)
    standins.write_tiny_checkpoint(models / "clip_vision" / "clip_vit_large_patch14.safetensors")
    write_face_pack_with_real_names(models / "insightface" / "models" / "antelopev2")
    report = check(comfyui_roots(comfyui))
    assert report.ready, report.text()
    assert not any(f.ok for f in report.for_item("hyperlora-edit"))  # optional items are reported, not required
    done = subprocess.run([sys.executable, "-m", "hyperlora_core.models", "check", "--comfyui", str(comfyui)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "everything HyperLoRA needs is in place" in done.stdout


def test_the_usual_mistakes_are_named(tmp_path):
    comfyui = tmp_path / "ComfyUI"
    models = comfyui / "models"
    nested = models / "hyper_lora" / "downloads" / FIDELITY
    standins.write_tiny_checkpoint(nested, published_layout=True, base_rank=None)
    (models / "clip_vision").mkdir(parents=True)
    (models / "clip_vision" / "clip_vit_large_patch14.safetensors").write_text(
        "version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 1710000000\n")
    write_face_pack_with_real_names(models / "insightface" / "models" / "antelopev2" / "antelopev2")
    report = check(comfyui_roots(comfyui))
    assert not report.ready
    assert set(statuses(report, "hyperlora-fidelity").values()) == {"misplaced"}
    basis = report.for_item("hyperlora-fidelity")[1]
    assert f"found at {nested / 'hyper_lora_modules.safetensors'}; move it to {models / 'hyper_lora' / FIDELITY}" in basis.detail
    assert statuses(report, "clip-vit-large-patch14") == {"clip_vit_large_patch14.safetensors": "lfs_pointer"}
    faces = report.for_item("antelopev2")
    assert {f.status for f in faces} == {"misplaced"} and "nested" in faces[0].detail
    text = report.text()
    assert "Git-LFS pointer" in text and "python -m hyperlora_core.models fetch hyperlora-fidelity" in text
    assert "antelopev2.zip" in text and "non-commercial" in text

    # a truncated download, an HTML page, and only another face pack
    (models / "clip_vision" / "clip_vit_large_patch14.safetensors").write_bytes(b"<!DOCTYPE html><html>503</html>")
    good = nested / "hyper_lora_modules.safetensors"
    (models / "hyper_lora" / FIDELITY).mkdir()
    for f in nested.iterdir():
        f.rename(models / "hyper_lora" / FIDELITY / f.name)
    good = models / "hyper_lora" / FIDELITY / "hyper_lora_modules.safetensors"
    good.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    import shutil

    shutil.rmtree(models / "insightface" / "models" / "antelopev2")
    write_tiny_face_pack(models / "insightface" / "models" / "buffalo_l")
    report = check(comfyui_roots(comfyui))
    assert statuses(report, "hyperlora-fidelity")[f"{FIDELITY}/hyper_lora_modules.safetensors"] == "truncated"
    assert statuses(report, "clip-vit-large-patch14") == {"clip_vit_large_patch14.safetensors": "web_page"}
    assert {f.status for f in report.for_item("antelopev2")} == {"wrong_pack"}
    assert "found only buffalo_l" in report.for_item("antelopev2")[0].detail


def test_extra_model_paths_and_the_published_place_count(tmp_path):
    comfyui = tmp_path / "ComfyUI"
    (comfyui / "models").mkdir(parents=True)
    elsewhere = tmp_path / "shared_models"
    (comfyui / "extra_model_paths.yaml").write_text(
        f"mine:\n    base_path: {elsewhere}\n    hyper_lora: |\n        hyper\n        more_hyper\n    clip_vision: clip\n")
    roots = comfyui_roots(comfyui)
    assert roots["hyper_lora"] == [comfyui / "models" / "hyper_lora", elsewhere / "hyper", elsewhere / "more_hyper"]
    standins.write_tiny_checkpoint(elsewhere / "more_hyper" / "hyper_lora" / FIDELITY, published_layout=True, base_rank=None)
    report = check(roots, ["hyperlora-fidelity"])
    assert all(f.ok for f in report.files), report.text()
    assert report.files[0].where == elsewhere / "more_hyper" / "hyper_lora" / FIDELITY / "hyper_lora_modules.json"


@pytest.mark.parametrize("value,expected", [
    (f"{FIDELITY}/hyper_lora_modules.safetensors", "`python -m hyperlora_core.models fetch hyperlora-fidelity`"),
    ("antelopev2/glintr100.onnx", "antelopev2.zip"),
    ("mine.safetensors", "is not in models/hyper_lora"),
])
def test_missing_messages_say_where_it_goes(tmp_path, value, expected):
    roots = comfyui_roots(tmp_path / "ComfyUI")
    folder = "insightface" if value.endswith(".onnx") else "hyper_lora"
    message = missing_message(folder, value, roots, "Model")
    assert expected in message and f"'{value}'" in message
    if value.startswith(FIDELITY):
        assert f"missing from {tmp_path / 'ComfyUI' / 'models' / 'hyper_lora' / FIDELITY}" in message
