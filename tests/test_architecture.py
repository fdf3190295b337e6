"""The import rule of ARCHITECTURE.md, checked on every Python file of the repository.

- the layer table (read from ARCHITECTURE.md itself, so the page and this test cannot drift): a file
  imports only modules of its own layer or of layers above it, never below;
- the core (`hyperlora_core`) imports no ComfyUI module outside `hyperlora_core/comfy_bridge/`;
- the trainer (`hyperlora_core/train/`) never imports the toy world (`hyperlora_core/toy/`);
- nothing outside `tests/` imports `tests/` or loads a file under it by path.
"""

from __future__ import annotations

import ast
import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMFYUI_MODULES = {"comfy", "comfy_extras", "comfy_api", "comfy_api_nodes", "comfy_execution", "comfy_config",
                   "folder_paths", "nodes", "node_helpers", "server", "execution", "latent_preview", "comfyui_version",
                   "app", "utils", "protocol"}
"""Top-level modules of a ComfyUI host (`nodes` is ComfyUI's or, for the core, our UI layer: both forbidden)."""
TEST_MODULES = {"tests", "fixtures", "conftest"}


def _python_files() -> list[Path]:
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "*.py"], cwd=ROOT,
                            capture_output=True, text=True, check=True).stdout.split()
    return [ROOT / p for p in listed if (ROOT / p).is_file()]


def _package(path: Path) -> list[str]:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    return parts[:-1] if parts[-1] != "__init__" else parts[:-1]


def imports(path: Path, package: list[str] | None = None) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in the file, nested ones included."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    package = _package(path) if package is None else package
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                module = ".".join([*base, *([node.module] if node.module else [])])
                found += [(node.lineno, f"{module}.{a.name}" if not node.module else module) for a in node.names]
            else:
                found.append((node.lineno, node.module))
    return found


