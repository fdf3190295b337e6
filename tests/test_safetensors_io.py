"""Checked reads name the real cause; interrupted writes leave nothing behind."""

from __future__ import annotations

import pytest
import torch

from hyperlora_core.errors import DamagedFileError, HyperLoRAError
from hyperlora_core.safetensors_io import load_tensors, read_metadata, read_shapes, save_tensors_atomic


def test_round_trip_with_metadata(tmp_path):
    path = tmp_path / "x.safetensors"
    save_tensors_atomic({"a": torch.ones(2, 3)}, path, {"k": "v"})
    assert read_shapes(path) == {"a": (2, 3)} and read_metadata(path) == {"k": "v"}
    assert torch.equal(load_tensors(path)["a"], torch.ones(2, 3))
    assert [p.name for p in tmp_path.iterdir()] == ["x.safetensors"]


@pytest.mark.parametrize(
    "content,message,kind",
    [
        (b"", "empty or truncated", "empty"),
        (b"<!DOCTYPE html><html>not found</html>", "is a web page", "web_page"),
        (b"\x00\x00\x00\x00\x00\x10\x00\x00rest", "not a valid .safetensors", "invalid"),
        (b"version https://git-lfs.github.com/spec/v1\n", "Git-LFS pointer", "lfs_pointer"),
        (b"\x05\x00\x00\x00\x00\x00\x00\x00{bad}", "corrupt .safetensors header", "invalid"),
    ],
)
def test_bad_files_are_named_and_explained(tmp_path, content, message, kind):
    path = tmp_path / "weights.safetensors"
    path.write_bytes(content)
    with pytest.raises(DamagedFileError, match=message) as err:
        read_shapes(path)
    assert "weights.safetensors" in str(err.value) and err.value.kind == kind


def test_failed_write_leaves_old_file_and_no_temp(tmp_path, monkeypatch):
    path = tmp_path / "x.safetensors"
    save_tensors_atomic({"a": torch.ones(1)}, path)

    def boom(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("hyperlora_core.safetensors_io.save_file", boom)
    with pytest.raises(HyperLoRAError, match=f"disk full writing {path}: .*Free space"):
        save_tensors_atomic({"a": torch.zeros(1)}, path)
    assert [p.name for p in tmp_path.iterdir()] == ["x.safetensors"]
    assert torch.equal(load_tensors(path)["a"], torch.ones(1))
