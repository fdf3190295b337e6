"""Property: whatever widget values an API client sends to any of our nodes, the prompt is rejected
by validation, or it runs and either succeeds with finite outputs or fails with our error
(HyperLoRAError, a sentence) -- and the server keeps answering.

Random values per widget type (hypothesis), from each node's own /object_info spec: in-range
numbers, NaN, +-Inf, huge and out-of-range values, negative numbers, unicode, empty and path-like
strings, odd booleans. Combo values come from each combo's list (out-of-list values are the combo
validation's job, tested with it). Each node runs inside a shipped workflow pointed at the tiny
models, trimmed so that it ends in a Save LoRA or a preview instead of sampling where it can.

Each node type gets its own examples, in two halves: odd values (mostly refused at the door, which
proves validation) and values its spec declares valid (never refused, so each reaches execution and
proves the node itself copes). Saved LoRAs must be finite and no image a flat NaN-black picture.
"""

from __future__ import annotations

import copy
import math
from collections import Counter

import pytest
import torch
from fixtures import comfy_session, workflows
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file

from scripts.comfy_server import PromptRejected

EXAMPLES_PER_KIND = 3
"""Odd values: 3 per node type."""
IN_RANGE_PER_KIND = 2
"""Values inside the declared ranges: 2 per node type."""
SAVE_PREFIX = "fuzz/lora"


@pytest.fixture(scope="module")
def server(comfyui_path):
    return comfy_session.get(comfyui_path)


def _tiny(name: str) -> dict:
    return workflows.for_tiny_models(workflows.api(name), comfy_session.TINY_CHECKPOINT,
                                     f"hyper_lora/{comfy_session.VITL_CHECKPOINT}")


def _without_outputs(prompt: dict) -> dict:
    return {k: v for k, v in prompt.items() if v["class_type"] not in ("SaveImage", "PreviewImage", "HyperLoRASave")}


def _save(prompt: dict, lora: list) -> dict:
    prompt["fuzz_save"] = {"class_type": "HyperLoRASave", "inputs": {"lora": lora, "filename_prefix": SAVE_PREFIX,
                                                                     "dtype": "fp32"}}
    return prompt


def _lab() -> dict[str, tuple[dict, str]]:
    """node type -> (a prompt that runs it cheaply, the id of the node whose widgets are fuzzed)."""
    labs: dict[str, tuple[dict, str]] = {}
    save = _tiny("hyperlora_save_lora")
    for kind in ("HyperLoRACheckpointLoader", "HyperLoRAFaceAnalysisLoader", "HyperLoRAEncodeID",
                 "HyperLoRAGenerateID", "HyperLoRASave"):
        labs[kind] = (save, workflows.nodes_of(save, kind)[0])
    two = _without_outputs(_tiny("hyperlora_interpolate_two_people"))
    gen_a, gen_b = workflows.nodes_of(two, "HyperLoRAGenerateID")[:2]
    interp = workflows.nodes_of(two, "HyperLoRAInterpolate")[0]
    labs["HyperLoRAInterpolate"] = (_save(copy.deepcopy(two), [interp, 0]), interp)
    mix = copy.deepcopy(two)
    mix["fuzz_mix"] = {"class_type": "HyperLoRAMix", "inputs": {
        "mode": "delta", "normalize": True, "lora_1": [gen_a, 0], "weight_1": 1.0, "lora_2": [gen_b, 0],
        "weight_2": 1.0, "weight_3": 1.0, "weight_4": 1.0}}
    labs["HyperLoRAMix"] = (_save(mix, ["fuzz_mix", 0]), "fuzz_mix")
    slider = _without_outputs(_tiny("hyperlora_concept_slider"))
    node = workflows.nodes_of(slider, "HyperLoRAConceptSlider")[0]
    labs["HyperLoRAConceptSlider"] = (_save(slider, [node, 0]), node)
    base = copy.deepcopy(_without_outputs(save))
    enc = workflows.nodes_of(base, "HyperLoRAEncodeID")[0]
    base["fuzz_base"] = {"class_type": "HyperLoRAEncodeBase", "inputs": {
        **{k: base[enc]["inputs"][k] for k in ("photos", "face_analysis", "clip_vision")},
        "weights": "", "crop_scale_LRTB": "1,1,1,1", "clamp_to_image": True, "face_index": -1, "on_no_face": "error"}}
    base["fuzz_gen_base"] = {"class_type": "HyperLoRAGenerateBase", "inputs": {
        "hyper_lora": base[workflows.nodes_of(base, "HyperLoRAGenerateID")[0]]["inputs"]["hyper_lora"],
        "base_cond": ["fuzz_base", 0]}}
    labs["HyperLoRAEncodeBase"] = (_save(base, ["fuzz_gen_base", 0]), "fuzz_base")
    one = _tiny("hyperlora_t2i_one_photo")  # Apply needs a sampler to consume its MODEL (2 steps, 64 px)
    labs["HyperLoRAApply"] = (one, workflows.nodes_of(one, "HyperLoRAApply")[0])
    toy = _without_outputs(_tiny("hyperlora_toy_world"))
    toy_gen = workflows.nodes_of(toy, "HyperLoRAGenerateID")[0]
    toy = {k: v for k, v in toy.items() if v["class_type"].startswith("HyperLoRA")}
    toy = {k: v for k, v in toy.items() if v["class_type"] != "HyperLoRAApply"}
    toy["fuzz_preview"] = {"class_type": "PreviewImage", "inputs": {"images": [workflows.nodes_of(toy, "HyperLoRAToyPhotos")[0], 0]}}
    toy = _save(toy, [toy_gen, 0])
    for kind in ("HyperLoRAToyWorldLoader", "HyperLoRAToyPhotos", "HyperLoRAToyEncode"):
        labs[kind] = (toy, workflows.nodes_of(toy, kind)[0])
    edit = _without_outputs(_tiny("hyperlora_toy_world_edit"))
    edit = {k: v for k, v in edit.items() if v["class_type"].startswith("HyperLoRA") and v["class_type"] != "HyperLoRAApply"}
    edit = _save(edit, [workflows.nodes_of(edit, "HyperLoRAGenerateBase")[0], 0])
    labs["HyperLoRAToyEncodeBase"] = (edit, workflows.nodes_of(edit, "HyperLoRAToyEncodeBase")[0])
    return labs


