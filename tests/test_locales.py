"""Translations (ComfyUI's custom-node `locales/<lang>/` convention): English from the node declarations,
Simplified Chinese by hand, for every node, input, output, tooltip and description; served at /i18n."""

from __future__ import annotations

import json

import pytest
from fixtures import comfy_session
from fixtures.pack import pack_submodule

from scripts import locales


@pytest.fixture(scope="module")
def english():
    return locales.english(pack_submodule("nodes.registry").node_defs(include_compat=True))


def test_english_is_written_from_the_declarations(english):
    shipped = locales.load("en")
    assert shipped == english, "run `python -m scripts.locales`"
    assert len(english) == 15 + 4 + 11  # ours, the toy world's, the published pack's names
    for node_id, entry in english.items():
        assert entry["display_name"] and entry["description"], node_id
        assert all(i.get("tooltip") for i in entry["inputs"].values()), node_id  # every input explains itself


@pytest.mark.parametrize("lang", locales.LANGUAGES)
def test_every_node_input_and_output_is_translated(english, lang):
    translated = locales.load(lang)
    assert locales.missing(english, translated) == []
    assert set(translated) == set(english)  # nothing stale either
    for node_id, entry in translated.items():
        assert set(entry["inputs"]) == set(english[node_id]["inputs"]), node_id
        assert set(entry["outputs"]) == set(english[node_id]["outputs"]), node_id
    if lang == "zh":
        texts = [t for e in translated.values() for t in [e["display_name"], e["description"]]]
        assert all(any("\u4e00" <= ch <= "\u9fff" for ch in t) for t in texts)  # Chinese, not copied English


def test_missing_texts_are_found():
    en = {"N": {"display_name": "A", "inputs": {"x": {"name": "x", "tooltip": "t"}}}}
    assert locales.missing(en, {"N": {"display_name": "甲", "inputs": {"x": {"name": "乙"}}}}) == ["N.inputs.x.tooltip"]
    assert locales.missing(en, {}) == ["N.display_name", "N.inputs.x.name", "N.inputs.x.tooltip"]


def test_the_server_serves_them(comfyui_path):
    server = comfy_session.get(comfyui_path)
    i18n = server.get_json("/i18n")
    zh = json.loads((locales.LOCALES / "zh" / "nodeDefs.json").read_text(encoding="utf-8"))
    assert i18n["zh"]["nodeDefs"]["HyperLoRAApply"] == zh["HyperLoRAApply"]
    assert i18n["zh"]["nodeCategories"]["published pack"] == "原版插件节点"
    assert i18n["en"]["nodeDefs"]["HyperLoRAApply"]["display_name"] == "HyperLoRA Apply"
