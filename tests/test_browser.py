"""The pack as graph-editor users meet it, on the frontend ComfyUI v0.3.75 ships (1.32.9) and on the newest one
(1.58.1, the PyPI wheel that scripts/setup_env.sh unzips into .frontend/, served with --front-end-root),
in headless Chromium (Debian's `chromium`).

Each frontend gets its own ComfyUI with no model weights at all and an empty input folder, as a
new user has it: every template opens readably with no missing node, the frontend names the missing
weights before Run, Run is refused with our message before anything executes, the template browser shows
titles and pictures, the toy world runs from the Run button, a node's help panel shows its page (web/docs/),
and the nodes speak Chinese when asked.
Screenshots go to test-artifacts/browser_<frontend>_<what>.png.
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from fixtures import published_ui, workflows
from fixtures.pack import ROOT, pack_submodule
from PIL import Image

from scripts.comfy_server import ComfyServer, write_extra_model_paths
from workflows import library
from workflows.graph import NOTE

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run"]
VIEW = {"width": 1600, "height": 1000}
SDXL = [t.slug for t in library.TEMPLATES if not t.slug.startswith("hyperlora_toy_world") and t.slug != "hyperlora_model_check"]
NEWEST = sorted(p.parent for p in (ROOT / ".frontend").glob("*/.stamp"))
"""The newest frontend's folder (scripts/setup_env.sh downloads it); the host's own is used without one."""


MISSING_JS = """() => {
    const graph = window.app.graph;
    const types = window.LiteGraph.registered_node_types;
    const missing = graph._nodes.filter(n => !types[n.type]).map(n => n.type);  // (has_errors also marks missing models)
    return {missing, nodes: graph._nodes.map(n => n.type)};
}"""
VIEW_JS = """() => {
    const c = window.app.canvas, s = c.ds.scale, [ox, oy] = c.ds.offset;
    return {scale: s, nodes: window.app.graph._nodes.map(n => ({id: n.id, type: n.type, title: n.title,
            size: Array.from(n.size), x: (n.pos[0] + ox) * s, y: (n.pos[1] + oy) * s,
            titleTop: (n.pos[1] - 30 + oy) * s}))};
}"""

PHOTOS_JS = """() => window.app.graph._nodes.filter(n => n.type === 'LoadImage').map(n => {
    const w = n.widgets.find(w => w.name === 'image');
    const values = typeof w.options.values === 'function' ? w.options.values() : w.options.values;
    return [w.value, values.includes(w.value)];
})"""

NOTE_JS = """() => Array.from(document.querySelectorAll('.comfy-markdown .tiptap')).filter(e => e.offsetParent && e.querySelector('h2')).map(e => {
    const line = e.querySelector('h2');
    const px = line.getBoundingClientRect().height / line.offsetHeight * parseFloat(getComputedStyle(line).fontSize);
    return {px, fits: e.scrollHeight <= e.clientHeight + 1, text: e.innerText};
})"""


class Editor:
    def __init__(self, page, server: ComfyServer, version: str, newest: bool):
        self.page, self.server, self.version, self.newest = page, server, version, newest

    def close_dialogs(self) -> None:
        """Close every dialog the editor has open (missing models, errors, the template browser) and, on newer
        frontends, the issues overlay and the side panel listing them (they open again when there are new ones)."""
        self.page.keyboard.press("Escape")
        for _ in range(5):
            self.page.wait_for_timeout(300)
            close = self.page.locator(".p-dialog-mask button:has(.pi-times), .p-dialog-mask .p-dialog-close-button")
            if not close.count():
                break
            close.first.click()
        if self.newest:
            self.page.evaluate("async () => { await window.app.extensionManager.setting.set('Comfy.RightSidePanel.IsOpen', false); }")
            dismiss = self.page.locator("[data-testid=error-overlay] button:not([data-testid=error-overlay-see-errors])")
            if dismiss.count():
                dismiss.first.click()
            self.page.wait_for_timeout(300)

    def open_template(self, name: str) -> dict:
        """Load a template the way the template browser does (newer frontends then fit it to the window)."""
        self.close_dialogs()
        wf = workflows.ui(name)
        self.page.evaluate("async ([wf, title]) => { await window.app.loadGraphData(wf, true, true, title, "
                           "{openSource: 'template'}); }", [wf, workflows.title(name)])
        self.page.wait_for_timeout(1500)
        return wf

    def state(self) -> dict:
        return self.page.evaluate(MISSING_JS)

    def shot(self, artifacts: Path, what: str) -> None:
        self.page.screenshot(path=str(artifacts / f"browser_{self.version}_{what}.png"))

    def text(self) -> str:
        return self.page.evaluate("() => document.body.innerText")


@pytest.fixture(scope="module")
def declared() -> list[str]:
    """Every node id the registry declares (loaded before Playwright's event loop runs: the loader uses asyncio)."""
    return sorted(d.node_id for d in pack_submodule("nodes.registry").node_defs(include_compat=True))


@pytest.fixture(scope="module", params=["host", "newest"])
def editor(request, comfyui_path, artifacts_dir, declared):
    if request.param == "newest" and not NEWEST:
        pytest.fail("the newest frontend is not in .frontend/; run scripts/setup_env.sh (it downloads "
                    "comfyui-frontend-package into .frontend/)")
    root = NEWEST[-1] if request.param == "newest" else None
    if not shutil.which("chromium") and not Path(CHROMIUM).exists():
        pytest.fail("chromium is not installed; run scripts/setup_env.sh (apt-get install -y chromium)")
    from playwright.sync_api import sync_playwright

    base = Path(tempfile.mkdtemp(prefix="hyperlora-editor-"))
    models = base / "models"  # no weights at all
    for name in ("hyper_lora", "insightface", "clip_vision", "checkpoints", "controlnet", "loras"):
        (models / name).mkdir(parents=True)
    (base / "input").mkdir()  # empty, as on a fresh install: the pack places the templates' sample photos
    (base / "user" / "default").mkdir(parents=True)
    (base / "user" / "default" / "comfy.settings.json").write_text(json.dumps({
        "Comfy.TutorialCompleted": True, "Comfy.Workflow.ShowMissingModelsWarning": True,
        "Comfy.Validation.Workflows": True, "Comfy.Locale": "en"}))
    yaml_path = write_extra_model_paths(base / "extra_model_paths.yaml", models, {n: n for n in (
        "hyper_lora", "insightface", "clip_vision", "checkpoints", "controlnet", "loras")})
    server = ComfyServer(comfyui_path, base, extra_model_paths=yaml_path,
                         extra_args=["--front-end-root", str(root / "static")] if root else [])
    version = "1.32.9" if root is None else root.name
    with server, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport=VIEW)
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        not_found: list[str] = []
        page.on("response", lambda r: not_found.append(r.url) if r.status == 404 else None)
        page.goto(server.url)
        page.wait_for_function("() => window.app && window.app.graph && window.LiteGraph "
                               "&& window.LiteGraph.registered_node_types['HyperLoRAEncodeID']", timeout=180_000)
        page.wait_for_timeout(1500)
        ed = Editor(page, server, version, root is not None)
        ed.errors = errors
        ed.not_found = not_found
        ed.models = models
        yield ed
        browser.close()
    shutil.rmtree(base, ignore_errors=True)


