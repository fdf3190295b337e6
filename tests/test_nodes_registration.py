"""Registration: one node API chosen at import (V3 here, classic when forced), both built from the
same declarations, loaded through ComfyUI's own custom-node loader."""

from __future__ import annotations

import inspect

import pytest
from fixtures.pack import load_pack
from fixtures.published_ui import PUBLISHED_NODE_TYPES as PUBLISHED_NAMES


@pytest.fixture(scope="module")
def both_apis():
    v3_module, v3 = load_pack("auto")
    classic_module, classic = load_pack("classic")
    yield (v3_module, v3), (classic_module, classic)
    load_pack("auto")  # leave the V3 registration in place for later tests


def test_exactly_one_registration_path(both_apis):
    (v3_module, v3), (classic_module, classic) = both_apis
    from comfy_api.latest import io

    assert hasattr(v3_module, "comfy_entrypoint") and not hasattr(v3_module, "NODE_CLASS_MAPPINGS")
    assert hasattr(classic_module, "NODE_CLASS_MAPPINGS") and not hasattr(classic_module, "comfy_entrypoint")
    assert all(issubclass(c, io.ComfyNode) for c in v3.values())
    assert not any(issubclass(c, io.ComfyNode) for c in classic.values())
    assert set(v3) == set(classic)
    assert {"HyperLoRACheckpointLoader", "HyperLoRAGenerateID", "HyperLoRAApply", "HyperLoRASave",
            "HyperLoRAMix", "HyperLoRAInterpolate", "HyperLoRAConceptSlider"} <= set(v3)


def _normalised_inputs(cls) -> dict:
    spec = cls.INPUT_TYPES()
    out = {}
    for group in ("required", "optional"):
        for name, entry in (spec.get(group) or {}).items():
            kind = entry[0]
            opts = entry[1] if len(entry) > 1 else {}
            if isinstance(kind, list) or kind == "COMBO":
                kind, opts = "COMBO", {**opts, "options": opts.get("options", kind if isinstance(kind, list) else None)}
            keep = {k: opts.get(k) for k in ("default", "min", "max", "step", "options", "multiline") if k in opts}
            out[name] = (group, kind, keep)
    return out


def test_both_apis_declare_the_same_inputs_in_the_same_order(both_apis):
    (_, v3), (_, classic) = both_apis
    for node_id in v3:
        a, b = _normalised_inputs(v3[node_id]), _normalised_inputs(classic[node_id])
        assert list(a) == list(b), node_id  # widget order is what saved UI workflows depend on
        assert a == b, node_id
        assert list(v3[node_id].RETURN_TYPES) == list(classic[node_id].RETURN_TYPES), node_id
        published = v3[node_id].NODE_DEF.node_id in PUBLISHED_NAMES
        assert v3[node_id].CATEGORY == classic[node_id].CATEGORY == ("HyperLoRA/published pack" if published else "HyperLoRA")
        assert bool(v3[node_id].OUTPUT_NODE) == bool(classic[node_id].OUTPUT_NODE)


def test_validators_name_only_the_inputs_they_check(both_apis):
    """ComfyUI skips its own range/list checks for inputs a validator takes, and gives a validator's message
    to every input it takes: ours take only what they check (their own inputs, model-file drop-downs)."""
    (_, v3), (_, classic) = both_apis
    v3_args = inspect.getfullargspec(v3["HyperLoRASave"].validate_inputs)
    classic_args = inspect.getfullargspec(classic["HyperLoRASave"].VALIDATE_INPUTS)
    assert v3_args.args == classic_args.args == ["cls", "filename_prefix"]
    assert v3_args.varkw is None and classic_args.varkw is None
    assert v3["HyperLoRASave"].validate_inputs(filename_prefix="ok/name") is True
    message = classic["HyperLoRASave"].VALIDATE_INPUTS(filename_prefix="../../etc/x")
    assert isinstance(message, str) and "outside the output folder" in message
    assert inspect.getfullargspec(v3["HyperLoRACheckpointLoader"].validate_inputs).args == ["cls", "checkpoint"]
    assert inspect.getfullargspec(v3["HyperLoRAOneClick"].validate_inputs).args == \
        ["cls", "checkpoint", "clip_vision", "face_pack"]


def test_a_value_not_among_the_choices_is_named(both_apis):
    """ComfyUI checks no V3 drop-down; a value from the API that is not a choice stops the node, named."""
    from fixtures.nodes_env import run_node

    from hyperlora_core.errors import HyperLoRAError

    (_, v3), _ = both_apis
    with pytest.raises(HyperLoRAError, match=r"HyperLoRA Mix LoRAs: mode: 'sum' is not one of the choices \(factors, delta\)"):
        run_node(v3["HyperLoRAMix"], mode="sum", normalize=True, lora_1={}, weight_1=1.0, weight_2=1.0, weight_3=1.0,
                 weight_4=1.0)


def test_classic_classes_run_like_the_v3_ones(both_apis, tmp_path):
    """The classic wrappers return what ComfyUI's classic executor expects (tuples; ui + result)."""
    import torch
    from fixtures.nodes_env import output_folder, run_node

    (_, v3), (_, classic) = both_apis
    g = torch.Generator().manual_seed(0)
    lora = {"lora_unet_x_to_q.lora_down.weight": torch.randn(2, 8, generator=g),
            "lora_unet_x_to_q.lora_up.weight": torch.randn(8, 2, generator=g), "lora_unet_x_to_q.alpha": torch.tensor(1.0)}
    kw = {"mode": "delta", "normalize": False, "lora_1": lora, "weight_1": 0.5, "weight_2": 1.0, "weight_3": 1.0,
          "weight_4": 1.0}
    (a,), _ = run_node(v3["HyperLoRAMix"], **kw)
    raw = classic["HyperLoRAMix"]().run(**kw)
    assert isinstance(raw, tuple) and len(raw) == 1
    assert a.keys() == raw[0].keys() and all(torch.equal(a[k], raw[0][k]) for k in a)
    with output_folder(tmp_path):
        out = classic["HyperLoRASave"]().run(lora=lora, filename_prefix="c/name", dtype="fp32")
    assert out["result"] == () and out["ui"]["loras"][0]["filename"] == "name_00001_.safetensors"
    assert (tmp_path / "c" / "name_00001_.safetensors").is_file()
