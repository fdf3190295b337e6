"""The graph-editor (UI) format of a workflow: nodes laid out, sized, linked, with notes and model entries.

The UI form is derived from the node definitions the host reports (widget order, sockets, output
types), so the UI and API files always describe the same graph. Sizes are at least what the
frontends compute for each node (they never grow it, so the layout holds), and the layout is
checked: no node, title or pack badge overlaps another, and the whole graph fits a 1600 x 1000
window at a zoom where the editor still draws text (see `fit_scale`).
"""

from __future__ import annotations

import math
import re
import uuid
from dataclasses import dataclass

from .graph import NOTE, L, N

WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}
TOP = 60
"""Room above the first row: the title bar (30) and the pack badge newer frontends draw above it."""
TITLE = 30
BADGE = 24
COLUMN_GAP = 40
GAP = TITLE + BADGE + 16
"""From one node's bottom to the next one's body in a column."""
SLOT, WIDGET, PADDING = 20, 24, 14
"""The frontends' node geometry: height = 20 x max(sockets, outputs) + 24 x widgets + 14."""
WIDTH = 290
WIDTHS = {
    "HyperLoRACheckpointLoader": 540,  # its value names the checkpoint's main file: ~60 characters
    "HyperLoRAOneClick": 540,
    "HyperLoRACLIPVisionLoader": 540,
    "HyperLoRAFaceAnalysisLoader": 540,
    "CheckpointLoaderSimple": 340,
    "ControlNetLoader": 340,
    "LoraLoaderModelOnly": 340,
    "HyperLoRAToyWorldLoader": 340,
    "HyperLoRAToyPhotos": 340,
    "VAEDecode": 220,
    "ImageBatch": 220,
}
"""Node widths where a label and a typical value need more than the default (so nothing is cut off)."""
IMAGE_NODES = {"LoadImage": 212, "PreviewImage": 220, "SaveImage": 300}
"""Extra height for the picture these nodes show (both frontends give a loaded photo 212 px, whatever the width)."""
VIEW = (1600, 1000)
FIT_ZOOM = 0.75
"""Newer frontends open a template fitted to the window with this margin (`fitToBounds(zoom=0.75)`)."""
TEXT_SCALE = 0.64
"""Below ~0.57 zoom the editor stops drawing text (8 px minimum font / 14 px node text); templates stay above this."""
OLD_FRONTEND_ORIGIN = (80, 150)
"""Where older frontends (which restore the saved view) show the graph's top-left: right of the side bar,
below the tab bar and the floating Run bar."""


@dataclass(frozen=True)
class NodeInfo:
    inputs: list[tuple[str, str, dict]]  # name, type ("COMBO" for lists), options; required + optional
    outputs: list[tuple[str, str]]
    display_name: str


NOTE_INFO = NodeInfo([("text", "STRING", {"multiline": True})], [], "Markdown Note")
NOTE_FONT = 15
"""CSS px of a note's `##` line in both frontends (1.5 x the default 10 px note font): ~10 px on screen when opened."""
NOTE_CHAR = 9.4
NOTE_LINE = 18
NOTE_PARAGRAPH = 10
NOTE_CHROME = 32
"""Measured in the frontends (bold sans at NOTE_FONT): character width (a little above the average, so that
`note_height` errs on the large side and a note never scrolls), line height, the margin between two lines of the
note's text, and the node body's height around its text area (22 px) plus room to spare."""


def note_markdown(text: str) -> str:
    """A note's text as the Markdown the note shows: each line a `##` heading (drawn at NOTE_FONT); `code` stays code,
    and Markdown's own characters elsewhere are shown as written (`<colour>` would otherwise vanish as a tag)."""
    def plain(part: str) -> str:
        return re.sub(r"([\\*_<>\[\]#|])", r"\\\1", part)

    def line_md(line: str) -> str:
        parts = line.strip().split("`")
        return "## " + "`".join(part if k % 2 else plain(part) for k, part in enumerate(parts))

    return "\n\n".join(line_md(line) for line in text.split("\n") if line.strip())


