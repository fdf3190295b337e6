"""All node declarations, and the choice of node API made once at import."""

from __future__ import annotations

import os

from . import apply, compat, encode, generate, host, loaders, mix, model_check, oneclick, save, toy_world
from .spec import NodeDef, build_classic, build_v3

API_ENV = "HYPERLORA_NODE_API"
"""Set to "classic" to force the classic registration on a host that has V3 (tests do)."""


def node_defs(include_compat: bool | None = None) -> list[NodeDef]:
    defs = [*loaders.NODES, *encode.NODES, *generate.NODES, *mix.NODES, *apply.NODES, *save.NODES, *oneclick.NODES,
            *model_check.NODES, *toy_world.NODES]
    if include_compat is None:
        include_compat = not compat.published_pack_installed()
    if include_compat:
        defs += compat.NODES
    else:
        host.log.info("HyperLoRA: the published ComfyUI-HyperLoRA pack is installed; its node names stay its own.")
    return defs


def v3_io():
    """`comfy_api.latest.io` and `ComfyExtension`, or None on hosts without the V3 schema."""
    if os.environ.get(API_ENV, "").lower() == "classic":
        return None
    try:
        from comfy_api.latest import ComfyExtension, io
    except ImportError:
        return None
    return io, ComfyExtension


def classic_mappings(defs: list[NodeDef]) -> tuple[dict, dict]:
    classes = {d.node_id: build_classic(d) for d in defs}
    names = {d.node_id: d.display_name for d in defs}
    return classes, names


V3_NEEDS = ("Schema", "NodeOutput", "ComfyNode", "Custom", "Int", "Float", "Boolean", "String", "Combo", "Image",
            "Mask", "Model", "Clip", "Vae", "ClipVision", "Conditioning", "Latent")


def v3_entrypoint(defs: list[NodeDef], io, extension_base):
    missing = [name for name in V3_NEEDS if not hasattr(io, name)]
    if missing:  # fail here (and fall back to classic), not inside ComfyUI's loader
        raise ImportError(f"comfy_api.latest.io lacks {', '.join(missing)}")
    nodes = [build_v3(d, io) for d in defs]

    class HyperLoRAExtension(extension_base):
        async def get_node_list(self):
            return list(nodes)

    async def comfy_entrypoint():
        return HyperLoRAExtension()

    return comfy_entrypoint, nodes
