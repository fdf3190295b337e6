"""The published pack's node names keep its inputs and widget order, and step aside when it is installed."""

from __future__ import annotations

import pytest
from fixtures.nodes_env import model_folder
from fixtures.pack import load_pack

PUBLISHED = {
    # node type -> its inputs in the published declaration order (widget order of saved workflows)
    "HyperLoRAConfig": ["image_processor", "image_encoder", "resampler.dim", "resampler.dim_head", "resampler.heads",
                        "resampler.depth", "resampler.ff_mult", "encoder_types", "face_analyzer", "id_embed_dim",
                        "num_id_tokens", "hyper_dim", "lora_rank", "has_base_lora"],
    "HyperLoRALoader": ["config", "model", "dtype"],
    "HyperLoRAIDCond": ["hyper_lora", "images", "face_attr", "grayscale", "remove_background"],
    "HyperLoRABaseCond": ["hyper_lora", "images", "face_attr", "crop", "crop_scale_LRTB", "safe_crop"],
    "HyperLoRAGenerateIDLoRA": ["hyper_lora", "id_cond"],
    "HyperLoRAGenerateBaseLoRA": ["hyper_lora", "base_cond"],
    "HyperLoRAApplyLoRA": ["model", "lora", "weight"],
    "HyperLoRASaveLoRA": ["filename_prefix", "lora"],
    "HyperLoRAFaceAttr": ["hyper_lora", "images"],
    "HyperLoRAUniLoader": ["image_processor", "image_encoder", "encoder_types", "face_analyzer", "model", "dtype"],
    "HyperLoRAUniGenerateIDLoRA": ["hyper_lora", "images", "grayscale", "remove_background"],
}
RETURNS = {
    "HyperLoRAConfig": ["HYPER_LORA_CONFIG"], "HyperLoRALoader": ["HYPER_LORA"], "HyperLoRAIDCond": ["ID_COND", "IMAGE"],
    "HyperLoRABaseCond": ["BASE_COND", "IMAGE"], "HyperLoRAGenerateIDLoRA": ["LORA"], "HyperLoRAGenerateBaseLoRA": ["LORA"],
    "HyperLoRAApplyLoRA": ["MODEL"], "HyperLoRASaveLoRA": [], "HyperLoRAFaceAttr": ["FACE_ATTR"],
    "HyperLoRAUniLoader": ["HYPER_LORA"], "HyperLoRAUniGenerateIDLoRA": ["LORA"],
}


@pytest.fixture(scope="module")
def pack():
    return load_pack("auto")[1]


def test_eleven_published_names_with_their_inputs_in_order(pack):
    for node_id, inputs in PUBLISHED.items():
        spec = pack[node_id].INPUT_TYPES()
        assert list(spec["required"]) == inputs, node_id
        assert list(pack[node_id].RETURN_TYPES) == RETURNS[node_id], node_id
    config = pack["HyperLoRAConfig"].INPUT_TYPES()["required"]
    assert config["encoder_types"][1]["options"] == ["clip", "arcface", "clip + arcface"]
    assert config["resampler.dim_head"][1]["default"] == 64 and config["lora_rank"][1]["default"] == 4
    assert pack["HyperLoRAApplyLoRA"].INPUT_TYPES()["required"]["weight"][1]["default"] == 0.8
    assert pack["HyperLoRASaveLoRA"].INPUT_TYPES()["required"]["filename_prefix"][1]["default"] == "lora/id_lora"


def test_published_model_folders_are_listed(pack, tmp_path):
    root = tmp_path / "hyper_lora"
    for sub in ("hyper_lora/sdxl_hyper_id_lora_v1_fidelity", "clip_vit/clip_vit_large_14",
                "clip_processor/clip_vit_large_14_processor"):
        (root / sub).mkdir(parents=True)
    with model_folder("hyper_lora", root):
        spec = pack["HyperLoRAUniLoader"].INPUT_TYPES()["required"]
        assert "sdxl_hyper_id_lora_v1_fidelity" in spec["model"][1]["options"]
        assert "clip_vit_large_14" in spec["image_encoder"][1]["options"]
        assert "clip_vit_large_14_processor" in spec["image_processor"][1]["options"]


