"""Model Check and Fetch Models nodes: the `check` report and the `fetch` download, inside ComfyUI.

Both look at the folders ComfyUI has registered (extra_model_paths.yaml included) and run on every
queue, since files change on disk without the graph changing. Connect their report to ComfyUI's
Preview as Text node to read it; it is printed to the console as well. Fetch Models downloads only
when run on purpose with its licence widget accepted, through the same code as the command
(`hyperlora_core.models.fetch`: staging folder, hash and format checks, rename into place).
"""

from __future__ import annotations

from hyperlora_core.comfy_bridge import folders
from hyperlora_core.errors import HyperLoRAError
from hyperlora_core.models import check, items
from hyperlora_core.models.check import FETCH_NODE, check_file, pack_folder
from hyperlora_core.models.command import models_command
from hyperlora_core.models.fetch import Stop, fetch

from . import host
from .spec import In, NodeDef, Out, Result


def _check():
    text = check(folders.model_roots()).text(folders.comfyui_folder())
    host.log.info("HyperLoRA model check:\n%s", text)
    return Result(values=(text,), ui={"text": [text]})


MODEL_CHECK = NodeDef(
    node_id="HyperLoRAModelCheck",
    display_name="HyperLoRA Model Check",
    description=(
        "Lists every model file HyperLoRA needs, where it is or should go, and what is wrong with it (missing, "
        f"nested folder, Git-LFS pointer, truncated download, another face pack), with how to get it. Connect the "
        f"report to Preview as Text. {FETCH_NODE} downloads what can be downloaded."
    ),
    inputs=(),
    outputs=(Out("STRING", "report", "The report as text."),),
    run=_check,
    output_node=True,
    always_run=True,
)


REQUIRED, ALL = "required", "all"
"""`models` choices besides single item ids: the manifest's default items, or every item."""


def _choices() -> list[str]:
    return [REQUIRED, *(it.id for it in items() if it.hub is not None), ALL]


def _chosen(models: str):
    if models == ALL:
        return list(items())
    return [it for it in items() if (it.default if models == REQUIRED else it.id == models)]


LICENCES = "; ".join(f"{it.id}: {it.licence}" for it in items() if it.hub is not None)


def _progress():
    """ComfyUI's progress bar; its hook raises when the user cancels, which must stop the whole fetch."""
    bar = host.Progress()

    def report(done: int, total: int) -> None:
        try:
            bar(done, total)
        except Exception as cancel:
            raise Stop() from cancel

    return report


def _fetch(models: str, accept_licences: bool):
    roots = folders.model_roots()
    comfyui = folders.comfyui_folder()
    chosen = _chosen(models)
    missing = [it for it in chosen if not all(check_file(it, f, roots).ok for f in it.files)]
    to_download = [it for it in missing if it.hub is not None]
    lines: list[str] = []
    if to_download and not accept_licences:
        lines += ["Nothing was downloaded: set accept_licences to true to accept the licence of each model below, "
                  "then run this node again."]
        lines += [f"  {it.title} ({it.id}): licence {it.licence}, from https://huggingface.co/{it.hub.repo}"
                  for it in to_download]
        lines += [f"(In a terminal: {models_command('fetch', *(it.id for it in to_download), comfyui=comfyui)})"]
        for it in missing:
            if it.manual is not None:
                lines.append(f"{it.id}: by hand ({it.licence}): {it.manual_steps(str(pack_folder(it, roots)))}")
    else:
        try:
            result = fetch(roots, [it.id for it in chosen], log=lines.append, progress=_progress())
        except Stop as stop:  # ComfyUI's cancel, raised by its progress hook: stop everything, as ComfyUI expects
            raise (stop.__cause__ or stop) from None
        if result.failed:
            raise HyperLoRAError(f"{FETCH_NODE}: " + " ".join(result.failed)
                                 + f" ({len(result.fetched)} other file(s) were fetched.)")
        lines.append(f"fetched {len(result.fetched)} file(s); {len(result.present)} were already in place. "
                     "Press 'r' (refresh) so the loaders list them.")
        if result.manual:
            lines.append(f"Still needed by hand: {', '.join(result.manual)} (the step is above).")
    text = "\n".join(lines)
    host.log.info("HyperLoRA fetch models:\n%s", text)
    return Result(values=(text,), ui={"text": [text]})


FETCH_MODELS = NodeDef(
    node_id="HyperLoRAFetchModels",
    display_name=FETCH_NODE,
    description=(
        "Downloads the model files HyperLoRA needs that are missing or damaged, from the official sources, into "
        "ComfyUI's model folders, with the same checks as `hyperlora_core.models fetch` (staging folder, hash, "
        "format, then renamed into place). Nothing is downloaded unless accept_licences is true. The antelopev2 "
        "face pack cannot be downloaded for you (its licence is accepted by each user): the report gives the step."
    ),
    inputs=(
        In("models", "COMBO", options=_choices(), default=REQUIRED,
           tooltip="required: the HyperLoRA checkpoint, CLIP ViT-L/14 (and the face pack's step); one model by "
                   "its id; all: every model, SDXL base and the OpenPose ControlNet included."),
        In("accept_licences", "BOOLEAN", default=False,
           tooltip=f"Downloads only when true: you accept each model's licence. {LICENCES}."),
    ),
    outputs=(Out("STRING", "report", "What was downloaded, what was there, what is left to do by hand."),),
    run=_fetch,
    output_node=True,
    always_run=True,
)

NODES = [MODEL_CHECK, FETCH_MODELS]

ORDER = 80  # place in the node listing (registry.declaring_modules)