LABS = _lab()
NOT_FUZZED = {
    "HyperLoRAFetchModels": "downloads from the Hugging Face hub (its faults: tests/test_models_fetch.py, on the fake hub)",
    "HyperLoRAModelCheck": "no widgets",
    "HyperLoRACLIPVisionLoader": "every lab has the tiny CLIP stand-in in its place (for_tiny_models); its choices' faults: "
                                 "tests/test_server_api.py",
    "HyperLoRAOneClick": "not yet: it loads CLIP by name, so its lab needs the full-size random ViT-L "
                         "(comfy_session.vit_l, 0.6 GB) in the server's folders and a ViT-L pass per example",
    "HyperLoRAGenerateBase": "no widgets (it runs in Encode Base's and Toy Encode Base's labs)",
}
"""Our node types that get no examples of their own, and why."""
ODD_STRINGS = ["", " ", "../../outside", "/abs/path", "a/" * 40 + "b", "名前/😀 face", "x" * 300, "1, nan, 2",
               "-1,-1,-1,-1", "1e309", "\\\\server\\share", "%year%/%month%", "\t"]


def _values(spec) -> st.SearchStrategy:
    kind, opts = spec[0], (spec[1] if len(spec) > 1 else {})
    if isinstance(kind, list) or kind == "COMBO":
        options = kind if isinstance(kind, list) else opts.get("options", [])
        return st.sampled_from(options) if options else st.nothing()
    lo, hi = opts.get("min"), opts.get("max")
    specials = [math.nan, math.inf, -math.inf, 1e308, -1e308, -1, 0]
    if kind == "INT":
        return st.one_of(st.integers(lo, hi), st.sampled_from([*specials, 2**63, -(2**63), (hi or 0) + 1, (lo or 0) - 1]))
    if kind == "FLOAT":
        return st.one_of(st.floats(lo, hi, allow_nan=False), st.sampled_from([*specials, (hi or 0) + 0.5, (lo or 0) - 0.5]),
                         st.floats(allow_nan=True, allow_infinity=True))
    if kind == "STRING":
        return st.one_of(st.text(max_size=30), st.sampled_from(ODD_STRINGS))
    if kind == "BOOLEAN":
        return st.one_of(st.booleans(), st.sampled_from([0, 1, "true", None]))
    return st.nothing()


def _in_range(spec) -> st.SearchStrategy:
    """A value the widget declares valid: a combo choice, a finite number inside min..max, a boolean. Strings
    keep the lab's own value (their syntax is the odd-values test's job)."""
    kind, opts = spec[0], (spec[1] if len(spec) > 1 else {})
    if isinstance(kind, list) or kind == "COMBO":
        options = kind if isinstance(kind, list) else opts.get("options", [])
        return st.sampled_from(options) if options else st.nothing()
    lo, hi = opts.get("min"), opts.get("max")
    if kind == "INT":
        return st.integers(lo, hi)
    if kind == "FLOAT":
        return st.floats(lo, hi, allow_nan=False, allow_infinity=False)
    if kind == "BOOLEAN":
        return st.booleans()
    return st.nothing()


def _widgets(info: dict, kind: str) -> dict:
    spec = info[kind]["input"]
    every = {**spec.get("required", {}), **spec.get("optional", {})}
    out = {}
    for name, s in every.items():
        t = s[0]
        if isinstance(t, list) or t in ("COMBO", "INT", "FLOAT", "STRING", "BOOLEAN"):
            out[name] = s
    return out