def test_every_node_of_the_pack_is_offered(editor, declared):
    info = editor.server.get_json("/object_info")
    ours = sorted(k for k, v in info.items() if v.get("category") in ("HyperLoRA", "HyperLoRA/published pack"))
    registered = editor.page.evaluate("(names) => names.filter(n => !!window.LiteGraph.registered_node_types[n])", ours)
    assert registered == ours == declared  # every node the registry declares, the published names included
    published = sorted(k for k, v in info.items() if v.get("category") == "HyperLoRA/published pack")
    assert published == published_ui.PUBLISHED_NODE_TYPES  # in their own sub-category


def test_a_workflow_with_an_unknown_node_is_reported_missing(editor):
    """The check below can fail: an unknown node type is detected."""
    wf = workflows.ui("hyperlora_save_lora")
    wf["nodes"][1]["type"] = "NoSuchNodeType"
    editor.page.evaluate("async (wf) => { await window.app.loadGraphData(wf); }", wf)
    editor.page.wait_for_timeout(500)
    assert editor.state()["missing"] == ["NoSuchNodeType"]
    editor.page.keyboard.press("Escape")


@pytest.mark.parametrize("name", workflows.names())
def test_template_opens_readably(editor, name, artifacts_dir):
    editor.not_found.clear()
    wf = editor.open_template(name)
    state = editor.state()
    assert state["missing"] == [] and sorted(state["nodes"]) == sorted(n["type"] for n in wf["nodes"])
    # No missing input on a fresh install: every photo a Load Image names is among its choices (the sample photos
    # the pack placed into the empty input folder) and its preview loads (no 404 in the console).
    photos = editor.page.evaluate(PHOTOS_JS)
    assert all(listed for _, listed in photos) and len(photos) == sum(n["type"] == "LoadImage" for n in wf["nodes"]), photos
    assert editor.not_found == [], editor.not_found
    # The note is readable where the template opens: its text drawn at 9 px or more on screen, none of it scrolled away.
    (note,) = editor.page.evaluate(NOTE_JS)
    assert note["px"] >= 9 and note["fits"], note
    written = next(n for n in library.template(name).build() if n.type == NOTE).inputs["text"].replace("`", "")
    assert note["text"].split() == written.split()  # shown as written (no character taken for Markdown)
    # The frontend's API export of the loaded graph is exactly our API file: widget order and links agree.
    exported = editor.page.evaluate("async () => (await window.app.graphToPrompt()).output")
    expected = workflows.api(name)
    info = editor.server.get_json("/object_info")
    declared = {k: {**v["input"].get("required", {}), **v["input"].get("optional", {})} for k, v in info.items()}
    # (Preview as Text carries a display-only widget of the frontend's own, which the server ignores.)
    assert {k: (v["class_type"], {i: x for i, x in v["inputs"].items() if i in declared[v["class_type"]]})
            for k, v in exported.items()} == {k: (v["class_type"], v["inputs"]) for k, v in expected.items()}
    # Widget values as the editor holds them equal the file's: a widget the frontend adds on its own (such as
    # "control after generate" for an input named seed) would shift the saved values and show here.
    held = editor.page.evaluate("() => Object.fromEntries(window.app.graph.serialize().nodes.map(n => [n.id, n.widgets_values]))")
    for node in wf["nodes"]:
        if node["type"] not in (NOTE, "PreviewAny"):
            assert (held[str(node["id"])] or []) == node.get("widgets_values", []), (node["type"], node["id"])
    view = editor.page.evaluate(VIEW_JS)
    saved = {str(n["id"]): n["size"] for n in wf["nodes"]}
    grown = [(n["type"], n["size"], saved[str(n["id"])]) for n in view["nodes"]
             if n["size"][0] > saved[str(n["id"])][0] + 0.5 or n["size"][1] > saved[str(n["id"])][1] + 0.5]
    assert not grown  # the frontend needed no more room than the layout gave: nothing overlaps
    assert view["scale"] >= 0.6  # the editor draws text from ~0.57 on
    top = min(n["titleTop"] for n in view["nodes"])
    assert top >= (80 if editor.newest else 110), top  # below the tab bar, the menu and the Run bar
    assert min(n["x"] for n in view["nodes"]) >= 55  # right of the side bar
    if editor.newest:  # fitted to the window: the whole flow is visible
        assert max(n["x"] + n["size"][0] * view["scale"] for n in view["nodes"]) <= VIEW["width"]
    editor.page.wait_for_timeout(1000)
    editor.close_dialogs()  # the graph as it opened (the missing-models screenshots show the dialogs)
    editor.shot(artifacts_dir, name)


