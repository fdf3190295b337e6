"""Writes the example workflows in this folder from `library.py`, in both of ComfyUI's formats.

    .venv/bin/python -m workflows.build               # rewrite workflows/*.json
    .venv/bin/python -m workflows.build --check       # exit 1 if a file is out of date
    .venv/bin/python -m workflows.build --thumbnails  # also redraw the template pictures (runs the toy world)
    .venv/bin/python -m workflows.build --photos      # also redraw the sample photos in workflows/photos/

`<title>.json` is the graph-editor format ComfyUI serves as a template (its file name is the title the
template browser shows; `<title>.jpg` its picture); `api/<slug>.json` is the API format for
`POST /prompt`. A test runs the API files on the real server and the browser test loads the editor
files into the real frontends and compares their API export with them.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .graph import NOTE, N, api_format
from .library import TEMPLATES
from .ui import NodeInfo, node_info, ui_format

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def workflow_models(nodes: list[N]) -> list[dict]:
    """The workflow-level download entries (older frontends list these): every node's, once each."""
    return list({(m["directory"], m["name"]): m for n in nodes for m in n.models}.values())


def host_node_infos(types: set[str]) -> dict[str, NodeInfo]:
    """Node definitions as the host reports them: ComfyUI's core nodes and this pack, loaded in-process
    through ComfyUI's own custom-node loader."""
    from hyperlora_core.comfy_bridge.host_nodes import comfy_nodes, pack_nodes

    pack_nodes()
    host = comfy_nodes()
    missing = sorted(t for t in types if t not in host.NODE_CLASS_MAPPINGS and t != NOTE)
    if missing:
        raise KeyError(f"node types not registered on the host: {missing}")
    return {t: node_info(host.NODE_CLASS_MAPPINGS[t], host.NODE_DISPLAY_NAME_MAPPINGS.get(t, t))
            for t in types if t != NOTE}


def build_all(infos: dict[str, NodeInfo] | None = None) -> dict[Path, str]:
    graphs = {t: t.build() for t in TEMPLATES}
    if infos is None:
        infos = host_node_infos({n.type for g in graphs.values() for n in g})
    files = {}
    for t, nodes in graphs.items():
        ui = ui_format(t.slug, nodes, infos, workflow_models(nodes))
        files[HERE / f"{t.title}.json"] = json.dumps(ui, indent=1) + "\n"
        files[HERE / "api" / f"{t.slug}.json"] = json.dumps(api_format(nodes), indent=1) + "\n"
    return files


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="only check that the files are up to date")
    parser.add_argument("--thumbnails", action="store_true", help="also redraw the template pictures")
    parser.add_argument("--photos", action="store_true", help="also redraw the templates' sample photos")
    args = parser.parse_args()
    from hyperlora_core.comfy_bridge.boot import boot_comfy

    boot_comfy(cpu=True)
    files = build_all()
    stale = [p for p, text in files.items() if not p.is_file() or p.read_text() != text]
    extra = [p for p in [*HERE.glob("*.json"), *(HERE / "api").glob("*.json")] if p not in files]
    if args.check:
        for p in stale + extra:
            print(f"out of date: {p.relative_to(ROOT)}")
        return 1 if stale or extra else 0
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    for path in extra:
        path.unlink()
    print(f"wrote {len(files)} files ({len(stale)} changed, {len(extra)} removed) in {HERE.relative_to(ROOT)}/")
    if args.photos:
        from .sample_photos import draw_all as draw_photos

        for path in draw_photos():
            print(f"drew {path.relative_to(ROOT)}")
    if args.thumbnails:
        from .thumbnails import draw_all

        for path in draw_all():
            print(f"drew {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
