"""`hyperlora_core.models`: the manifest, and `check` on ComfyUI folders with the mistakes users make."""

from __future__ import annotations

import subprocess
import sys

import pytest
from fixtures.pack import ROOT

from hyperlora_core import standins
from hyperlora_core.models import check, comfyui_roots, download_entry, item, items
from hyperlora_core.models.check import FETCH_NODE, item_for, missing_message
from hyperlora_core.models.command import models_command
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
    entry = download_entry(item("clip-vit-large-patch14"))
    assert entry == {"name": "clip_vit_large_patch14.safetensors", "directory": "clip_vision",
                     "url": "https://huggingface.co/openai/clip-vit-large-patch14/resolve/main/model.safetensors"}
    # a download button places one file: a published checkpoint (4 files) or the hand-placed face pack would be broken
    assert [it.id for it in items() if it.one_download] == ["clip-vit-large-patch14", "sdxl-base",
                                                             "controlnet-openpose-sdxl"]
    for multi in ("hyperlora-fidelity", "hyperlora-edit", "antelopev2"):
        with pytest.raises(ValueError, match="Fetch Models node"):
            download_entry(item(multi))
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
    assert "Git-LFS pointer" in text and models_command("fetch", "hyperlora-fidelity") in text
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
    (f"{FIDELITY}/hyper_lora_modules.safetensors",
     f"is missing (4 of 4 files): run the node {FETCH_NODE} (accept the licence) or `"),
    ("antelopev2/glintr100.onnx", "is missing (3 of 3 files) and must be placed by hand: download antelopev2.zip and "
                                  "unzip it into "),
    ("mine.safetensors", "is not in models/hyper_lora: put it there and press 'r'"),
])
def test_missing_messages_say_where_it_goes(tmp_path, value, expected):
    """The first sentence names what is missing and the one action that fixes it (the newer frontend's issues list
    shows little more); the command in it is the exact one for this ComfyUI."""
    comfyui = tmp_path / "ComfyUI"
    roots = comfyui_roots(comfyui)
    folder = "insightface" if value.endswith(".onnx") else "hyper_lora"
    message = missing_message(folder, value, roots, "Model", comfyui)
    first = message.split(". ")[0]
    assert first.startswith(f"Model '{value}' ") and expected in first, message
    if value.startswith(FIDELITY):
        assert first.endswith(f"`{models_command('fetch', 'hyperlora-fidelity', comfyui=comfyui)}`, then press 'r'")
        assert f"missing from {comfyui / 'models' / 'hyper_lora' / FIDELITY}" in message
    if value.endswith(".onnx"):
        assert str(comfyui / "models" / "insightface" / "models" / "antelopev2") in first




def test_a_damaged_or_misplaced_model_says_so_in_the_first_sentence(tmp_path):
    comfyui = tmp_path / "ComfyUI"
    clip = comfyui / "models" / "clip_vision"
    clip.mkdir(parents=True)
    (clip / "other_clip.safetensors").write_bytes(b"x")
    roots = comfyui_roots(comfyui)
    message = missing_message("clip_vision", "clip_vit_large_patch14.safetensors", roots, "CLIP", comfyui)
    assert message.startswith("CLIP 'clip_vit_large_patch14.safetensors' is missing (1 of 1 files): run the node "
                              f"{FETCH_NODE}"), message  # another file in the folder is a hint, not the state
    assert "other files there: other_clip.safetensors" in message
    (clip / "clip_vit_large_patch14.safetensors").write_text("version https://git-lfs.github.com/spec/v1\nsize 9\n")
    message = missing_message("clip_vision", "clip_vit_large_patch14.safetensors", roots, "CLIP", comfyui)
    assert message.startswith("CLIP 'clip_vit_large_patch14.safetensors' is not usable (Git-LFS pointer, not the "
                              f"file): run the node {FETCH_NODE}"), message
