"""Node help pages (`web/docs/`): every registered node has an English and a Chinese page, written from
its declaration and `locales/zh` by `python -m scripts.node_docs` and kept current, and ComfyUI serves
them where both frontends' help panel asks (`/extensions/<pack>/docs/<NodeId>[/<locale>].md`)."""

from __future__ import annotations

import urllib.request

import pytest
from fixtures import comfy_session
from fixtures.pack import pack_submodule

from scripts import locales, node_docs

REGENERATE = f"run `{node_docs.COMMAND}` and commit web/docs/"


@pytest.fixture(scope="module")
def registry():
    return pack_submodule("nodes.registry")


@pytest.fixture(scope="module")
def pages(registry):
    return node_docs.pages(registry, {"zh": locales.load("zh")})


def test_every_node_has_a_current_english_and_chinese_page(registry, pages):
    for d in registry.node_defs(include_compat=True):
        for lang in ("en", "zh"):
            path = node_docs.path_of(d.node_id, lang)
            assert path.is_file(), f"no help page {path.relative_to(node_docs.ROOT)}: {REGENERATE}"
            assert path.read_text(encoding="utf-8") == pages[path], f"{path.relative_to(node_docs.ROOT)} is out of date: {REGENERATE}"
    shipped = set(node_docs.DOCS.rglob("*.md"))
    assert shipped == set(pages), f"pages of nodes that no longer exist: {REGENERATE}"


def test_a_page_says_what_the_node_and_each_input_do(registry, pages):
    zh = locales.load("zh")
    for d in registry.node_defs(include_compat=True):
        en_page, zh_page = pages[node_docs.path_of(d.node_id, "en")], pages[node_docs.path_of(d.node_id, "zh")]
        assert en_page.startswith(f"# {d.display_name}\n") and d.description in en_page
        assert zh_page.startswith(f"# {zh[d.node_id]['display_name']}\n") and zh[d.node_id]["description"] in zh_page
        for i in d.inputs:
            assert f"**{i.name}**" in en_page and i.tooltip in en_page, (d.node_id, i.name)
            assert f"`{i.name}`" in zh_page or f"**{i.name}**" in zh_page, (d.node_id, i.name)
            assert zh[d.node_id]["inputs"][locales.key(i.name)]["tooltip"] in zh_page, (d.node_id, i.name)
        assert "## 输入" in zh_page and "## Inputs" not in zh_page


def test_the_server_serves_them_where_the_help_panel_asks(comfyui_path):
    server = comfy_session.get(comfyui_path)
    module = server.get_json("/object_info/HyperLoRAApply")["HyperLoRAApply"]["python_module"]
    assert module.startswith("custom_nodes.")
    pack = module.split(".")[1]  # what both frontends take as the pack's name (extractCustomNodeName)
    for url, page in [(f"/extensions/{pack}/docs/HyperLoRAApply.md", "HyperLoRAApply.md"),
                      (f"/extensions/{pack}/docs/HyperLoRAApply/zh.md", "HyperLoRAApply/zh.md")]:
        with urllib.request.urlopen(server.url + url, timeout=30) as response:
            assert response.read().decode("utf-8") == (node_docs.DOCS / page).read_text(encoding="utf-8")
    scripts = [e for e in server.get_json("/extensions") if e.startswith(f"/extensions/{pack}/")]
    assert scripts == []  # the web folder holds pages only: no frontend runs code from it