def note_height(text: str, width: int) -> int:
    """Body height that shows the whole note (no scroll bar) at `width`: its lines word-wrapped at NOTE_CHAR."""
    room = (width - 24) / NOTE_CHAR
    lines = [line.split() for line in text.split("\n") if line.strip()]
    wrapped = 0
    for words in lines:
        wrapped, used = wrapped + 1, -1
        for word in words:
            if used + 1 + len(word) > room and used > 0:
                wrapped, used = wrapped + 1, -1
            used += 1 + len(word)
    return wrapped * NOTE_LINE + len(lines) * NOTE_PARAGRAPH + NOTE_CHROME


def node_info(cls, display_name: str) -> NodeInfo:
    spec = cls.INPUT_TYPES()
    inputs = []
    for group in ("required", "optional"):
        for name, entry in (spec.get(group) or {}).items():
            kind = "COMBO" if isinstance(entry[0], list) else entry[0]
            inputs.append((name, kind, entry[1] if len(entry) > 1 else {}))
    names = getattr(cls, "RETURN_NAMES", None) or cls.RETURN_TYPES
    return NodeInfo(inputs, list(zip(names, cls.RETURN_TYPES)), display_name)


def _is_widget(kind: str, opts: dict) -> bool:
    return kind in WIDGET_TYPES and not opts.get("forceInput")


def _widget_count(n: N, info: NodeInfo) -> int:
    count = 0
    for name, kind, opts in info.inputs:
        if _is_widget(kind, opts) and not isinstance(n.inputs.get(name), L):
            count += 1 + bool(opts.get("control_after_generate")) + bool(opts.get("image_upload"))
    return count


def size(n: N, info: NodeInfo) -> tuple[int, int]:
    """Width and body height in the editor (the title bar sits above the body)."""
    if n.type == NOTE:
        width = n.width or WIDTH
        return width, n.height or note_height(n.inputs["text"], width)
    sockets = sum(1 for name, k, o in info.inputs if not _is_widget(k, o) or isinstance(n.inputs.get(name), L))
    widgets = _widget_count(n, info)
    multiline = sum(1 for name, k, o in info.inputs if k == "STRING" and o.get("multiline")
                    and not isinstance(n.inputs.get(name), L))
    height = SLOT * max(sockets, len(info.outputs), 1) + WIDGET * widgets + PADDING + 60 * multiline
    height += IMAGE_NODES.get(n.type, 0)
    return n.width or WIDTHS.get(n.type, WIDTH), n.height or height


@dataclass(frozen=True)
class Box:
    x: float
    y: float
    w: float
    h: float

    def overlaps(self, other: Box) -> bool:
        return self.x < other.x + other.w and other.x < self.x + self.w and self.y < other.y + other.h and \
            other.y < self.y + self.h


def layout(nodes: list[N], infos: dict[str, NodeInfo]) -> dict[int, tuple[list[float], list[int]]]:
    """Node id -> ([x, y] of the body's top-left, [w, h]); columns as wide as their widest node, each
    column's nodes stacked in `row` order. Raises if anything overlaps (a node wider than its column)."""
    sizes = {n.id: size(n, infos[n.type]) for n in nodes}
    widths: dict[int, int] = {}
    for n in nodes:
        widths[n.col] = max(widths.get(n.col, 0), sizes[n.id][0])
    x, xs = 0, {}
    for col in sorted(widths):
        xs[col] = x
        x += widths[col] + COLUMN_GAP
    placed, bottom = {}, {}
    for n in sorted(nodes, key=lambda n: (n.col, n.row)):
        y = bottom[n.col] + GAP if n.col in bottom else TOP
        placed[n.id] = ([xs[n.col], y], [widths[n.col], sizes[n.id][1]])
        bottom[n.col] = y + sizes[n.id][1]
    boxes = {i: Box(p[0], p[1] - TITLE - BADGE, s[0], s[1] + TITLE + BADGE) for i, (p, s) in placed.items()}
    ids = sorted(boxes)
    for k, a in enumerate(ids):
        for b in ids[k + 1:]:
            if boxes[a].overlaps(boxes[b]):
                raise ValueError(f"nodes {a} and {b} overlap in the layout: {boxes[a]} / {boxes[b]}")
    return placed


def bounds(placed: dict) -> tuple[float, float, float, float]:
    xs = [p[0] for p, _ in placed.values()]
    ys = [p[1] - TITLE for p, _ in placed.values()]
    return min(xs), min(ys), max(p[0] + s[0] for p, s in placed.values()), max(p[1] + s[1] for p, s in placed.values())


