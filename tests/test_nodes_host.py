"""Widget names -> files: inside the model folders only, symlinks allowed (as ComfyUI allows them)."""

from __future__ import annotations

import pytest
from fixtures.pack import pack_submodule

from hyperlora_core.errors import HyperLoRAError


def test_resolve_accepts_symlinked_files_and_refuses_climbing_out(tmp_path):
    resolve_in = pack_submodule("nodes.host").resolve_in

    root, elsewhere = tmp_path / "hyper_lora", tmp_path / "elsewhere"
    (root / "sub").mkdir(parents=True)
    elsewhere.mkdir()
    target = elsewhere / "toy.safetensors"
    target.write_bytes(b"x")
    (root / "sub" / "toy.safetensors").symlink_to(target)  # e.g. the toy world linked in by `make demo`
    (root / "own.safetensors").write_bytes(b"y")
    assert resolve_in([root], "sub/toy.safetensors", "HyperLoRA checkpoint", "models/hyper_lora") == target
    assert resolve_in([tmp_path / "missing", root], "own.safetensors", "c", "w") == root / "own.safetensors"
    for bad in ("../elsewhere/toy.safetensors", str(target), "sub/../../elsewhere/toy.safetensors"):
        with pytest.raises(HyperLoRAError, match="not found in models/hyper_lora"):
            resolve_in([root], bad, "HyperLoRA checkpoint", "models/hyper_lora")
    with pytest.raises(HyperLoRAError, match="no HyperLoRA checkpoint selected"):
        resolve_in([root], "", "HyperLoRA checkpoint", "models/hyper_lora")


def test_a_damaged_known_model_is_refused_with_the_fix_first(tmp_path, monkeypatch):
    """A truncated published checkpoint, a Git-LFS pointer under CLIP's name: the queue-time refusal's first sentence
    says so and names the Fetch Models node and the exact command, as for a missing one."""
    import copy

    import folder_paths

    from hyperlora_core import standins

    models = tmp_path / "models"
    monkeypatch.setattr(folder_paths, "folder_names_and_paths", copy.deepcopy(folder_paths.folder_names_and_paths))
    monkeypatch.setattr(folder_paths, "models_dir", str(models))
    monkeypatch.setattr(folder_paths, "filename_list_cache", {})
    for name in ("clip_vision", "hyper_lora", "insightface", "checkpoints", "controlnet"):
        folder_paths.folder_names_and_paths[name] = ([str(models / name)], {".safetensors", ".onnx"})
    fidelity = models / "hyper_lora" / "sdxl_hyper_id_lora_v1_fidelity"
    standins.write_tiny_checkpoint(fidelity, base_rank=None, published_layout=True)
    resampler = fidelity / "resampler.safetensors"
    resampler.write_bytes(resampler.read_bytes()[: resampler.stat().st_size // 2])
    (models / "clip_vision").mkdir(parents=True)
    (models / "clip_vision" / "clip_vit_large_patch14.safetensors").write_text(
        "version https://git-lfs.github.com/spec/v1\noid sha256:0\nsize 1710000000\n")
    host, loaders = pack_submodule("nodes.host"), pack_submodule("nodes.loaders")

    message = host.checkpoint_problem("sdxl_hyper_id_lora_v1_fidelity/hyper_lora_modules.safetensors")
    assert message.startswith("HyperLoRA checkpoint 'sdxl_hyper_id_lora_v1_fidelity/hyper_lora_modules.safetensors' is "
                              "not usable (truncated (download stopped)): run the node HyperLoRA Fetch Models"), message
    assert "fetch hyperlora-fidelity --comfyui " in message.split(". ")[0]
    message = loaders.clip_problem("clip_vit_large_patch14.safetensors")
    assert message.startswith("CLIP vision model 'clip_vit_large_patch14.safetensors' is not usable (Git-LFS pointer, "
                              "not the file): run the node HyperLoRA Fetch Models"), message


def test_sample_photos_never_replace_a_users_file_and_only_a_server_places_them(tmp_path, caplog):
    host = pack_submodule("nodes.host")
    from hyperlora_core.comfy_bridge import input_photos

    samples = sorted(host.SAMPLE_PHOTOS.iterdir())
    assert len(samples) >= 5 and sum(p.stat().st_size for p in samples) < 400_000  # small enough to ship
    inputs = tmp_path / "input"
    inputs.mkdir()
    (inputs / samples[0].name).write_bytes(b"the user's own photo")
    placed = input_photos.place_input_photos(samples, inputs)
    assert placed == [p.name for p in samples[1:]]
    assert (inputs / samples[0].name).read_bytes() == b"the user's own photo"  # never overwritten
    assert all((inputs / p.name).read_bytes() == p.read_bytes() for p in samples[1:])
    assert sorted(p.name for p in inputs.iterdir()) == sorted(p.name for p in samples)  # no temporary left
    assert input_photos.place_input_photos(samples, inputs) == []  # the second start places nothing
    # imported as a library (scripts, tests, the workflow builder) the pack writes nothing into the host's input folder
    assert not input_photos.serving() and host.place_sample_photos() == []
    blocked = tmp_path / "a_file"
    blocked.write_bytes(b"")
    with caplog.at_level("WARNING"):
        assert input_photos.place_input_photos(samples, blocked / "input") == []  # logged, never raised
    assert "could not place the sample photo" in caplog.text
