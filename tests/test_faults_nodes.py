"""Issue 19's node-side fault classes: each error names the widget and node that caused it and echoes the
value as given; widget strings (`weights`) and every choice are checked when the prompt is queued; images
that are not ComfyUI IMAGEs are refused; LoRAs from different checkpoints are not mixed in LoRA space;
empty and zero LoRAs are named; a large batch leaves nothing behind.

Queue-time cases go through the real server's POST /prompt (the host decides which input a message is
filed under); what a node does with a value it was given runs in-process on the registered classes.
"""

from __future__ import annotations

import pytest
import torch
from fixtures import comfy_session, workflows
from fixtures.pack import load_pack

from hyperlora_core.errors import HyperLoRAError

TINY = comfy_session.TINY_CHECKPOINT
VITL = f"hyper_lora/{comfy_session.VITL_CHECKPOINT}"
OUTPUTS = ("SaveImage", "PreviewImage", "HyperLoRASave")


@pytest.fixture(scope="module")
def server(comfyui_path):
    return comfy_session.get(comfyui_path)


@pytest.fixture(scope="module")
def pack():
    return load_pack("auto")[1]


def _upstream(prompt: dict, node: str) -> set[str]:
    seen, todo = set(), [node]
    while todo:
        n = todo.pop()
        if n not in seen:
            seen.add(n)
            todo += [v[0] for v in prompt[n]["inputs"].values() if isinstance(v, list) and len(v) == 2]
    return seen


def _only_outputs_after(prompt: dict, node: str) -> dict:
    """ComfyUI runs every output whose inputs are valid; keep only the outputs that need `node`, so a bad
    value there rejects the whole prompt and nothing runs."""
    for out in [k for k, v in prompt.items() if v["class_type"] in OUTPUTS]:
        if node not in _upstream(prompt, out):
            del prompt[out]
    return prompt


def _with_encode_base(prompt: dict) -> str:
    """Encode Base on the one-photo graph's photo (no template has one), its crops previewed."""
    encode = workflows.nodes_of(prompt, "HyperLoRAEncodeID")[0]
    inputs = prompt[encode]["inputs"]
    prompt["100"] = {"class_type": "HyperLoRAEncodeBase", "inputs": {
        "photos": inputs["photos"], "face_analysis": inputs["face_analysis"], "clip_vision": inputs["clip_vision"],
        "weights": "", "crop_scale_LRTB": "1,1,1,1", "clamp_to_image": True, "face_index": -1, "on_no_face": "error"}}
    prompt["101"] = {"class_type": "PreviewImage", "inputs": {"images": ["100", 1]}}
    return "100"


def _prompt(name: str) -> dict:
    return workflows.for_tiny_models(workflows.api(name), TINY, VITL)


def _rejected(server, prompt: dict, node: str) -> list[dict]:
    """POST /prompt; the errors ComfyUI filed, all of them under `node` (400: nothing ran)."""
    status, body = server.post_json("/prompt", {"prompt": _only_outputs_after(prompt, node), "client_id": server.client_id})
    assert status == 400, f"the prompt was accepted: {body}"
    errors = body["node_errors"]
    assert list(errors) == [node], errors
    return errors[node]["errors"]


# Every value is one a user or API client can send; the node, the input, and what the message must say.
QUEUE_CASES = [
    # widget strings of the toy encoders, checked when queued (were: refused by Generate ID when it ran, 1e308 as inf)
    ("hyperlora_toy_world", "HyperLoRAToyEncode", "weights", "1e308", ["weights '1e308'", "from 0 to 1,000,000"]),
    ("hyperlora_toy_world", "HyperLoRAToyEncode", "weights", "0, 0", ["weights '0, 0' are all zero"]),
    ("hyperlora_toy_world", "HyperLoRAToyEncode", "weights", "-1", ["weights '-1' is not a weight"]),
    ("hyperlora_toy_world", "HyperLoRAToyEncode", "weights", "2, x", ["weights '2, x': 'x' is not a number"]),
    # choices outside their lists (ComfyUI v0.3.75 lets a V3 drop-down's value through to the node)
    ("hyperlora_toy_world", "HyperLoRAToyEncode", "world", "bogus", ["world: 'bogus' not in"]),
    ("hyperlora_save_lora", "HyperLoRACheckpointLoader", "dtype", "fp8", ["dtype: 'fp8' not in", "'bf16'"]),
    ("hyperlora_save_lora", "HyperLoRAFaceAnalysisLoader", "provider", "tpu", ["provider: 'tpu' not in", "'cpu'"]),
    ("hyperlora_save_lora", "HyperLoRAEncodeID", "on_no_face", "bogus", ["on_no_face: 'bogus' not in", "'skip'"]),
    ("hyperlora_save_lora", "HyperLoRASave", "dtype", "fp8", ["dtype: 'fp8' not in"]),
    ("hyperlora_interpolate_two_people", "HyperLoRAInterpolate", "mode", "bogus", ["mode: 'bogus' not in", "'delta'"]),
    # the placeholder an empty list shows is no face pack, even when one is installed by now
    ("hyperlora_save_lora", "HyperLoRAFaceAnalysisLoader", "pack", "(none found)",
     ["'(none found)' is not a face model pack", "pick one that is there now: antelopev2/"]),
]