EXPECTED_MISSING = {
    # newer frontends: every model widget whose value is not among its choices, named by that value
    "newest": ["sd_xl_base_1.0.safetensors", "clip_vit_large_patch14.safetensors",
               "sdxl_hyper_id_lora_v1_fidelity/hyper_lora_modules.safetensors", "antelopev2/glintr100.onnx"],
    # 1.32.9: the workflow's download entries that ComfyUI's model lists lack (its lists leave out .onnx files,
    # so it cannot tell whether the face pack is there; Run names it, see below)
    "1.32.9": ["checkpoints / sd_xl_base_1.0.safetensors", "clip_vision / clip_vit_large_patch14.safetensors"],
}
NOT_OFFERED = "hyper_lora / "
"""1.32.9 offers a download for every entry it lists; the templates carry none for the published checkpoint (four
files, a button would leave a broken install): Run names it and points to the Fetch Models node (see below)."""


def missing_models_listed(editor) -> str:
    """The text in which the frontend lists missing models after a workflow opened."""
    page = editor.page
    if editor.newest:
        details = page.get_by_text("View details")
        if details.count():
            details.first.click()
            page.wait_for_timeout(1000)
        return editor.text()
    return "\n".join(page.evaluate("() => Array.from(document.querySelectorAll('.comfy-missing-models [role=option]'))"
                                   ".map(e => e.innerText)"))


