"""The shipped workflows: up to date with their description, and following the format doc's rules
(trigger words, CLIP skip -2, model download entries)."""

from __future__ import annotations

import importlib.util
import sys

import pytest
from fixtures import workflows
from fixtures.pack import ROOT

from hyperlora_core.config import TRIGGER_WORDS


@pytest.fixture(scope="module")
def builder():
    spec = importlib.util.spec_from_file_location("hyperlora_build_workflows", ROOT / "workflows" / "build_workflows.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_shipped_files_match_the_builder(builder):
    files = builder.build_all()
    assert len(files) == 2 * len(builder.WORKFLOWS)
    stale = [str(p.relative_to(ROOT)) for p, text in files.items() if not p.is_file() or p.read_text() != text]
    assert not stale, f"run `python workflows/build_workflows.py`; out of date: {stale}"


@pytest.mark.parametrize("name", workflows.names())
def test_prompts_start_with_the_trigger_words_and_skip_the_last_clip_layer(name):
    prompt = workflows.api(name)
    samplers = workflows.nodes_of(prompt, "KSampler")
    if workflows.nodes_of(prompt, "HyperLoRAToyWorldLoader"):
        # the toy world: its caption encoder knows no trigger words and has no CLIP layers to skip;
        # the caption stays empty so that only the LoRA can carry identity, and nothing is downloaded
        assert all(prompt[prompt[s]["inputs"]["positive"][0]]["inputs"]["text"] == "" for s in samplers)
        assert not any(n.get("properties", {}).get("models") for n in workflows.ui(name)["nodes"])
        return
    for sampler in samplers:
        positive = prompt[prompt[sampler]["inputs"]["positive"][0]]
        assert positive["inputs"]["text"].startswith(TRIGGER_WORDS)
        clip_src = prompt[positive["inputs"]["clip"][0]]
        assert clip_src["class_type"] == "CLIPSetLastLayer" and clip_src["inputs"]["stop_at_clip_layer"] == -2
    ui = workflows.ui(name)
    for node in ui["nodes"]:
        if node["type"] in ("CheckpointLoaderSimple", "CLIPVisionLoader", "HyperLoRACheckpointLoader", "HyperLoRAOneClick"):
            models = node["properties"]["models"]
            assert models and all(m["url"].startswith("https://huggingface.co/") and m["directory"] for m in models)
            assert all(m["url"].endswith(".safetensors") for m in models)
    assert all(n["class_type"].startswith("HyperLoRA") or n["class_type"] in builder_core_nodes() for n in prompt.values())


def builder_core_nodes() -> set[str]:
    return {"CheckpointLoaderSimple", "CLIPSetLastLayer", "CLIPTextEncode", "EmptyLatentImage", "KSampler", "VAEDecode",
            "SaveImage", "PreviewImage", "LoadImage", "ImageBatch", "CLIPVisionLoader"}