@pytest.mark.parametrize("name,kind,field,value,expected", QUEUE_CASES,
                         ids=[f"{c[1]}.{c[2]}={c[3]}" for c in QUEUE_CASES])
def test_bad_widget_values_are_refused_when_queued_under_their_own_node_and_input(server, name, kind, field, value,
                                                                                 expected):
    prompt = _prompt(name)
    node = workflows.nodes_of(prompt, kind)[0]
    prompt[node]["inputs"][field] = value
    logged = len(server.log())
    errors = _rejected(server, prompt, node)
    assert [e["extra_info"]["input_name"] for e in errors] == [field], errors
    assert all(text in errors[0]["details"] for text in expected), errors[0]
    assert "inf" not in errors[0]["details"].replace("insightface", "")
    log = server.log()[logged:]
    assert expected[0] in log and "Traceback" not in log  # the server's log says it in words, no stack trace


@pytest.mark.parametrize("field,value,expected,other", [
    ("crop_scale_LRTB", "1,x,1,1", 'crop_scale_LRTB: crop scales "1,x,1,1" are not 4', "weights"),
    ("crop_scale_LRTB", "1e400,1,1,1", 'crop_scale_LRTB: crop scales must be 4 numbers', "weights"),
    ("weights", "1e308", "weights '1e308' is not a weight", "crop"),
])
def test_encode_base_messages_name_the_widget_that_is_wrong(server, field, value, expected, other):
    """Encode Base has two checked strings; ComfyUI files one validator's message under every input it takes
    (nodes/spec.py `_queue_check`), so each message itself names the widget and echoes its value."""
    prompt = _prompt("hyperlora_t2i_one_photo")
    node = _with_encode_base(prompt)
    prompt[node]["inputs"][field] = value
    errors = _rejected(server, prompt, node)
    assert field in {e["extra_info"]["input_name"] for e in errors}
    for e in errors:
        message = e["details"].split(" - ", 1)[1]
        assert expected in message and other not in message and "inf" not in message, e
    if field == "crop_scale_LRTB" and value.startswith("1e400"):
        assert all('"1e400,1,1,1"' in e["details"] for e in errors)


def test_a_weight_count_that_does_not_fit_the_batch_is_named_by_the_encoder(server):
    """Known only when the node runs (the batch size): said by the node that has the widget, in words."""
    prompt = workflows.api("hyperlora_toy_world")
    node = workflows.nodes_of(prompt, "HyperLoRAToyEncode")[0]
    prompt[node]["inputs"]["weights"] = "2, 1"
    result = server.run(_only_outputs_after(prompt, node))
    assert result.error is not None and result.error["node_type"] == "HyperLoRAToyEncode", result.error
    message = result.error["exception_message"]
    assert "weights '2, 1' give 2 weights but the batch has 1 photo; give one weight per photo, e.g. '1'" in message
    assert "dimensions" not in message

    prompt = _prompt("hyperlora_t2i_several_photos")
    node = workflows.nodes_of(prompt, "HyperLoRAEncodeID")[0]
    prompt[node]["inputs"]["weights"] = "2, 1"
    result = server.run(_only_outputs_after(prompt, node))
    assert result.error is not None and result.error["node_type"] == "HyperLoRAEncodeID", result.error
    assert "weights '2, 1' give 2 weights but the batch has 3 photos; give one weight per photo, e.g. '1, 1, 1'" in \
        result.error["exception_message"]


# -- images that are not ComfyUI IMAGEs ------------------------------------------------------------------
def _toy_photo() -> torch.Tensor:
    from hyperlora_core.toy.install import heldout_photos

    images, _ = heldout_photos(0, 2, 0, 1)
    return torch.from_numpy(images).float() / 255.0