@pytest.mark.parametrize("name", SDXL)
def test_missing_weights_are_named_before_run(editor, name, artifacts_dir):
    editor.open_template(name)
    editor.page.wait_for_timeout(1500)
    listed = missing_models_listed(editor)
    expected = EXPECTED_MISSING["newest" if editor.newest else "1.32.9"]
    prompt = workflows.api(name)
    kinds = {n["class_type"] for n in prompt.values()}
    if "HyperLoRACheckpointLoader" not in kinds and "HyperLoRAOneClick" not in kinds:
        expected = [e for e in expected if "hyper_lora" not in e and "antelopev2" not in e]
    if "CheckpointLoaderSimple" not in kinds:
        expected = [e for e in expected if "sd_xl_base" not in e]
    if "ControlNetLoader" in kinds:
        expected = [*expected, "OpenPoseXL2.safetensors" if editor.newest else "controlnet / OpenPoseXL2.safetensors"]
    assert expected and all(e in listed for e in expected), (expected, listed)
    if not editor.newest:
        assert NOT_OFFERED not in listed, listed
    editor.shot(artifacts_dir, f"missing_{name}")
    editor.page.keyboard.press("Escape")


def test_run_is_refused_with_our_message_before_anything_runs(editor, artifacts_dir):
    editor.open_template("hyperlora_t2i_one_photo")
    page = editor.page
    editor.close_dialogs()
    with page.expect_response(lambda r: r.url.endswith("/prompt") and r.request.method == "POST") as answer:
        page.get_by_role("button", name="Run").first.click()
    response = answer.value
    assert response.status == 400  # every output needs a missing model: the server refuses the whole prompt
    errors = response.json()["node_errors"]
    details = {e["extra_info"].get("input_name"): e["details"] for node in errors.values() for e in node["errors"]
               if e["type"] == "custom_validation_failed"}
    # the first sentence names what is missing and the one action that fixes it (1.58.1 shows little more)
    first = details["checkpoint"].split(" - ", 1)[1].split(". ")[0]
    assert "is missing (4 of 4 files): run the node HyperLoRA Fetch Models (accept the licence) or `" in first, first
    assert "/hyperlora_core/models/__main__.py fetch hyperlora-fidelity --comfyui " in first, first
    face = details["pack"].split(" - ", 1)[1].split(". ")[0]
    assert "must be placed by hand: download antelopev2.zip and unzip it into " in face, face
    page.wait_for_timeout(1500)
    if editor.newest:  # the issues panel lists the refused inputs; their info button unfolds our message
        details_button = page.get_by_text("View details")
        if details_button.count():
            details_button.first.click()
            page.wait_for_timeout(1000)
        page.get_by_role("button", name="Info for HyperLoRA checkpoint - checkpoint").first.click()
        page.wait_for_timeout(1000)
    # (1.32.9: an error dialog with the server's report)
    editor.shot(artifacts_dir, "run_refused")
    shown = editor.text()
    assert first in shown, shown[-3000:]  # our first sentence, whole, in the editor
    queue = editor.server.get_json("/queue")
    assert queue["queue_running"] == [] and queue["queue_pending"] == [] and editor.server.get_json("/history") == {}
    editor.close_dialogs()


