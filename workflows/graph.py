"""A workflow described once, as nodes and links, and its ComfyUI API format (what `POST /prompt` takes)."""

from __future__ import annotations

from dataclasses import dataclass, field

NOTE = "MarkdownNote"
"""The frontends' Markdown note: shown in the editor, never sent to the server. Its text is the user's note font
(10 px by default, ~7 px on screen at the zoom a template opens with); both frontends draw a `##` heading at 1.5x,
so `ui.py` writes each line of a note as one (see `ui.note_markdown`)."""


@dataclass(frozen=True)
class L:
    """A link to output `slot` of node `node`."""

    node: int
    slot: int = 0


@dataclass
class N:
    """One node: id, type, inputs (a literal, or an `L`), and where it goes in the editor: column `col`,
    stacked in `row` order within it."""

    id: int
    type: str
    inputs: dict
    col: int
    row: float
    title: str | None = None
    models: list = field(default_factory=list)
    """Download entries for the model files its widgets name (see `hyperlora_core.models.download_entry`)."""
    width: int | None = None
    height: int | None = None
    """Size in the editor; None: what the node's sockets and widgets need (see `ui.py`)."""
    output: str | None = None
    """The name callers read this node's results by (`outputs`), instead of knowing its id."""


def note(i: int, text: str, col: int, row: float, width: int = 330, height: int | None = None) -> N:
    return N(i, NOTE, {"text": text}, col, row, width=width, height=height)


def outputs(nodes: list[N]) -> dict[str, str]:
    """Output name -> the node's id in the API format (the key of `POST /prompt`'s results)."""
    named = [n for n in nodes if n.output]
    out = {n.output: str(n.id) for n in named}
    if len(out) != len(named):
        raise ValueError(f"two nodes share an output name: {sorted(n.output for n in named)}")
    return out


def api_format(nodes: list[N]) -> dict:
    """ComfyUI's API format: {"<id>": {"class_type", "inputs", "_meta"}}, links as ["<id>", slot]."""
    out = {}
    for n in nodes:
        if n.type == NOTE:
            continue
        inputs = {k: [str(v.node), v.slot] if isinstance(v, L) else v for k, v in n.inputs.items()}
        out[str(n.id)] = {"class_type": n.type, "inputs": inputs, "_meta": {"title": n.title or n.type}}
    return out