def fit_scale(placed: dict) -> float:
    """The zoom newer frontends open the template at (fitted to a 1600 x 1000 window)."""
    x0, y0, x1, y1 = bounds(placed)
    return min(FIT_ZOOM * VIEW[0] / (x1 - x0), FIT_ZOOM * VIEW[1] / (y1 - y0))


def saved_view(placed: dict) -> dict:
    """The view older frontends restore: the fitted zoom, graph top-left at OLD_FRONTEND_ORIGIN."""
    x0, y0, _, _ = bounds(placed)
    scale = math.floor(min(fit_scale(placed), 1.0) * 100) / 100
    return {"scale": scale, "offset": [OLD_FRONTEND_ORIGIN[0] / scale - x0, OLD_FRONTEND_ORIGIN[1] / scale - y0]}


def ui_format(name: str, nodes: list[N], infos: dict[str, NodeInfo], models: list[dict]) -> dict:
    """The editor's JSON. `models`: the workflow-level download entries (older frontends list these)."""
    infos = {**infos, NOTE: NOTE_INFO}
    by_id = {n.id: n for n in nodes}
    placed = layout(nodes, infos)
    if fit_scale(placed) < TEXT_SCALE:
        raise ValueError(f"{name}: too large to read when fitted to {VIEW} (zoom {fit_scale(placed):.2f})")
    links, ui_nodes = [], []
    out_links: dict[tuple[int, int], list[int]] = {}
    order = _topological(nodes)
    for n in nodes:
        info = infos[n.type]
        ins, widgets = [], []
        for inp_name, kind, opts in info.inputs:
            value = n.inputs.get(inp_name)
            if _is_widget(kind, opts) and not isinstance(value, L):
                if inp_name not in n.inputs:
                    value = opts.get("default")
                if n.type == NOTE:
                    value = note_markdown(value)
                widgets.append(value)
                if opts.get("control_after_generate"):
                    widgets.append("fixed")
                if opts.get("image_upload"):
                    widgets.append("image")
                continue
            link_id = None
            if isinstance(value, L):
                link_id = len(links) + 1
                src_type = infos[by_id[value.node].type].outputs[value.slot][1]
                links.append([link_id, value.node, value.slot, n.id, len(ins), src_type])
                out_links.setdefault((value.node, value.slot), []).append(link_id)
            entry = {"name": inp_name, "type": kind, "link": link_id}
            if _is_widget(kind, opts):
                entry["widget"] = {"name": inp_name}
            ins.append(entry)
        props = {"Node name for S&R": n.type} if n.type != NOTE else {"text": ""}
        if n.models:
            props["models"] = n.models
        pos, dims = placed[n.id]
        node = {"id": n.id, "type": n.type, "pos": pos, "size": dims, "flags": {}, "order": order[n.id], "mode": 0,
                "inputs": ins, "outputs": [], "properties": props, "widgets_values": widgets}
        if n.title:
            node["title"] = n.title
        if n.type == NOTE:
            node.update(color="#432", bgcolor="#653")
        ui_nodes.append(node)
    for node in ui_nodes:
        info = infos[node["type"]]
        node["outputs"] = [{"name": o_name, "type": o_type, "links": out_links.get((node["id"], k), []), "slot_index": k}
                           for k, (o_name, o_type) in enumerate(info.outputs)]
    return {
        "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"comfyui-hyperlora/{name}")),
        "revision": 0,
        "last_node_id": max(by_id),
        "last_link_id": len(links),
        "nodes": ui_nodes,
        "links": links,
        "groups": [],
        "config": {},
        "extra": {"ds": saved_view(placed)},
        "models": models,
        "version": 0.4,
    }


def _topological(nodes: list[N]) -> dict[int, int]:
    deps = {n.id: {v.node for v in n.inputs.values() if isinstance(v, L)} for n in nodes}
    order, done = {}, set()
    while len(done) < len(nodes):
        ready = sorted(i for i, d in deps.items() if i not in done and d <= done)
        if not ready:
            raise ValueError("cycle in workflow")
        for i in ready:
            order[i] = len(order)
            done.add(i)
    return order
