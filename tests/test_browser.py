"""The pack as graph-editor users meet it: the real ComfyUI frontend in headless Chromium, served by
the session's server, loading every shipped UI workflow (and one in the published pack's terms).

Needs Debian's `chromium` (scripts/setup_env.sh installs it where apt is available); screenshots go
to test-artifacts/.
"""

from __future__ import annotations

import shutil

import pytest
from fixtures import comfy_session, published_ui, workflows

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run"]

MISSING_JS = """() => {
    const graph = window.app.graph;
    const types = window.LiteGraph.registered_node_types;
    const missing = graph._nodes.filter(n => !types[n.type] || n.has_errors).map(n => n.type);
    const dialogs = Array.from(document.querySelectorAll('.p-dialog, [role=dialog]')).map(d => d.innerText);
    return {missing, dialogs, nodes: graph._nodes.map(n => n.type)};
}"""


@pytest.fixture(scope="module")
def page(comfyui_path):
    if not shutil.which("chromium") and not shutil.os.path.exists(CHROMIUM):
        pytest.fail("chromium is not installed; run scripts/setup_env.sh (apt-get install -y chromium)")
    from playwright.sync_api import sync_playwright

    server = comfy_session.get(comfyui_path)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(server.url)
        page.wait_for_function("() => window.app && window.app.graph && window.LiteGraph "
                               "&& window.LiteGraph.registered_node_types['HyperLoRAEncodeID']", timeout=120_000)
        page.errors = errors
        page.server = server
        yield page
        browser.close()


def load(page, workflow: dict) -> dict:
    page.evaluate("async (wf) => { await window.app.loadGraphData(wf); }", workflow)
    page.wait_for_timeout(300)
    return page.evaluate(MISSING_JS)


def exported_prompt(page) -> dict:
    return page.evaluate("async () => (await window.app.graphToPrompt()).output")


def test_every_node_of_the_pack_is_offered(page):
    info = page.server.get_json("/object_info")
    ours = sorted(k for k, v in info.items() if v.get("category") in ("HyperLoRA", "HyperLoRA/published pack"))
    registered = page.evaluate("(names) => names.filter(n => !!window.LiteGraph.registered_node_types[n])", ours)
    assert registered == ours and len(ours) == 14 + 3 + 11  # ours, the three toy-world nodes, the published names


def test_a_workflow_with_an_unknown_node_is_reported_missing(page):
    """The check below can fail: an unknown node type is detected."""
    wf = workflows.ui("hyperlora_save_lora")
    wf["nodes"][0]["type"] = "NoSuchNodeType"
    state = load(page, wf)
    assert state["missing"] == ["NoSuchNodeType"]
    page.keyboard.press("Escape")


@pytest.mark.parametrize("name", workflows.names())
def test_shipped_workflow_loads_without_missing_nodes(page, name, artifacts_dir):
    wf = workflows.ui(name)
    state = load(page, wf)
    assert state["missing"] == []
    assert not [d for d in state["dialogs"] if "missing" in d.lower()], state["dialogs"]
    assert sorted(state["nodes"]) == sorted(n["type"] for n in wf["nodes"])
    # The frontend's API export of the loaded graph is exactly our API file: widget order and links agree.
    exported = exported_prompt(page)
    expected = workflows.api(name)
    assert {k: (v["class_type"], v["inputs"]) for k, v in exported.items()} == \
           {k: (v["class_type"], v["inputs"]) for k, v in expected.items()}
    # Widget values as the editor holds them equal the file's: a widget the frontend adds on its own (such as
    # "control after generate" for an input named seed) would shift the saved values and show here.
    held = page.evaluate("() => Object.fromEntries(window.app.graph.serialize().nodes.map(n => [n.id, n.widgets_values]))")
    for node in wf["nodes"]:
        if node["type"] != "Note":
            assert held[str(node["id"])] == node.get("widgets_values", []), (node["type"], node["id"])
    page.screenshot(path=str(artifacts_dir / f"browser_{name}.png"))


def test_published_pack_workflow_loads_on_the_compatibility_nodes(page, artifacts_dir):
    comfy_session.vit_l(page.server)  # so its model lists hold the published names
    state = load(page, published_ui.workflow())
    assert state["missing"] == []
    assert not [d for d in state["dialogs"] if "missing" in d.lower()]
    exported = exported_prompt(page)
    for node_id, expected in published_ui.EXPECTED_INPUTS.items():
        widgets = {k: v for k, v in exported[node_id]["inputs"].items() if not isinstance(v, list)}
        assert widgets == expected, node_id
    assert sorted({v["class_type"] for v in exported.values() if v["class_type"].startswith("HyperLoRA")}) == \
        published_ui.PUBLISHED_NODE_TYPES
    assert len(published_ui.PUBLISHED_NODE_TYPES) == 11
    page.screenshot(path=str(artifacts_dir / "browser_published_pack_workflow.png"))