@pytest.mark.parametrize("node", ["HyperLoRAToyEncode", "HyperLoRAToyEncodeBase"])
@pytest.mark.parametrize("bad,expected", [
    (lambda x: x * 255.0, "looks like a 0..255 image; divide it by 255"),
    (lambda x: x.permute(0, 3, 1, 2).contiguous(), "channels-first: move the channel axis last"),
    (lambda x: (x * 255).to(torch.uint8), "holds uint8 values"),
])
def test_toy_encoders_refuse_what_is_not_a_comfyui_image(pack, node, bad, expected):
    from fixtures.nodes_env import run_node

    from hyperlora_core.toy.files import BUILTIN_WORLD

    good = _toy_photo()
    run_node(pack[node], photos=good, world=BUILTIN_WORLD, weights="")  # the same photos as IMAGE are fine
    with pytest.raises(HyperLoRAError, match=expected):
        run_node(pack[node], photos=bad(good), world=BUILTIN_WORLD, weights="")



# -- LoRA space: LoRAs of two checkpoints ------------------------------------------------------------------
def _generated(path, seed: int):
    """An ID-LoRA of the tiny checkpoint at `path` (as the Loader loads it) for one random photo condition."""
    from hyperlora_core.model import HyperLoRA
    from hyperlora_core.standins.models import TINY_VISION_WIDTH

    model = HyperLoRA.from_pretrained(path)
    g = torch.Generator().manual_seed(seed)
    clip = torch.randn(1, 257, TINY_VISION_WIDTH, generator=g)
    face = torch.nn.functional.normalize(torch.randn(1, 512, generator=g), dim=-1)
    return model.generate_id_lora(clip, face)


@pytest.fixture(scope="module")
def two_checkpoints(tmp_path_factory):
    """LoRAs of two checkpoints of one architecture (same shapes; the campaign's silent LoRA-space case)."""
    from hyperlora_core import standins

    root = tmp_path_factory.mktemp("spaces")
    a = standins.write_tiny_checkpoint(root / "person_a.safetensors", seed=1)
    b = standins.write_tiny_checkpoint(root / "person_b.safetensors", seed=2)
    copy_of_a = root / "copy" / "person_a_copy.safetensors"
    copy_of_a.parent.mkdir()
    copy_of_a.write_bytes(a.read_bytes())
    return {"a1": _generated(a, 0), "a2": _generated(a, 1), "b": _generated(b, 2), "copy": _generated(copy_of_a, 3)}


@pytest.mark.parametrize("node,inputs,what", [
    ("HyperLoRAMix", {"mode": "factors", "normalize": True, "weight_1": 1.0, "weight_2": 1.0, "weight_3": 1.0,
                      "weight_4": 1.0}, "'factors' mixing"),
    ("HyperLoRAInterpolate", {"t": 0.5, "mode": "factors"}, "interpolating"),
    ("HyperLoRAInterpolate", {"t": 0.5, "mode": "delta"}, "interpolating"),
    ("HyperLoRAConceptSlider", {"scale": 1.0}, "a concept slider"),
])
def test_lora_space_operations_refuse_loras_of_two_checkpoints_naming_both(pack, two_checkpoints, node, inputs, what):
    from fixtures.nodes_env import run_node

    a, b = ("lora_1", "lora_2") if node == "HyperLoRAMix" else ("lora_a", "lora_b")
    loras = two_checkpoints
    run_node(pack[node], **inputs, **{a: loras["a1"], b: loras["a2"]})  # one checkpoint: fine
    run_node(pack[node], **inputs, **{a: loras["a1"], b: loras["copy"]})  # a copy of that file is that checkpoint
    with pytest.raises(HyperLoRAError) as err:
        run_node(pack[node], **inputs, **{a: loras["a1"], b: loras["b"]})
    message = str(err.value)
    assert message.startswith(f"{what}: LoRA 1 was made by the HyperLoRA checkpoint person_a.safetensors (")
    assert "but LoRA 2 by person_b.safetensors (" in message


def test_delta_mixing_takes_loras_of_any_checkpoint_and_saved_loras_say_which_made_them(pack, two_checkpoints,
                                                                                         tmp_path):
    from fixtures.nodes_env import output_folder, run_node
    from safetensors import safe_open

    loras = two_checkpoints
    (mixed,), _ = run_node(pack["HyperLoRAMix"], mode="delta", normalize=True, lora_1=loras["a1"], lora_2=loras["b"],
                           weight_1=1.0, weight_2=1.0, weight_3=1.0, weight_4=1.0)
    assert mixed  # the exact sum of two updates means something for any LoRAs
    with output_folder(tmp_path):
        _, ui = run_node(pack["HyperLoRASave"], lora=loras["a1"], filename_prefix="space/a", dtype="fp16", notes="")
    entry = ui["loras"][0]
    with safe_open(str(tmp_path / entry["subfolder"] / entry["filename"]), "pt") as f:
        meta = f.metadata()
    assert meta["hyperlora.source"] == "person_a.safetensors"
    assert meta["hyperlora.space"] == loras["a1"].space.digest == loras["copy"].space.digest != loras["b"].space.digest


