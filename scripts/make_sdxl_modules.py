"""Regenerate models/sdxl_hyper_lora_modules.json from ComfyUI's SDXL UNet (meta device).

Run: .venv/bin/python -m scripts.make_sdxl_modules  (a test checks the shipped file matches).
"""

from __future__ import annotations

import json
from pathlib import Path

from scripts.comfy_env import boot_comfy

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    boot_comfy()
    from hyperlora_core.comfy_bridge.bases import SDXL

    specs = SDXL.module_specs(SDXL.build(device="meta"))
    table = {s.name: s.table_entry() for s in specs}
    out = ROOT / "models" / "sdxl_hyper_lora_modules.json"
    out.write_text(json.dumps(table, indent=2) + "\n")
    print(f"wrote {out} ({len(table)} modules)")


if __name__ == "__main__":
    main()
