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
