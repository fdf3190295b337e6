"""What a researcher watches: a progress bar, loss logs (JSONL + TensorBoard) and sample grids.

Only rank 0 writes. The JSONL log is the machine-readable record (tests compare losses with
it); on resume, entries past the restored step are dropped so the log reads as one run.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..pixels import uint8_pixels


class StageLogger:
    def __init__(self, stage_dir: Path, stage: str, total: int, start: int, enabled: bool, progress: bool, tensorboard: bool):
        self.enabled = enabled
        self.stage = stage
        self.path = stage_dir / "losses.jsonl"
        self._bar = None
        self._tb = None
        if not enabled:
            return
        stage_dir.mkdir(parents=True, exist_ok=True)
        if self.path.exists():  # keep what the restored state had seen, drop the rest
            kept = [ln for ln in self.path.read_text().splitlines() if ln and json.loads(ln)["step"] <= start]
            self.path.write_text("".join(ln + "\n" for ln in kept))
        self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()
        if progress:
            from tqdm import tqdm

            self._bar = tqdm(total=total, initial=start, desc=stage, file=sys.stderr, dynamic_ncols=True)
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(log_dir=str(stage_dir.parent / "tensorboard" / stage), purge_step=start + 1)

    def step(self, step: int, loss: float, lr: float, seconds: float, write: bool) -> None:
        """`step` is the number of completed steps (1-based)."""
        if not self.enabled:
            return
        if write:
            self._file.write(json.dumps({"step": step, "loss": loss, "lr": lr, "seconds": round(seconds, 4)}) + "\n")
            self._file.flush()
            if self._tb is not None:
                self._tb.add_scalar("loss", loss, step)
                self._tb.add_scalar("lr", lr, step)
        if self._bar is not None:
            self._bar.update(1)
            self._bar.set_postfix(loss=f"{loss:.4f}")

    def image(self, tag: str, path: Path, step: int) -> None:
        if self.enabled and self._tb is not None:
            arr = np.asarray(Image.open(path).convert("RGB"))
            self._tb.add_image(tag, arr, step, dataformats="HWC")

    def close(self) -> None:
        if not self.enabled:
            return
        self._file.close()
        if self._bar is not None:
            self._bar.close()
        if self._tb is not None:
            self._tb.close()


def read_losses(stage_dir: Path) -> list[dict]:
    path = stage_dir / "losses.jsonl"
    if not path.is_file():
        return []
    return [json.loads(ln) for ln in path.read_text().splitlines() if ln]


def save_grid(rows: list[list[torch.Tensor]], path: Path, cell: int = 128) -> Path:
    """Rows of `[H, W, 3]` images in 0..1 -> one PNG (atomic)."""
    ncols = max(len(r) for r in rows)
    grid = Image.new("RGB", (ncols * cell, len(rows) * cell), (127, 127, 127))
    for y, row in enumerate(rows):
        for x, img in enumerate(row):
            arr = uint8_pixels(img)
            grid.paste(Image.fromarray(arr).resize((cell, cell), Image.BICUBIC), (x * cell, y * cell))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    grid.save(tmp, format="PNG")
    tmp.replace(path)
    return path
