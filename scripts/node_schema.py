"""The node schema as a contract with saved workflows: `nodes/schema.json` is a snapshot of every node's
id, inputs (name, type, required or optional, in widget order) and outputs (name, type, in order).

    .venv/bin/python -m scripts.node_schema          # rewrite the snapshot, recording what breaks
    .venv/bin/python -m scripts.node_schema --check  # exit 1 if it is out of date

A saved workflow names node ids and input names, keeps widget values by position (editor format) and
links by output slot; so removing or renaming a node, an input or an output, changing a type, making
an input required, adding a required input or a widget before an existing one, or reordering outputs
breaks it. Each such change is recorded in the snapshot's `breaking` list when it is rewritten, and
README's "Changelog" must name it (the node id and the input or output): `tests/test_node_schema.py`.
Additions (a node, an optional input after the existing widgets, an output at the end) only need the
snapshot rewritten.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SNAPSHOT = ROOT / "nodes" / "schema.json"
README = ROOT / "README.md"
COMMAND = ".venv/bin/python -m scripts.node_schema"
WIDGETS = ("INT", "FLOAT", "BOOLEAN", "STRING", "COMBO")
"""Input types the editor shows as widgets (COMBO: a choice list); their values are saved by position."""


def schema(defs) -> dict:
    """{node id: {"inputs": [...], "outputs": [...]}} of the `NodeDef` declarations."""
    return {d.node_id: {
        "inputs": [{"name": i.name, "type": i.type, "required": not i.optional} for i in d.inputs],
        "outputs": [{"name": o.name, "type": o.type} for o in d.outputs],
    } for d in defs}


def _change(node: str, name: str | None, text: str) -> dict:
    return {"node": node, "name": name, "change": text}


def breaking(old: dict, new: dict) -> list[dict]:
    """The changes from schema `old` to `new` that break workflows saved against `old`, each
    {"node", "name" (the input or output, or None), "change"}."""
    found = []
    for node, was in old.items():
        now = new.get(node)
        if now is None:
            found.append(_change(node, None, f"{node}: node removed or renamed"))
            continue
        before = {i["name"]: i for i in was["inputs"]}
        after = {i["name"]: i for i in now["inputs"]}
        for name, i in before.items():
            j = after.get(name)
            if j is None:
                found.append(_change(node, name, f"{node}: input '{name}' removed or renamed"))
            elif j["type"] != i["type"]:
                found.append(_change(node, name, f"{node}: input '{name}' type {i['type']} -> {j['type']}"))
            elif j["required"] and not i["required"]:
                found.append(_change(node, name, f"{node}: input '{name}' became required"))
        for name, j in after.items():
            if name not in before and j["required"]:
                found.append(_change(node, name, f"{node}: new required input '{name}' (saved prompts lack it)"))
        old_widgets = [i["name"] for i in was["inputs"] if i["type"] in WIDGETS and i["name"] in after]
        new_widgets = [i["name"] for i in now["inputs"] if i["type"] in WIDGETS]
        kept = [n for n in new_widgets if n in old_widgets]
        if kept != old_widgets:
            found.append(_change(node, kept[0] if kept else None, f"{node}: widget order {old_widgets} -> {kept}"))
        elif old_widgets:
            last = new_widgets.index(old_widgets[-1])
            for name in new_widgets[:last]:
                if name not in before and not after[name]["required"]:  # a required one is reported above
                    found.append(_change(node, name, f"{node}: new widget '{name}' before existing widgets "
                                                     "(saved widget values shift)"))
        for k, o in enumerate(was["outputs"]):
            p = now["outputs"][k] if k < len(now["outputs"]) else None
            if p is None:
                found.append(_change(node, o["name"], f"{node}: output {k} '{o['name']}' removed"))
            elif p != o:
                found.append(_change(node, o["name"], f"{node}: output {k} '{o['name']}' ({o['type']}) -> "
                                                      f"'{p['name']}' ({p['type']})"))
    return found


def changelog_entries(readme: str) -> list[str]:
    """The bullet entries of README's "## Changelog" section (continuation lines joined)."""
    match = re.search(r"^## Changelog\s*$(.*?)(?=^## |\Z)", readme, re.M | re.S)
    if not match:
        return []
    entries: list[str] = []
    for line in match.group(1).splitlines():
        if re.match(r"\s*[-*] ", line):
            entries.append(line.strip())
        elif line.strip() and entries:
            entries[-1] += " " + line.strip()
    return entries


def unlogged(breaks: list[dict], readme: str) -> list[str]:
    """Recorded breaking changes no changelog entry names (an entry naming the node id and the input or
    output)."""
    entries = changelog_entries(readme)

    def names(entry: str, word: str | None) -> bool:
        return word is None or re.search(rf"(?<!\w){re.escape(word)}(?!\w)", entry) is not None

    return [b["change"] for b in breaks if not any(names(e, b["node"]) and names(e, b["name"]) for e in entries)]


def load() -> dict:
    return json.loads(SNAPSHOT.read_text(encoding="utf-8")) if SNAPSHOT.is_file() else {"nodes": {}, "breaking": []}


def snapshot(nodes: dict, breaks: list[dict]) -> dict:
    return {"about": f"Written by `{COMMAND}`; never by hand. The contract with saved workflows "
                     "(see scripts/node_schema.py).", "nodes": nodes, "breaking": breaks}


def dump(data: dict) -> str:
    """Indented JSON with each input, output and recorded change on one line (readable diffs)."""
    text = json.dumps(data, indent=1, ensure_ascii=False)
    return re.sub(r"\{\n\s+(\"(?:name|node)\"[^{}\[\]]*?)\n\s+\}",
                  lambda m: "{" + re.sub(r",\n\s+", ", ", m.group(1)) + "}", text) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    from scripts.comfy_env import boot_comfy, pack_nodes

    boot_comfy(cpu=True)
    current = schema(pack_nodes().registry.node_defs(include_compat=True))
    old = load()
    new_breaks = [b for b in breaking(old["nodes"], current) if b not in old["breaking"]]
    for b in new_breaks:
        print(f"breaking: {b['change']}")
    if args.check:
        if old["nodes"] != current:
            print(f"out of date: {SNAPSHOT.relative_to(ROOT)} (run `{COMMAND}`)")
            return 1
        return 0
    breaks = old["breaking"] + new_breaks
    SNAPSHOT.write_text(dump(snapshot(current, breaks)), encoding="utf-8")
    print(f"wrote {SNAPSHOT.relative_to(ROOT)} ({len(current)} nodes)")
    missing = unlogged(breaks, README.read_text(encoding="utf-8"))
    for text in missing:
        print(f"README's Changelog must name: {text}")
    return 1 if missing else 0


if __name__ == "__main__":
    raise SystemExit(main())
