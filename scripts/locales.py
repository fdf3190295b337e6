"""ComfyUI's custom-node translations (`locales/<lang>/`): English written from the node declarations,
other languages by hand, checked for completeness.

    .venv/bin/python -m scripts.locales          # rewrite locales/en/nodeDefs.json, report what zh lacks
    .venv/bin/python -m scripts.locales --check  # exit 1 if en is out of date or zh misses a text

ComfyUI serves `locales/<lang>/nodeDefs.json` and `main.json` at /i18n; the frontends show a node's
`display_name`, `description`, each input's `name` and `tooltip` and each output's `name` and
`tooltip` in the user's language (Settings -> Comfy -> Locale), falling back to English.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LOCALES = ROOT / "locales"
LANGUAGES = ("zh",)
"""Languages besides English: Simplified Chinese, the published pack's main audience."""


def key(name: str) -> str:
    """The frontends' i18n key for a name ('.' is vue-i18n's path separator)."""
    return name.replace(".", "_")


def english(defs) -> dict:
    """nodeDefs.json in English, from the `NodeDef` declarations (the one place English texts live)."""
    out = {}
    for d in defs:
        entry = {"display_name": d.display_name, "description": d.description, "inputs": {}, "outputs": {}}
        for i in d.inputs:
            entry["inputs"][key(i.name)] = {"name": i.name, **({"tooltip": i.tooltip} if i.tooltip else {})}
        for k, o in enumerate(d.outputs):
            entry["outputs"][str(k)] = {"name": o.name, **({"tooltip": o.tooltip} if o.tooltip else {})}
        out[d.node_id] = entry
    return out


def missing(reference: dict, translation: dict, path: str = "") -> list[str]:
    """Every text of `reference` that `translation` lacks (or leaves empty), as dotted paths."""
    gaps = []
    for k, v in reference.items():
        here = f"{path}.{k}" if path else k
        if isinstance(v, dict):
            gaps += missing(v, translation.get(k) or {}, here)
        elif not (isinstance(translation.get(k), str) and translation[k].strip()):
            gaps.append(here)
    return gaps


def load(lang: str, name: str = "nodeDefs.json") -> dict:
    path = LOCALES / lang / name
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def dump(data: dict) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    from scripts.comfy_env import boot_comfy, pack_nodes

    boot_comfy(cpu=True)
    en = english(pack_nodes().registry.node_defs(include_compat=True))
    path = LOCALES / "en" / "nodeDefs.json"
    stale = not path.is_file() or path.read_text(encoding="utf-8") != dump(en)
    gaps = {lang: missing(en, load(lang)) for lang in LANGUAGES}
    for lang, paths in gaps.items():
        for p in paths:
            print(f"{lang}: missing {p}")
    if args.check:
        if stale:
            print(f"out of date: {path.relative_to(ROOT)}")
        return 1 if stale or any(gaps.values()) else 0
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(dump(en), encoding="utf-8")
    print(f"wrote {path.relative_to(ROOT)} ({len(en)} nodes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
