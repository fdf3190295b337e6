"""Facts of a base model live in its profile (`hyperlora_core/comfy_bridge/bases/`), nowhere else.

Every Python file outside `bases/` and `tests/` is read (its code, not its docstrings) for an SDXL width
(2048 context, 1280 pooled, 2816 ADM) as an integer, or a UNet block / LoRA key name (`down_blocks`,
`input_blocks`, `transformer_blocks`, `lora_unet_`, ...) in a string. A file that must name them is
listed below with the reason; anything else is a base fact that belongs in a profile.
"""

from __future__ import annotations

import ast
import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WIDTHS = {2048, 1280, 2816}
NAMES = re.compile(r"down_blocks|up_blocks|mid_block|input_blocks|output_blocks|middle_block|transformer_blocks|lora_unet_")
PROFILES = "hyperlora_core/comfy_bridge/bases/"

ALLOWED: dict[tuple[str, object], str] = {
    # not widths of a base model: the same numbers meaning something else
    ("hyperlora_core/toy/stages.py", 2048): "how many toy renders the VAE's latent scale is measured on",
    ("nodes/compat.py", 2048): "the published pack's loader widget: the largest resampler width it accepts",
    # the stand-in ControlNet is ComfyUI's ControlNet class for the tiny SDXL stand-in; its own output layer names
    ("hyperlora_core/standins/models.py", "middle_block_out"): "ControlNet's output convolution (seeded init)",
}
"""(file, literal) -> why that file may hold it. The published format (config.py, checkpoint.py) names only
attention projections (to_q/to_k/to_v/to_out), which are not base facts; shipped JSON (the published module
table, manifests, workflow templates) is data, not read here."""


def _docstrings(tree: ast.AST) -> set[int]:
    """ids of the string constants that are prose: module, class, function and attribute docstrings."""
    return {id(n.value) for n in ast.walk(tree) if isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant)}


def _literals(path: Path) -> list[tuple[int, object]]:
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    prose = _docstrings(tree)
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Constant) or id(node) in prose:
            continue
        value = node.value
        if isinstance(value, int) and not isinstance(value, bool) and value in WIDTHS:
            found.append((node.lineno, value))
        elif isinstance(value, str) and NAMES.search(value):
            found.append((node.lineno, value))
    return found


def _code_files() -> list[str]:
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "*.py"], cwd=ROOT,
                            capture_output=True, text=True, check=True).stdout.split()
    return [p for p in listed if not p.startswith(("tests/", PROFILES)) and (ROOT / p).is_file()]


def test_no_base_model_fact_outside_the_profiles():
    found = []
    for rel in _code_files():
        for line, value in _literals(ROOT / rel):
            if (rel, value) not in ALLOWED:
                found.append(f"{rel}:{line}: {value!r}")
    assert not found, "SDXL facts outside comfy_bridge/bases/ (move them into the profile):\n" + "\n".join(found)


def test_the_check_sees_a_planted_fact(tmp_path):
    """The scan is not blind: a width or a block name in code is found, the same in a docstring is not."""
    planted = tmp_path / "planted.py"
    planted.write_text('"""Mentions down_blocks and 2048 in prose."""\nWIDTH = 2048\nKEY = "lora_unet_down_blocks_0"\n')
    assert _literals(planted) == [(2, 2048), (3, "lora_unet_down_blocks_0")]
