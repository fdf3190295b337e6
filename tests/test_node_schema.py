"""The node schema is a contract with saved workflows: the committed snapshot (`nodes/schema.json`) equals
what the declarations give, and every change that breaks a saved workflow is recorded there and named in
README's Changelog."""

from __future__ import annotations

import copy

import pytest
from fixtures.pack import pack_submodule

from scripts import node_schema


@pytest.fixture(scope="module")
def current():
    return node_schema.schema(pack_submodule("nodes.registry").node_defs(include_compat=True))


def test_the_snapshot_is_current(current):
    shipped = node_schema.load()
    breaks = [b["change"] for b in node_schema.breaking(shipped["nodes"], current)]
    added = sorted(set(current) - set(shipped["nodes"]))
    assert shipped["nodes"] == current, (
        f"the node schema changed; breaking: {breaks or 'nothing'}; new nodes: {added or 'none'}. Run "
        f"`{node_schema.COMMAND}` and commit nodes/schema.json"
        + ("; then name each breaking change in README's Changelog" if breaks else ""))
    assert list(shipped["nodes"]) == list(current)  # the registry's order


def test_every_breaking_change_is_in_the_changelog():
    shipped = node_schema.load()
    missing = node_schema.unlogged(shipped["breaking"], node_schema.README.read_text(encoding="utf-8"))
    assert not missing, f"README's Changelog must name (node id and input/output): {missing}"


def _apply(schema: dict) -> dict:
    return schema["HyperLoRAApply"]


SAMPLE = {  # a fixed schema (the live one changes with the pack)
    "HyperLoRAApply": {"inputs": [{"name": "model", "type": "MODEL", "required": True},
                                  {"name": "lora", "type": "LORA", "required": True},
                                  {"name": "strength", "type": "FLOAT", "required": True},
                                  {"name": "base_lora", "type": "LORA", "required": False},
                                  {"name": "base_strength", "type": "FLOAT", "required": False}],
                       "outputs": [{"name": "model", "type": "MODEL"}]},
    "HyperLoRACheckpointLoader": {"inputs": [{"name": "checkpoint", "type": "COMBO", "required": True},
                                             {"name": "dtype", "type": "COMBO", "required": True}],
                                  "outputs": [{"name": "hyper_lora", "type": "HYPERLORA"}]},
}


def test_what_breaks_a_saved_workflow_is_found():
    def changed(edit) -> list[str]:
        new = copy.deepcopy(SAMPLE)
        edit(new)
        return [b["change"] for b in node_schema.breaking(SAMPLE, new)]

    assert changed(lambda s: None) == []
    assert changed(lambda s: s.pop("HyperLoRAApply")) == ["HyperLoRAApply: node removed or renamed"]
    assert changed(lambda s: _apply(s)["inputs"][2].update(name="strength_model")) == [
        "HyperLoRAApply: input 'strength' removed or renamed",
        "HyperLoRAApply: new required input 'strength_model' (saved prompts lack it)"]
    assert changed(lambda s: _apply(s)["inputs"][2].update(type="INT")) == [
        "HyperLoRAApply: input 'strength' type FLOAT -> INT"]
    assert changed(lambda s: _apply(s)["inputs"][3].update(required=True)) == [
        "HyperLoRAApply: input 'base_lora' became required"]
    assert changed(lambda s: _apply(s)["inputs"].insert(0, {"name": "x", "type": "INT", "required": False})) == [
        "HyperLoRAApply: new widget 'x' before existing widgets (saved widget values shift)"]
    assert changed(lambda s: _apply(s)["outputs"][0].update(type="LATENT")) == [
        "HyperLoRAApply: output 0 'model' (MODEL) -> 'model' (LATENT)"]
    loader = "HyperLoRACheckpointLoader"
    assert changed(lambda s: s[loader]["inputs"].reverse()) == [
        f"{loader}: widget order ['checkpoint', 'dtype'] -> ['dtype', 'checkpoint']"]
    # additions: a node, an optional input after the widgets, an output at the end
    assert changed(lambda s: s.update(New={"inputs": [], "outputs": []})) == []
    assert changed(lambda s: _apply(s)["inputs"].append({"name": "y", "type": "FLOAT", "required": False})) == []
    assert changed(lambda s: _apply(s)["outputs"].append({"name": "extra", "type": "LORA"})) == []


def test_a_changelog_entry_must_name_the_change():
    breaks = [{"node": "HyperLoRAApply", "name": "strength", "change": "HyperLoRAApply: input 'strength' removed"}]
    readme = "# X\n\n## Changelog\n\n- Something else.\n- `HyperLoRAApply`: `strength` is now\n  `strength_model`.\n\n## License\n"
    assert node_schema.unlogged(breaks, readme) == []
    assert node_schema.unlogged(breaks, readme.replace("`strength` is now\n", "now\n")) == [breaks[0]["change"]]
    assert node_schema.unlogged(breaks, "# X\n\nHyperLoRAApply strength\n") == [breaks[0]["change"]]
