"""The import rule of ARCHITECTURE.md, checked on every Python file of the repository.

- the core (`hyperlora_core`) imports no ComfyUI module outside `hyperlora_core/comfy_bridge/`;
- the trainer (`hyperlora_core/train/`) never imports the toy world (`hyperlora_core/toy/`);
- nothing outside `tests/` imports `tests/` or loads a file under it by path.
"""

from __future__ import annotations

import ast
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


FILES = _python_files()


def test_the_rule_sees_every_layer():
    layers = {_where(p).split("/")[0] for p in FILES}
    assert {"hyperlora_core", "nodes", "scripts", "tests", "bench"} <= layers
    assert any(_where(p).startswith("hyperlora_core/comfy_bridge/") for p in FILES)


def _in(prefix: str) -> list[Path]:
    return [p for p in FILES if _where(p).startswith(prefix)]


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