def paths_into_tests(path: Path) -> list[int]:
    """Lines that build a path into `tests/` (`... / "tests"` or a "tests/..." string)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
            if any(isinstance(side, ast.Constant) and side.value == "tests" for side in (node.left, node.right)):
                lines.append(node.lineno)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith("tests/"):
            lines.append(node.lineno)
    return lines


def _where(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def layer_table(text: str) -> list[list[str]]:
    """The folders of each row of the "Layers" table, top row first (`hyperlora_core/toy/`, `eval/`:
    a short name after a nested folder is that folder's sibling)."""
    section = text.split("\n## Layers", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    layers = []
    for row in rows:
        cell = row.split("|")[1]
        folders = re.findall(r"`([^`]+/)`", cell)
        parent = folders[0].rstrip("/").rsplit("/", 1)[0] + "/" if folders[0].count("/") > 1 else ""
        layers.append([folders[0]] + [f if f.count("/") > 1 else parent + f for f in folders[1:]])
    return layers


LAYERS = layer_table((ROOT / "ARCHITECTURE.md").read_text(encoding="utf-8"))
OUTSIDE_THE_TABLE = {"__init__.py": "the pack's ComfyUI entry point (imports nodes/)"}


def layer_of(where: str, layers: list[list[str]]) -> int | None:
    """The row of the longest table folder that holds `where` (a path), or None."""
    best = None
    for k, folders in enumerate(layers):
        for folder in folders:
            if where.startswith(folder) and (best is None or len(folder) > best[1]):
                best = (k, len(folder))
    return None if best is None else best[0]


def module_path(module: str, importer: str) -> str | None:
    """The repository path a module name stands for, or None for a module outside the repository.
    An absolute `nodes` is ComfyUI's (ours is reached relatively from inside `nodes/` or by path)."""
    top = module.split(".")[0]
    if top in ("fixtures", "conftest"):
        return "tests/" + module.replace(".", "/")
    if top in ("hyperlora_core", "scripts", "bench", "workflows", "tests") or (
            top == "nodes" and importer.startswith("nodes/")):
        return module.replace(".", "/") + "/"
    return None


def layer_violations(files: list[Path], layers: list[list[str]]) -> dict[str, list[tuple[int, str]]]:
    """{file: [(line, module)]} of every import of a layer below the file's own."""
    bad = {}
    for p in files:
        where = _where(p)
        own = layer_of(where, layers)
        if own is None:
            continue
        found = [(line, m) for line, m in imports(p) if (target := module_path(m, where)) is not None
                 and (theirs := layer_of(target, layers)) is not None and theirs > own]
        if found:
            bad[where] = found
    return bad


FILES = _python_files()


def test_the_rule_sees_every_layer():
    layers = {_where(p).split("/")[0] for p in FILES}
    assert {"hyperlora_core", "nodes", "scripts", "tests", "bench"} <= layers
    assert any(_where(p).startswith("hyperlora_core/comfy_bridge/") for p in FILES)


def _in(prefix: str) -> list[Path]:
    return [p for p in FILES if _where(p).startswith(prefix)]


def test_the_layer_table_is_read():
    flat = [f for row in LAYERS for f in row]
    assert flat[:4] == ["hyperlora_core/", "hyperlora_core/comfy_bridge/", "hyperlora_core/train/", "hyperlora_core/toy/"]
    assert {"hyperlora_core/eval/", "hyperlora_core/standins/", "nodes/", "scripts/", "bench/", "workflows/",
            "tests/"} <= set(flat)


def test_every_python_file_is_in_a_layer():
    lost = [_where(p) for p in FILES if layer_of(_where(p), LAYERS) is None and _where(p) not in OUTSIDE_THE_TABLE]
    assert not lost, f"add their folder to ARCHITECTURE.md's layer table: {lost}"


def test_each_layer_imports_only_the_layers_above_it():
    bad = layer_violations(FILES, LAYERS)
    rows = " > ".join("/".join(r) for r in LAYERS)
    assert not bad, f"imports of a layer below the importer's (ARCHITECTURE.md, Layers: {rows}): {bad}"


def test_the_core_imports_comfyui_only_through_the_bridge():
    bad = {_where(p): [(line, m) for line, m in imports(p) if m.split(".")[0] in COMFYUI_MODULES]
           for p in _in("hyperlora_core/") if not _where(p).startswith("hyperlora_core/comfy_bridge/")}
    assert not {k: v for k, v in bad.items() if v}, "ComfyUI imported outside hyperlora_core/comfy_bridge/"


def test_the_trainer_never_imports_the_toy_world():
    bad = {_where(p): [(line, m) for line, m in imports(p) if m == "hyperlora_core.toy" or m.startswith("hyperlora_core.toy.")]
           for p in _in("hyperlora_core/train/")}
    assert not {k: v for k, v in bad.items() if v}, "the trainer imports the toy world (backbones come from the registry)"


def test_nothing_outside_tests_uses_tests():
    outside = [p for p in FILES if not _where(p).startswith("tests/")]
    bad = {_where(p): [(line, m) for line, m in imports(p) if m.split(".")[0] in TEST_MODULES] for p in outside}
    assert not {k: v for k, v in bad.items() if v}, "test code imported outside tests/"
    loads = {_where(p): paths_into_tests(p) for p in outside}
    assert not {k: v for k, v in loads.items() if v}, "files under tests/ loaded by path outside tests/"


def test_the_checks_catch_what_they_forbid(tmp_path):
    """The parser resolves relative imports, nested imports and path joins the way the rules need."""
    probe = tmp_path / "probe.py"  # as if it were hyperlora_core/train/probe.py
    probe.write_text("from ..toy import world\nfrom . import fit\nimport comfy.sd\n\ndef f():\n"
                     "    from fixtures import pack\n    return ROOT / 'tests' / 'x.py', 'tests/y.py'\n")
    assert [m for _, m in imports(probe, ["hyperlora_core", "train"])] == [
        "hyperlora_core.toy", "hyperlora_core.train.fit", "comfy.sd", "fixtures"]
    assert paths_into_tests(probe) == [7, 7]


def test_the_layer_check_catches_an_import_from_below(tmp_path):
    table = ("\n## Layers\n\n| layer | what |\n|---|---|\n| `core/` | a |\n| `core/low/`, `mid/` | b |\n"
             "| `ui/`, `bin/` | c |\n\n## Next\n")
    layers = layer_table(table)
    assert layers == [["core/"], ["core/low/", "core/mid/"], ["ui/", "bin/"]]
    assert layer_of("core/mid/x.py", layers) == 1 and layer_of("core/x.py", layers) == 0
    assert layer_of("bin/x.py", layers) == 2 and layer_of("other/x.py", layers) is None