def _images(server, result) -> list:
    """Every image the prompt wrote (SaveImage, PreviewImage), fetched as the editor does (GET /view)."""
    import io
    import urllib.parse
    import urllib.request

    import numpy as np
    from PIL import Image

    found = []
    for out in result.outputs.values():
        for entry in out.get("images", []):
            query = urllib.parse.urlencode({k: entry.get(k, "") for k in ("filename", "subfolder", "type")})
            with urllib.request.urlopen(f"{server.url}/view?{query}", timeout=30) as response:
                found.append(np.asarray(Image.open(io.BytesIO(response.read()))))
    return found


def _check_outputs(server, result) -> None:
    """Saved LoRAs hold finite numbers; no image is one flat value (a NaN anywhere in sampling or decoding
    ends as a uniformly black picture: that must be our error instead)."""
    for entry in result.outputs.get("fuzz_save", {}).get("loras", []):
        tensors = load_file(server.output_dir / entry["subfolder"] / entry["filename"])
        assert all(torch.isfinite(t).all() for t in tensors.values()), entry
    for image in _images(server, result):
        assert image.max() != image.min(), "a flat image: NaN or a dead model reached the picture"


def _run_one(server, info: dict, kind: str, data, draw_value) -> str:
    """Queue the node's lab prompt with some widgets drawn; the outcome: rejected / succeeded / our_error."""
    prompt, node = LABS[kind]
    prompt = copy.deepcopy(prompt)
    widgets = {name: spec for name, spec in _widgets(info, kind).items() if not draw_value(spec).is_empty}
    chosen = data.draw(st.lists(st.sampled_from(sorted(widgets)), min_size=1, max_size=len(widgets), unique=True),
                       label="fuzzed widgets") if widgets else []
    for name in chosen:
        prompt[node]["inputs"][name] = data.draw(draw_value(widgets[name]), label=name)
    try:
        result = server.run(prompt, timeout=300)
    except PromptRejected as rejected:  # the host's validation or our validate_inputs: a structured report
        assert rejected.status == 400 and rejected.messages(), rejected.body
        outcome = "rejected"
    else:
        # the node ran, or came from the cache, or the whole prompt did (hypothesis replays an example it saw)
        ran = node in result.executed or node in result.cached or not result.executed
        assert ran, (kind, "the fuzzed node never ran", result)
        if result.error is None:
            _check_outputs(server, result)
            outcome = "succeeded"
        else:
            assert result.error["exception_type"].endswith("HyperLoRAError"), (kind, result.error)
            assert result.error["exception_message"], result.error
            outcome = "our_error"
    assert "system" in server.get_json("/system_stats", timeout=10)
    return outcome


def _fuzz(server, kind: str, examples: int, draw_value) -> Counter:
    info = server.get_json("/object_info")
    counts: Counter = Counter()

    @settings(max_examples=examples, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(data=st.data())
    def one(data):
        counts[_run_one(server, info, kind, data, draw_value)] += 1

    one()
    print(f"\nfuzz {kind}: {dict(counts)}")
    return counts


def test_every_node_type_of_the_registry_gets_its_own_examples():
    """The examples are spread over node types: each of our nodes (the published pack's names aside) has a lab
    and so its own share of both halves below, or is listed in NOT_FUZZED with the reason; a new node fails
    here until it gets one."""
    from fixtures.pack import pack_submodule

    declared = {d.node_id for d in pack_submodule("nodes.registry").node_defs(include_compat=False)}
    assert set(LABS) | set(NOT_FUZZED) == declared, {"no lab": sorted(declared - set(LABS) - set(NOT_FUZZED)),
                                                     "not a node": sorted((set(LABS) | set(NOT_FUZZED)) - declared)}
    assert not set(LABS) & set(NOT_FUZZED)


@pytest.mark.parametrize("kind", sorted(LABS))
def test_any_widget_values_give_success_or_our_error_and_the_server_keeps_answering(server, kind):
    """Every node type gets its share of the examples (not a random draw of types), and each example ends in
    validation's report, a finite result or our error."""
    counts = _fuzz(server, kind, EXAMPLES_PER_KIND, _values)
    assert sum(counts.values()) >= 1


@pytest.mark.parametrize("kind", sorted(LABS))
def test_in_range_values_pass_validation_and_reach_execution(server, kind):
    """The odd values above are mostly refused at the door; this half proves the fuzzed nodes really run:
    numbers inside their declared ranges and combo values from their lists are never refused by validation,
    so each example executes the node and ends in a finite result or our error."""
    counts = _fuzz(server, kind, IN_RANGE_PER_KIND, _in_range)
    assert counts["rejected"] == 0, counts
    assert counts["succeeded"] + counts["our_error"] >= 1, counts  # fewer than asked when a node has few values
