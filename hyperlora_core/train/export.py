"""`export`: a finished stage's weights -> the published folder layout and our single file (fp16).

Both are written by the core's own savers (`HyperLoRA.save_pretrained` / `save_single_file`), so
the node pack's loader reads them; the training config and stage travel in the metadata.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import torch

from ..errors import HyperLoRAError
from ..model import HyperLoRA
from ..safetensors_io import read_metadata
from .config import FitConfig


def last_finished(cfg: FitConfig) -> Path:
    from .fit import final_path

    for stage in reversed(cfg.stage_names()):
        if final_path(cfg, stage).is_file():
            return final_path(cfg, stage)
    raise HyperLoRAError(
        f"{cfg.run_dir}: no stage has finished yet (no <stage>/final.safetensors); run fit first."
    )


def export(
    cfg: FitConfig | None,
    out: str | Path,
    weights: str | Path | None = None,
    stage: str | None = None,
    single: str | Path | None = None,
    dtype: torch.dtype = torch.float16,
) -> list[Path]:
    """Write `out/` (JSON + .safetensors parts) and `single` (default `<out>.safetensors`)."""
    from .fit import final_path

    if weights is None:
        if cfg is None:
            raise HyperLoRAError("export needs --config (to find the run) or --weights (a final.safetensors).")
        if stage is not None:
            if stage not in cfg.stages:
                raise HyperLoRAError(f"export: stage '{stage}' is not in the config's stages ({', '.join(cfg.stage_names())}).")
            weights = final_path(cfg, stage)
            if not weights.is_file():
                raise HyperLoRAError(f"export: stage '{stage}' has not finished ({weights} does not exist); run fit first.")
        else:
            weights = last_finished(cfg)
    weights = Path(weights)
    model = HyperLoRA.from_pretrained(weights, dtype=torch.float32)
    try:
        extra = json.loads(read_metadata(weights).get("hyperlora.config", "{}")).get("extra", {})
    except ValueError:
        extra = {}
    model.config = dataclasses.replace(model.config, extra={**extra, "exported_from": weights.name})
    out = Path(out)
    single = Path(single) if single else out.with_suffix(".safetensors")
    model.save_pretrained(out, dtype=dtype)
    model.save_single_file(single, dtype=dtype)
    return [out, single]
