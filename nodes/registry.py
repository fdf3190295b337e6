"""All node declarations, discovered, and the choice of node API made once at import.

A node is one file: every module of this package that has a `NODES` list of `NodeDef` declares those
nodes. The order (the editor's listing, `locales/en`, the help pages, the schema snapshot) is the
modules' `ORDER` number, then their name, then the order inside `NODES`; a module without `ORDER`
counts as `DEFAULT_ORDER` (after ours, 10-90; before the published pack's names, 1000). The published
pack's names (`compat.py`, `COMPAT = True`) are declared only when that pack itself is not installed.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
from types import ModuleType

from . import host
from .spec import NodeDef, build_classic, build_v3

API_ENV = "HYPERLORA_NODE_API"
"""Set to "classic" to force the classic registration on a host that has V3 (tests do)."""

DEFAULT_ORDER = 500
"""The `ORDER` of a module that gives none."""


def declaring_modules(package: str = __package__) -> list[ModuleType]:
    """The modules of `package` with a `NODES` list, in registration order (`ORDER`, then name)."""
    found = []
    for info in pkgutil.iter_modules(importlib.import_module(package).__path__):
        module = importlib.import_module(f"{package}.{info.name}")
        if hasattr(module, "NODES"):
            found.append(module)
    return sorted(found, key=lambda m: (getattr(m, "ORDER", DEFAULT_ORDER), m.__name__))


def node_defs(include_compat: bool | None = None, package: str = __package__) -> list[NodeDef]:
    """Every declared node; `include_compat=None` includes the published pack's names unless it is installed."""
    modules = declaring_modules(package)
    if include_compat is None and any(getattr(m, "COMPAT", False) for m in modules):
        from . import compat

        include_compat = not compat.published_pack_installed()
        if not include_compat:
            host.log.info("HyperLoRA: the published ComfyUI-HyperLoRA pack is installed; its node names stay its own.")
    defs: list[NodeDef] = []
    for module in modules:
        if getattr(module, "COMPAT", False) and not include_compat:
            continue
        for d in module.NODES:
            if not isinstance(d, NodeDef):
                raise TypeError(f"{module.__name__}.NODES holds {type(d).__name__}, not a NodeDef")
            defs.append(d)
    seen: set[str] = set()
    twice = [d.node_id for d in defs if d.node_id in seen or seen.add(d.node_id)]
    if twice:
        raise ValueError(f"node ids declared twice: {', '.join(twice)}")
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
