"""A node is one file: the registry discovers every module of `nodes/` with a `NODES` list, in a fixed
order (`ORDER`, then the module name), so adding a node touches no list anywhere else."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest
from fixtures.pack import ROOT, pack_submodule
from fixtures.published_ui import PUBLISHED_NODE_TYPES


@pytest.fixture(scope="module")
def registry():
    return pack_submodule("nodes.registry")


def _declares_nodes(path: Path) -> bool:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return any(isinstance(n, ast.Assign) and any(getattr(t, "id", None) == "NODES" for t in n.targets)
               for n in tree.body)


def test_every_file_that_declares_nodes_is_registered(registry):
    files = sorted(p.stem for p in (ROOT / "nodes").glob("*.py") if _declares_nodes(p))
    found = sorted(m.__name__.rsplit(".", 1)[1] for m in registry.declaring_modules())
    assert found == files and len(files) >= 10
    defs = registry.node_defs(include_compat=True)
    assert [d.node_id for d in defs] == [d.node_id for m in registry.declaring_modules() for d in m.NODES]
    orders = [m.ORDER for m in registry.declaring_modules()]
    assert orders == sorted(set(orders)), "each module of nodes/ has its own ORDER"


def test_the_published_names_are_conditional(registry):
    ours = {d.node_id for d in registry.node_defs(include_compat=False)}
    every = {d.node_id for d in registry.node_defs(include_compat=True)}
    compat = pack_submodule("nodes.compat")
    assert every - ours == {d.node_id for d in compat.NODES} == set(PUBLISHED_NODE_TYPES)


def _probe_package(tmp_path: Path, name: str, files: dict[str, str]) -> str:
    package = tmp_path / name
    package.mkdir()
    (package / "__init__.py").write_text("")
    for stem, text in files.items():
        (package / f"{stem}.py").write_text(text)
    sys.path.insert(0, str(tmp_path))
    return name


def test_a_new_file_is_a_new_node(registry, tmp_path):
    """A module dropped into the package is found and placed by ORDER, then by name; no list to edit."""
    spec = pack_submodule("nodes.spec").__name__
    head = f"import sys\nNodeDef = sys.modules[{spec!r}].NodeDef\n"

    def node(node_id: str) -> str:
        return f"NodeDef({node_id!r}, {node_id!r}, 'probe', (), (), run=lambda: ())"

    name = _probe_package(tmp_path, "probe_nodes_a", {
        "zeta": head + f"NODES = [{node('Z1')}, {node('Z2')}]\nORDER = 5\n",
        "alpha": head + f"NODES = [{node('A1')}]\n",  # no ORDER: DEFAULT_ORDER (500)
        "beta": head + f"NODES = [{node('B1')}]\n",
        "omega": head + f"NODES = [{node('O1')}]\nORDER = 1000\n",  # like compat: after the unnumbered
        "helper": "X = 1\n",  # no NODES: not a node module
    })
    try:
        assert [d.node_id for d in registry.node_defs(include_compat=True, package=name)] == ["Z1", "Z2", "A1", "B1", "O1"]
    finally:
        sys.path.remove(str(tmp_path))


@pytest.mark.parametrize("text, error", [
    ("NODES = ['not a node']\n", "NODES holds str"),
    ("NODES = [{node}, {node}]\n", "declared twice: P"),
])
def test_a_bad_declaration_is_refused_by_name(registry, tmp_path, text, error):
    spec = pack_submodule("nodes.spec").__name__
    node = "NodeDef('P', 'P', 'probe', (), (), run=lambda: ())"
    package = f"probe_nodes_{abs(hash(text))}"
    name = _probe_package(tmp_path, package, {
        "one": f"import sys\nNodeDef = sys.modules[{spec!r}].NodeDef\n" + text.format(node=node)})
    try:
        with pytest.raises((TypeError, ValueError), match=error):
            registry.node_defs(include_compat=True, package=name)
    finally:
        sys.path.remove(str(tmp_path))