def test_the_template_browser_shows_titles_and_pictures(editor, artifacts_dir):
    from urllib.parse import unquote

    page = editor.page
    editor.close_dialogs()
    fetched: dict[str, int] = {}
    page.on("response", lambda r: fetched.__setitem__(unquote(r.url).rsplit("/", 1)[-1], r.status)
            if "/workflow_templates/" in r.url and r.url.endswith(".jpg") else None)
    page.evaluate("async () => { await window.app.extensionManager.command.execute('Comfy.BrowseTemplates'); }")
    page.wait_for_timeout(2500)
    page.get_by_text("HyperLoRA", exact=True).first.click()  # our section (its name translated by locales/)
    page.wait_for_timeout(2500)
    editor.shot(artifacts_dir, "template_browser")
    text = editor.text()
    for step in range(8):  # scroll the card grid down: the cards further down load their pictures when shown
        page.evaluate("(k) => document.querySelectorAll('[role=dialog] *, .p-dialog *').forEach(e => { "
                      "if (e.scrollHeight > e.clientHeight + 10 && getComputedStyle(e).overflowY !== 'visible') "
                      "e.scrollTop = k * e.clientHeight / 2; })", step)
        page.wait_for_timeout(400)
        text += editor.text()
    page.wait_for_timeout(1500)
    assert all(t.title in text for t in library.TEMPLATES)  # each card shows its title
    assert fetched == {f"{t.title}.jpg": 200 for t in library.TEMPLATES}, fetched
    shown = page.evaluate("() => Array.from(document.images).filter(i => i.naturalWidth === 512).length")
    assert shown >= 4  # the cards on screen show them (the grid keeps only the visible cards' pictures)
    editor.close_dialogs()


def test_the_toy_world_runs_from_the_run_button(editor, artifacts_dir):
    editor.open_template("hyperlora_toy_world")
    page = editor.page
    editor.close_dialogs()
    page.get_by_role("button", name="Run").first.click()
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline:
        history = editor.server.get_json("/history")
        if history and all(h.get("status", {}).get("completed") is not None for h in history.values()):
            break
        time.sleep(2)
    (entry,) = history.values()
    assert entry["status"]["status_str"] == "success", entry["status"]
    shown = []
    for _ in range(60):  # the pictures arrive over the websocket
        shown = page.evaluate("() => [...window.app.graph._nodes.flatMap(n => n.imgs || []), ...document.images]"
                              ".filter(i => i.src.includes('/view?') && i.src.includes('toy_with')).map(i => i.naturalWidth)")
        if len(shown) >= 2 and all(w > 0 for w in shown):
            break
        page.wait_for_timeout(1000)
    assert shown and set(shown) == {256}, shown  # 32 px pictures, shown 8x (nearest neighbour)
    # the pictures with the LoRA are not those without it (same seeds): the LoRA reached the sampler
    saved = {tag: [saved_image(editor.server, i) for out in entry["outputs"].values() for i in out.get("images", [])
                   if f"toy_{tag}_" in i["filename"]] for tag in ("with", "without")}
    assert len(saved["with"]) == len(saved["without"]) >= 1, {k: len(v) for k, v in saved.items()}
    for with_lora, without in zip(saved["with"], saved["without"]):
        assert with_lora.shape == without.shape
        assert np.abs(with_lora.astype(int) - without.astype(int)).mean() > 2, "the LoRA changed nothing"
    page.wait_for_timeout(1000)
    editor.shot(artifacts_dir, "toy_world_result")


