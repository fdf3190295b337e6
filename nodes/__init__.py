"""HyperLoRA nodes. One registration path is chosen at import: the V3 schema where the host has it
(`comfy_entrypoint`), the classic `NODE_CLASS_MAPPINGS` otherwise. Never both: ComfyUI would use
the classic mappings and ignore the entry point."""

from __future__ import annotations

from hyperlora_core import temporaries

from . import host
from .registry import classic_mappings, node_defs, v3_entrypoint, v3_io

# Model folders (models/hyper_lora, models/insightface) are registered with folder_paths on first
# use (listing or loading), not here: importing the pack changes no global state of the host, with
# two exceptions: a SIGTERM handler (set from the main thread, which runs this import; saves run in
# the worker thread, which may not set one) that removes our half-written temporaries and then
# does whatever the host had set; and, only inside a running server, the templates' sample photos
# copied into its input folder where no file has their name (so no template opens with a missing photo).
temporaries.install_signal_cleanup()
host.place_sample_photos()
DEFS = node_defs()
API = "classic"
_v3 = v3_io()

if _v3 is not None:
    try:
        comfy_entrypoint, V3_NODES = v3_entrypoint(DEFS, *_v3)
        API = "v3"
    except Exception as err:  # an early V3 API that lacks something we use: the classic API still works
        host.log.warning("HyperLoRA: this host's V3 node API could not build our nodes (%s); using the classic API.", err)

if API == "classic":
    NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS = classic_mappings(DEFS)
    __all__ = ["API", "DEFS", "NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
else:
    __all__ = ["API", "DEFS", "comfy_entrypoint"]
