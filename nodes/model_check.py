"""Model Check node: the `python -m hyperlora_core.models check` report, inside ComfyUI.

It looks at the folders ComfyUI has registered (extra_model_paths.yaml included) and runs on every
queue, since files change on disk without the graph changing. Connect its report to ComfyUI's
Preview as Text node to read it; it is printed to the console as well.
"""

from __future__ import annotations

from hyperlora_core.comfy_bridge import folders
from hyperlora_core.models import check

from . import host
from .spec import NodeDef, Out, Result


def _check():
    text = check(folders.model_roots()).text()
    host.log.info("HyperLoRA model check:\n%s", text)
    return Result(values=(text,), ui={"text": [text]})


MODEL_CHECK = NodeDef(
    node_id="HyperLoRAModelCheck",
    display_name="HyperLoRA Model Check",
    description=(
        "Lists every model file HyperLoRA needs, where it is or should go, and what is wrong with it (missing, "
        "nested folder, Git-LFS pointer, truncated download, another face pack), with how to get it. Connect the "
        "report to Preview as Text. `python -m hyperlora_core.models fetch` downloads what can be downloaded."
    ),
    inputs=(),
    outputs=(Out("STRING", "report", "The report as text."),),
    run=_check,
    output_node=True,
    always_run=True,
)

NODES = [MODEL_CHECK]

ORDER = 80  # place in the node listing (registry.declaring_modules)