def saved_image(server, image: dict) -> np.ndarray:
    """A picture the prompt saved, fetched as the editor fetches it (GET /view)."""
    query = urllib.parse.urlencode({k: image.get(k, "") for k in ("filename", "subfolder", "type")})
    with urllib.request.urlopen(f"{server.url}/view?{query}", timeout=30) as response:
        return np.asarray(Image.open(io.BytesIO(response.read())).convert("RGB"))


def test_published_pack_workflow_loads_on_the_compatibility_nodes(editor, artifacts_dir):
    editor.page.evaluate("async (wf) => { await window.app.loadGraphData(wf); }", published_ui.workflow())
    editor.page.wait_for_timeout(500)
    assert editor.state()["missing"] == []
    exported = editor.page.evaluate("async () => (await window.app.graphToPrompt()).output")
    for node_id, expected in published_ui.EXPECTED_INPUTS.items():
        widgets = {k: v for k, v in exported[node_id]["inputs"].items() if not isinstance(v, list)}
        assert widgets == expected, node_id
    assert sorted({v["class_type"] for v in exported.values() if v["class_type"].startswith("HyperLoRA")}) == \
        published_ui.PUBLISHED_NODE_TYPES
    editor.shot(artifacts_dir, "published_pack_workflow")
    editor.page.keyboard.press("Escape")


def open_help(editor, node_id: str, title: str) -> str:
    """A node's help panel, opened as a user does; returns its text. 1.58.1: select the node, open the properties
    panel (the toolbar's right-hand button), its Info tab. 1.32.9: the node library's "?" button of the node."""
    page = editor.page
    editor.close_dialogs()
    if editor.newest:
        page.evaluate("""(type) => { const g = window.app.graph; g.clear(); const n = window.LiteGraph.createNode(type);
                         n.pos = [200, 200]; g.add(n); window.app.canvas.selectNode(n); window.app.canvas.setDirty(true, true); }""",
                      node_id)
        page.wait_for_timeout(500)
        page.evaluate("async () => { await window.app.extensionManager.setting.set('Comfy.RightSidePanel.IsOpen', true); }")
        page.locator("#tab-info").click()  # (labels are translated; ids are not)
    else:
        page.locator(".node-library-tab-button").first.click()
        page.locator(".node-lib-search-box input").first.fill(title)
        leaf = page.locator(".p-tree-node-leaf").first
        leaf.hover()
        leaf.locator("button.help-button").click()
    page.wait_for_selector(".node-help-content", timeout=30_000)
    page.wait_for_timeout(1500)  # the page is fetched after the panel opens
    return page.locator(".node-help-content").first.inner_text()


def test_a_node_help_page_opens(editor, artifacts_dir):
    """The help panel shows our page (web/docs/), not the description it falls back to without one."""
    text = open_help(editor, "HyperLoRAApply", "HyperLoRA Apply")
    editor.shot(artifacts_dir, "node_help")
    assert "Where to start" in text and "from HyperLoRA Generate ID LoRA" in text  # only the page says these
    assert "How strongly the LoRA acts" in text
    editor.close_dialogs()
    if not editor.newest:
        editor.page.locator(".node-library-tab-button").first.click()  # close the node library again


SEARCH_JS = """() => Array.from(document.querySelectorAll(
    '.comfy-vue-node-search-box li, [role=listbox] [role=option], .p-autocomplete-option'))
    .map(e => e.innerText.replace(/\\s+/g, ' ').trim()).filter(t => t)"""


