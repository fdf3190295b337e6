"""Putting the toy world into a ComfyUI folder, reference photos, and the API workflow."""

from __future__ import annotations

import numpy as np
import pytest
import yaml
from PIL import Image

from hyperlora_core.errors import HyperLoRAError
from hyperlora_core.toy import files, world
from hyperlora_core.toy.install import extra_model_paths_yaml, install_toy_world, read_photo, write_reference_photos
from hyperlora_core.toy.workflow import TOY_CHECKPOINT


def test_reference_photos_are_heldout_identities(tmp_path):
    paths, factors = write_reference_photos(tmp_path, identities=3, refs=2, scale=4)
    assert len(paths) == 6 and all(p.suffix == ".png" for p in paths) and factors.shape == (6, 3)
    held = set(world.heldout_identities().tolist())
    assert all(int(p.stem.split("_")[1]) in held for p in paths)
    assert Image.open(paths[0]).size == (128, 128)
    small = read_photo(paths[0])  # area-resized back to 32 px
    ident, j = (int(v) for v in paths[0].stem.split("_")[1:])
    original = world.render_set([ident], 2, 0).images[j]
    assert (factors[0] == world.render_set([ident], 2, 0).base_factors[j]).all()
    assert small.shape == (32, 32, 3) and np.abs(small.astype(int) - original).max() <= 1


def test_install_links_every_part_where_comfyui_loaders_look(tmp_path):
    placed = install_toy_world(tmp_path / "models")
    assert placed["hyperlora"] == tmp_path / "models" / "hyper_lora" / TOY_CHECKPOINT
    assert placed["unet"] == tmp_path / "models" / "toy_world" / "toy_unet.safetensors"
    assert all(p.is_symlink() and p.resolve().is_file() for p in placed.values())
    assert (tmp_path / "models" / "toy_world" / files.FILES["hyperlora"]).resolve() == placed["hyperlora"].resolve()
    copied = install_toy_world(tmp_path / "copy", mode="copy")
    assert all(p.is_file() and not p.is_symlink() for p in copied.values())
    text = extra_model_paths_yaml()
    section = yaml.safe_load(text)["hyperlora_toy_world"]
    assert section["toy_world"] == "." and section["hyper_lora"] == "hyper_lora"
    assert (files.DEFAULT_DIR / section["hyper_lora"] / "toy_hyperlora.safetensors").is_file()


def test_install_refuses_a_missing_world(tmp_path):
    with pytest.raises(HyperLoRAError, match="make toy-world"):
        install_toy_world(tmp_path / "models", source=tmp_path / "nothing")
    with pytest.raises(HyperLoRAError, match="link"):
        install_toy_world(tmp_path / "models", mode="move")
