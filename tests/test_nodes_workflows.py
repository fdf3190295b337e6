"""The shipped workflows: up to date with their one description (`workflows/library.py`), following the
format doc's rules (trigger words, CLIP skip -2), carrying download entries the frontends can use, and
laid out to be read."""

from __future__ import annotations

import pytest
from fixtures import workflows
from fixtures.pack import ROOT

from hyperlora_core.config import TRIGGER_WORDS
from hyperlora_core.models import items
from workflows import build, library, ui
from workflows.graph import NOTE, L, api_format, outputs


@pytest.fixture(scope="module")
def infos():
    graphs = [t.build() for t in library.TEMPLATES]
    return {**build.host_node_infos({n.type for g in graphs for n in g}), NOTE: ui.NOTE_INFO}


def test_shipped_files_match_the_builder(infos):
    files = build.build_all(infos)
    assert len(files) == 2 * len(library.TEMPLATES)
    stale = [str(p.relative_to(ROOT)) for p, text in files.items() if not p.is_file() or p.read_text() != text]
    assert not stale, f"run `python -m workflows.build`; out of date: {stale}"
    extra = sorted({p.name for p in (ROOT / "workflows").glob("*.json")} - {p.name for p in files})
    assert not extra, f"not built by workflows/build.py: {extra}"


@pytest.mark.parametrize("name", workflows.names())
def test_prompts_start_with_the_trigger_words_and_skip_the_last_clip_layer(name):
    prompt = workflows.api(name)
    samplers = workflows.nodes_of(prompt, "KSampler")
    if workflows.nodes_of(prompt, "HyperLoRAToyWorldLoader"):
        # the toy world: its caption encoder knows no trigger words and has no CLIP layers to skip; the
        # caption stays empty so that only the LoRA can carry identity (the edit graph: except with the ID-LoRA
        # alone, whose caption names a background and shirt and nothing of identity), and nothing is downloaded
        captions = {prompt[prompt[s]["inputs"]["positive"][0]]["inputs"]["text"] for s in samplers}
        assert captions == ({"", library.TOY_EDIT_CAPTION} if name == "hyperlora_toy_world_edit" else {""}), captions
        assert not any(n.get("properties", {}).get("models") for n in workflows.ui(name)["nodes"])
        return
    for sampler in samplers:
        positive = prompt[sampler]["inputs"]["positive"][0]
        while prompt[positive]["class_type"] != "CLIPTextEncode":  # through the ControlNet
            positive = prompt[positive]["inputs"]["positive"][0]
        assert prompt[positive]["inputs"]["text"].startswith(TRIGGER_WORDS)
        clip_src = prompt[prompt[positive]["inputs"]["clip"][0]]
        assert clip_src["class_type"] == "CLIPSetLastLayer" and clip_src["inputs"]["stop_at_clip_layer"] == -2


MODEL_WIDGETS = {"CheckpointLoaderSimple": ["ckpt_name"], "HyperLoRACLIPVisionLoader": ["clip_vision"],
                 "HyperLoRAOneClick": ["clip_vision"], "ControlNetLoader": ["control_net_name"]}
"""Model widgets whose file a frontend's download button can put in place by itself (one file on a hub)."""
NO_BUTTON = {"HyperLoRACheckpointLoader": ["checkpoint"], "HyperLoRAOneClick": ["checkpoint", "face_pack"],
             "HyperLoRAFaceAnalysisLoader": ["pack"]}
"""Model widgets a button would leave broken (a published checkpoint's four files, the hand-placed face pack): Run's
refusal names them and points to the Fetch Models node."""


@pytest.mark.parametrize("name", workflows.names())
def test_download_entries_name_only_what_a_button_can_put_in_place(name):
    """Newer frontends list a model when a node's `properties.models` entry names its widget value; older
    ones check the workflow's `models` list against ComfyUI's model lists. Each entry is one whole model."""
    wf, prompt = workflows.ui(name), workflows.api(name)
    entries = {(m["directory"], m["name"]): m["url"] for m in wf["models"]}
    for node in wf["nodes"]:
        own = {m["name"]: m for m in node.get("properties", {}).get("models", [])}
        for widget in MODEL_WIDGETS.get(node["type"], []):
            value = prompt[str(node["id"])]["inputs"][widget]
            assert value in own and own[value]["url"].startswith("https://huggingface.co/"), (node["type"], value)
            assert (own[value]["directory"], value) in entries
        for widget in NO_BUTTON.get(node["type"], []):
            assert prompt[str(node["id"])]["inputs"][widget] not in own, (node["type"], widget)
    one_file = {(it.folder, it.main.target) for it in items() if it.one_download}
    assert set(entries) <= one_file, sorted(set(entries) - one_file)
    assert not {d for d, _ in entries} & {"hyper_lora", "insightface"}
    face = [n for n in prompt.values() if n["class_type"] == "HyperLoRAFaceAnalysisLoader"]
    assert all(n["inputs"]["pack"] == "antelopev2/glintr100.onnx" for n in face)  # a file name: listed if missing