def test_node_search_lists_our_nodes_before_the_compatibility_ones(editor, artifacts_dir):
    """The published pack's names are deprecated: both frontends leave them out of node search (they still load in
    old workflows, see the test above), so "HyperLoRA ..." finds our own nodes first."""
    page = editor.page
    editor.close_dialogs()
    page.evaluate("() => window.app.graph.clear()")
    info = editor.server.get_json("/object_info")
    ours = {v["display_name"] for v in info.values() if v.get("category") == "HyperLoRA"}
    published = {v["display_name"] for v in info.values() if v.get("category") == "HyperLoRA/published pack"}
    assert published and all(v["deprecated"] for v in info.values() if v.get("category") == "HyperLoRA/published pack")
    for query in ("HyperLoRA Loader", "HyperLoRA"):
        page.mouse.dblclick(800, 500)  # an empty canvas: the node search box
        page.wait_for_timeout(800)
        page.keyboard.type(query)
        page.wait_for_timeout(1500)
        listed = page.evaluate(SEARCH_JS)
        editor.shot(artifacts_dir, "search_" + query.replace(" ", "_"))
        page.keyboard.press("Escape")
        page.wait_for_timeout(300)
        names = [next((n for n in sorted(ours | published, key=len, reverse=True) if item.startswith(n)), item)
                 for item in listed]
        assert names and names[0] in ours, listed
        assert not set(names) & published, listed
        if query == "HyperLoRA Loader":
            assert names[0] == "HyperLoRA Loader", listed


def test_the_nodes_speak_chinese(editor, artifacts_dir):
    """Last: it switches the editor's language and reloads the page."""
    fonts = subprocess.run(["fc-list", ":lang=zh"], capture_output=True, text=True).stdout
    assert fonts.strip(), "no Chinese font: Chromium would draw empty boxes; run scripts/setup_env.sh (fonts-wqy-microhei)"
    page = editor.page
    page.evaluate("async () => { await window.app.extensionManager.setting.set('Comfy.Locale', 'zh'); }")
    page.reload()
    page.wait_for_function("() => window.app && window.app.graph && window.LiteGraph "
                           "&& window.LiteGraph.registered_node_types['HyperLoRAEncodeID']", timeout=180_000)
    page.wait_for_timeout(1500)
    zh = json.loads((ROOT / "locales" / "zh" / "nodeDefs.json").read_text(encoding="utf-8"))
    titles = page.evaluate("(ids) => ids.map(t => { const n = window.LiteGraph.createNode(t); return n ? n.title : null; })",
                           ["HyperLoRAApply", "HyperLoRAEncodeID", "HyperLoRACheckpointLoader"])
    if editor.newest:
        assert titles == [zh[t]["display_name"] for t in ("HyperLoRAApply", "HyperLoRAEncodeID", "HyperLoRACheckpointLoader")]
    else:  # 1.32.9 loads a language's own texts after the custom nodes' and replaces them (setLocaleMessage):
        # its core nodes are in Chinese, custom nodes' names stay English although /i18n serves them.
        assert titles == ["HyperLoRA Apply", "HyperLoRA Encode ID", "HyperLoRA Loader"]
        assert editor.server.get_json("/i18n")["zh"]["nodeDefs"]["HyperLoRAApply"]["display_name"] == "HyperLoRA 应用"
    wf = workflows.ui("hyperlora_t2i_one_photo")
    for node in wf["nodes"]:
        node.pop("title", None)  # show the translated names
    page.evaluate("async (wf) => { await window.app.loadGraphData(wf); }", wf)
    page.wait_for_timeout(1500)
    editor.close_dialogs()
    editor.shot(artifacts_dir, "chinese")
    if editor.newest:  # the help panel asks for web/docs/<node>/zh.md in Chinese
        text = open_help(editor, "HyperLoRAApply", zh["HyperLoRAApply"]["display_name"])
        editor.shot(artifacts_dir, "node_help_chinese")
        assert "从哪里开始" in text and zh["HyperLoRAApply"]["inputs"]["strength"]["tooltip"] in text
