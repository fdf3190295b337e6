"""ComfyUI folder registration (folder_paths) for face packs, HyperLoRA and CLIP vision models."""

from __future__ import annotations

import copy
import os

import folder_paths
import pytest

from hyperlora_core.comfy_bridge import folders
from hyperlora_core.errors import HyperLoRAError
from hyperlora_core.standins import write_tiny_face_pack


@pytest.fixture
def registry(monkeypatch, tmp_path):
    """A private copy of ComfyUI's folder registry, as if models_dir were tmp_path/models."""
    monkeypatch.setattr(folder_paths, "folder_names_and_paths", copy.deepcopy(folder_paths.folder_names_and_paths))
    monkeypatch.setattr(folder_paths, "models_dir", str(tmp_path / "models"))
    monkeypatch.setattr(folder_paths, "filename_list_cache", {})
    folder_paths.folder_names_and_paths["clip_vision"] = ([str(tmp_path / "models" / "clip_vision")], {".safetensors"})
    for name in ("insightface", "hyper_lora"):  # registered by an earlier test that loaded the pack
        folder_paths.folder_names_and_paths.pop(name, None)
    return tmp_path / "models"


def test_registration_keeps_yaml_folders_first(registry, tmp_path):
    extra = tmp_path / "elsewhere" / "insightface"
    folder_paths.add_model_folder_path("insightface", str(extra))  # as extra_model_paths.yaml does first
    folders.register_model_folders()
    folders.register_model_folders()  # idempotent
    assert folders.insightface_roots() == [extra, registry / "insightface"]
    assert folders.hyper_lora_roots() == [registry / "hyper_lora"]
    assert ".onnx" in folder_paths.folder_names_and_paths["insightface"][1]


def test_face_packs_from_every_root_and_cached_analyzer(registry, tmp_path):
    extra = tmp_path / "elsewhere"
    folder_paths.add_model_folder_path("insightface", str(extra))
    write_tiny_face_pack(extra / "models" / "antelopev2")
    (registry / "insightface" / "models" / "buffalo_l").mkdir(parents=True)
    assert folders.face_pack_names() == ["antelopev2", "buffalo_l"]
    first = folders.load_face_analyzer("antelopev2", providers="cpu")
    assert folders.load_face_analyzer("antelopev2", providers="cpu") is first  # sessions reused
    assert first.folder == extra / "models" / "antelopev2"
    with pytest.raises(HyperLoRAError, match="buffalo_l holds no .onnx files"):
        folders.load_face_analyzer("buffalo_l")


def test_clip_vision_choices_and_resolution(registry):
    hf = registry / "hyper_lora" / "clip_vit" / "clip_vit_large_14"
    hf.mkdir(parents=True)
    (hf / "model.safetensors").write_bytes(b"")
    (hf / "config.json").write_text("{}")
    (registry / "hyper_lora" / "clip_vit" / "incomplete").mkdir()
    os.makedirs(registry / "clip_vision")
    (registry / "clip_vision" / "vit-l.safetensors").write_bytes(b"")
    (registry / "clip_vision" / "old.bin").write_bytes(b"")
    choices = folders.clip_vision_choices()
    assert choices == ["vit-l.safetensors", "clip_vit/clip_vit_large_14"]
    assert folders.resolve_clip_vision("clip_vit/clip_vit_large_14") == hf
    assert folders.resolve_clip_vision("vit-l.safetensors") == registry / "clip_vision" / "vit-l.safetensors"
    with pytest.raises(HyperLoRAError, match='CLIP vision model "nope" not found'):
        folders.resolve_clip_vision("nope")