@pytest.fixture
def published_folders(tmp_path):
    """The published pack's folders the Config node's drop-downs list: clip_processor/p, clip_vit/e, antelopev2
    (the node checks its drop-down values when it runs)."""
    from fixtures.nodes_env import model_folder

    for sub in ("clip_processor/p", "clip_vit/e"):
        (tmp_path / "hyper_lora" / sub).mkdir(parents=True)
    (tmp_path / "insightface" / "models" / "antelopev2").mkdir(parents=True)
    with model_folder("hyper_lora", tmp_path / "hyper_lora"), model_folder("insightface", tmp_path / "insightface"):
        yield


def test_only_clip_plus_arcface_is_accepted(pack, published_folders):
    from fixtures.nodes_env import run_node

    from hyperlora_core import HyperLoRAError

    values = {"image_processor": "p", "image_encoder": "e", "resampler.dim": 1024, "resampler.dim_head": 64,
              "resampler.heads": 12, "resampler.depth": 4, "resampler.ff_mult": 4, "encoder_types": "clip",
              "face_analyzer": "antelopev2", "id_embed_dim": 512, "num_id_tokens": 16, "hyper_dim": 128, "lora_rank": 8,
              "has_base_lora": False}
    with pytest.raises(HyperLoRAError, match="clip \\+ arcface"):
        run_node(pack["HyperLoRAConfig"], **values)
    (config,), _ = run_node(pack["HyperLoRAConfig"], **{**values, "encoder_types": "clip + arcface"})
    assert config.dim_head == 64


@pytest.mark.parametrize("disabled", [False, True])
def test_compat_names_stay_away_when_the_published_pack_is_installed(tmp_path, disabled):
    import folder_paths

    pub = tmp_path / ("ComfyUI-HyperLoRA" + (".disabled" if disabled else "")) / "hyperlora"
    pub.mkdir(parents=True)
    (pub / "nodes.py").write_text("HYPER_LORA_CLASS_MAPPINGS = {}\n")
    folder_paths.add_model_folder_path("custom_nodes", str(tmp_path))
    try:
        module, registered = load_pack("auto")
    finally:
        folder_paths.folder_names_and_paths["custom_nodes"][0].remove(str(tmp_path))
    assert ("HyperLoRALoader" in registered) is disabled
    assert "HyperLoRACheckpointLoader" in registered
    load_pack("auto")


def test_config_numbers_that_differ_from_the_weights_are_named_in_a_warning(caplog, published_folders):
    """The weights decide the architecture; the Config node's other numbers are only checked, and every one
    that differs from the weights is named (with the value the weights have) in one warning."""
    import importlib
    import logging

    from fixtures.nodes_env import run_node

    from hyperlora_core.standins import random_hyperlora, small_config

    module, pack = load_pack("auto")
    compat = importlib.import_module(module.__name__ + ".nodes.compat")
    # (every number inside the node's declared ranges: the node checks them before anything else)
    model = random_hyperlora(small_config(basis_size=32, rank=4, dim=64, depth=4, heads=4, id_tokens=4, ff_mult=2))
    values = {"image_processor": "p", "image_encoder": "e", "resampler.dim": 64, "resampler.dim_head": 64,
              "resampler.heads": 4, "resampler.depth": 4, "resampler.ff_mult": 2, "encoder_types": "clip + arcface",
              "face_analyzer": "antelopev2", "id_embed_dim": 512, "num_id_tokens": 4, "hyper_dim": 32, "lora_rank": 4,
              "has_base_lora": False}
    (matching,), _ = run_node(pack["HyperLoRAConfig"], **values)
    (other,), _ = run_node(pack["HyperLoRAConfig"], **{**values, "lora_rank": 8, "hyper_dim": 128, "resampler.heads": 12})
    with caplog.at_level(logging.WARNING, logger="HyperLoRA"):
        compat._check_declared(matching, model)
        assert not caplog.records
        compat._check_declared(other, model)
    assert len(caplog.records) == 1
    text = caplog.records[0].getMessage()
    assert "hyper_dim=128 (weights: 32)" in text and "lora_rank=8 (weights: 4)" in text
    assert "resampler.heads" not in text  # heads cannot be read from the weights: not checked