def test_factors_mixing_refuses_loras_of_other_modules(two_checkpoints):
    """A module one LoRA lacks was mixed from the others alone (its factor weights then square); refused."""
    from hyperlora_core.lora import mix_loras

    a = dict(two_checkpoints["a1"])
    b = {k: v for k, v in two_checkpoints["a2"].items() if not k.startswith(next(iter(a)).split(".")[0])}
    with pytest.raises(HyperLoRAError, match=r"'factors' mixing needs the same modules in every LoRA, but module .* "
                                             r"is missing from LoRA 2"):
        mix_loras([a, b], [0.5, 0.5], "factors")
    assert mix_loras([a, b], [0.5, 0.5], "delta")


# -- zero and empty LoRAs ----------------------------------------------------------------------------------
def test_a_slider_at_scale_0_is_a_zero_lora_that_saves(pack, two_checkpoints, tmp_path):
    from fixtures.nodes_env import output_folder, run_node

    from hyperlora_core.lora import delta_weight, lora_modules

    loras = two_checkpoints
    (zero,), _ = run_node(pack["HyperLoRAConceptSlider"], lora_a=loras["a1"], lora_b=loras["a2"], scale=0.0)
    assert set(lora_modules(zero)) == set(lora_modules(loras["a1"]))
    assert all(not delta_weight(zero, p).any() for p in lora_modules(zero))
    with output_folder(tmp_path):
        _, ui = run_node(pack["HyperLoRASave"], lora=zero, filename_prefix="slider/zero", dtype="fp16", notes="")
    assert (tmp_path / ui["loras"][0]["subfolder"] / ui["loras"][0]["filename"]).is_file()


@pytest.mark.parametrize("which", ["lora", "base_lora"])
def test_applying_an_empty_lora_is_a_named_error_not_a_silent_no_op(pack, two_checkpoints, which):
    from fixtures.nodes_env import run_node

    from hyperlora_core.comfy_bridge.backbone import tiny_backbone

    model = tiny_backbone(0).unet
    lora = two_checkpoints["a1"]
    inputs = {"model": model, "lora": lora, "strength": 0.8, "base_lora": None, "base_strength": 0.0}
    inputs.update({which: {}, "base_strength": 0.5} if which == "base_lora" else {which: {}})
    what = "Base-LoRA" if which == "base_lora" else "ID-LoRA"
    with pytest.raises(HyperLoRAError, match=rf"{what}: the LoRA is empty \(no '.lora_down.weight' keys\), so applying "
                                             "it would change nothing"):
        run_node(pack["HyperLoRAApply"], **inputs)



# -- a large batch leaves nothing behind ---------------------------------------------------------------------
def _large_arrays() -> set[int]:
    import gc

    import numpy as np

    gc.collect()
    # type() rather than isinstance(): isinstance asks deprecated module proxies (torch.distributed.reduce_op)
    # for their class, which warns
    return {id(o) for o in gc.get_objects()
            if (issubclass(type(o), torch.Tensor) and o.numel() * o.element_size() >= 2**20)
            or (issubclass(type(o), np.ndarray) and o.nbytes >= 2**20)}


def test_a_large_batch_keeps_only_its_outputs_and_those_small(pack, tmp_path):
    """ComfyUI keeps a node's outputs after the prompt ends (its cache): Encode ID's crop preview is at the
    224 px CLIP sees (a 64-photo batch kept 201 MB of 512 px previews), shared with the condition, not
    copied; and once the outputs go, nothing the encoding made stays alive (no cache of ours holds photos)."""
    import numpy as np
    from fixtures.nodes_env import model_folder, run_node

    from hyperlora_core import standins

    count = 16
    photos = torch.stack([torch.from_numpy(np.array(standins.face_photo(200 + k).convert("RGB"))).float() / 255
                          for k in range(count)])
    standins.write_tiny_face_pack(tmp_path / "insightface" / "models" / "antelopev2")
    with model_folder("insightface", tmp_path / "insightface"):
        (faces,), _ = run_node(pack["HyperLoRAFaceAnalysisLoader"], pack="antelopev2/tiny_2d106.onnx", provider="cpu")
        clip = standins.build_tiny_clip_vision(0)
        before = _large_arrays()
        (cond, crops), _ = run_node(pack["HyperLoRAEncodeID"], photos=photos, face_analysis=faces, clip_vision=clip,
                                    weights="", remove_background=True, grayscale=False, face_index=-1,
                                    on_no_face="error")
        assert tuple(crops.shape) == (count, 224, 224, 3)
        assert crops.untyped_storage().data_ptr() == cond.face_crops.untyped_storage().data_ptr()
        del cond, crops
        assert _large_arrays() - before == set()