@pytest.mark.parametrize("template", library.TEMPLATES, ids=lambda t: t.slug)
def test_templates_open_readably(template, infos):
    nodes = template.build()
    placed = ui.layout(nodes, infos)  # raises if anything overlaps
    assert ui.fit_scale(placed) >= ui.TEXT_SCALE
    assert nodes[0].type == NOTE and len(nodes[0].inputs["text"]) > 80  # what it does, what goes where
    assert all(len(n.title or "") <= 24 for n in nodes), [n.title for n in nodes if len(n.title or "") > 24]
    assert len(template.title) <= 28 and not set(template.title) & set('/\\:*?"<>|#%')


def test_the_toy_world_shows_its_pictures_large_and_the_demo_graph_is_the_same():
    shipped = workflows.api("hyperlora_toy_world")
    scales = [n for n in shipped.values() if n["class_type"] == "ImageScaleBy"]
    assert len(scales) == 2 and all(s["inputs"] == {**s["inputs"], "upscale_method": "nearest-exact", "scale_by": 8.0}
                                    for s in scales)
    nodes = library.toy_world(["toy_world/a.png", "toy_world/b.png", "toy_world/c.png"], world="toy_world", batch=1,
                              display_scale=1)
    demo = api_format(nodes)
    for node in demo.values():
        for value in node["inputs"].values():
            if isinstance(value, list):
                assert value[0] in demo, value
    encode = demo[workflows.nodes_of(demo, "HyperLoRAToyEncode")[0]]
    assert demo[encode["inputs"]["photos"][0]]["class_type"] == "ImageBatch"
    samplers = [(k, n["inputs"]) for k, n in shipped.items() if n["class_type"] == "KSampler"]
    demo_samplers = [(k, n["inputs"]) for k, n in demo.items() if n["class_type"] == "KSampler"]
    assert samplers == demo_samplers  # one builder: the demo samples exactly as the template does
    named = outputs(nodes)  # what `make demo` reads back: by name, not by id
    assert set(named) == {library.TOY_WITH, library.TOY_WITHOUT}
    assert all(demo[i]["class_type"] == "SaveImage" for i in named.values())
    assert demo[named[library.TOY_WITH]]["inputs"]["filename_prefix"].endswith(library.TOY_WITH)
    with pytest.raises(ValueError):
        library.toy_world([])


def test_the_edit_graph_makes_both_loras_from_one_photo_and_the_demo_graph_is_the_same():
    shipped = workflows.api("hyperlora_toy_world_edit")
    applies = {k: n["inputs"] for k, n in shipped.items() if n["class_type"] == "HyperLoRAApply"}
    with_base = [a for a in applies.values() if "base_lora" in a]
    assert len(applies) == 2 and len(with_base) == 1 and with_base[0]["base_strength"] == 1.0
    photos = {shipped[n]["inputs"]["photos"][0] for n in workflows.nodes_of(shipped, "HyperLoRAToyEncode")
              + workflows.nodes_of(shipped, "HyperLoRAToyEncodeBase")}
    assert len(photos) == 1  # ID and Base from the same photo
    nodes = library.toy_world_edit(["toy_world/a.png"], ["red shirt", "blue plain background"], batch=1, display_scale=1)
    demo = api_format(nodes)
    named = outputs(nodes)
    assert set(named) == {library.TOY_ID_BASE, library.toy_edit_output(0), library.toy_edit_output(1)}
    assert all(demo[i]["class_type"] == "SaveImage" for i in named.values())
    # each named image is its own caption's: the SaveImage <- VAEDecode <- KSampler whose positive is caption k
    for k, caption in enumerate(["red shirt", "blue plain background"]):
        decode = demo[named[library.toy_edit_output(k)]]["inputs"]["images"][0]
        ksampler = demo[demo[decode]["inputs"]["samples"][0]]
        assert demo[ksampler["inputs"]["positive"][0]]["inputs"]["text"] == caption
    assert all(value[0] in demo for node in demo.values() for value in node["inputs"].values() if isinstance(value, list))
    with pytest.raises(ValueError):
        library.toy_world_edit(["a.png", "b.png"])


@pytest.mark.parametrize("template", library.TEMPLATES, ids=lambda t: t.slug)
def test_every_template_has_its_picture(template):
    """The template browser shows `<title>.jpg` (drawn by `python -m workflows.build --thumbnails`)."""
    from PIL import Image, ImageStat

    picture = Image.open(ROOT / "workflows" / f"{template.title}.jpg")
    assert picture.format == "JPEG" and picture.size == (512, 512)
    assert ImageStat.Stat(picture.convert("L")).stddev[0] > 10  # a picture, not a blank (they measure 25-50)
    extra = {p.stem for p in (ROOT / "workflows").glob("*.jpg")} - {t.title for t in library.TEMPLATES}
    assert not extra, f"pictures of no template: {extra}"


@pytest.mark.parametrize("slug", ["hyperlora_toy_world", "hyperlora_toy_world_edit"])
def test_the_toy_templates_show_the_reference_photo_beside_the_results(slug):
    nodes = library.template(slug).build()
    photos = next(n for n in nodes if n.type == "HyperLoRAToyPhotos")
    shown = [n for n in nodes if n.type == "PreviewImage" and n.inputs["images"] == L(photos.id)]
    results = {n.col for n in nodes if n.type == "SaveImage"}
    assert len(shown) == 1 and min(abs(shown[0].col - col) for col in results) == 1  # the column next to them
