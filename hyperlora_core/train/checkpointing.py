"""Resumable training state with `torch.distributed.checkpoint`, written atomically.

A checkpoint is a folder `step-XXXXXXXX/` holding the DCP shards of {model, optimizer} (any
world size can read them), `trainer.json` (step, scheduler, config) and `rank-N.json` (that
rank's torch / numpy / python RNG states). It is written under a hidden temporary name and
renamed into place once every rank has finished, so a crash, a kill or a full disk never leaves
a half-written checkpoint where resume would look (SIGTERM removes the temporary folder; one left by
SIGKILL is removed when fit starts again). Only the newest `keep_last` are kept.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import json
import os
import random
import shutil
import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.api import CheckpointException
from torch.distributed.checkpoint.state_dict import (
    get_model_state_dict,
    get_state_dict,
    set_model_state_dict,
    set_state_dict,
)

from .. import temporaries
from ..errors import HyperLoRAError
from .distributed import DistInfo, any_rank, barrier

PREFIX = "step-"
TMP_PREFIX = ".tmp-"


@contextmanager
def _quiet_single_process():
    """DCP warns that it 'assumes a single process' when no process group exists: that is intended."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*torch.distributed is disabled.*")
        yield


def _rng_state() -> dict:
    np_state = np.random.get_state()
    state = {
        "torch": base64.b64encode(torch.get_rng_state().numpy().tobytes()).decode(),
        "numpy": [np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]), float(np_state[4])],
        "python": [random.getstate()[0], list(random.getstate()[1]), random.getstate()[2]],
    }
    if torch.cuda.is_available():
        state["cuda"] = base64.b64encode(torch.cuda.get_rng_state().numpy().tobytes()).decode()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(torch.frombuffer(bytearray(base64.b64decode(state["torch"])), dtype=torch.uint8))
    n = state["numpy"]
    np.random.set_state((n[0], np.array(n[1], dtype=np.uint32), n[2], n[3], n[4]))
    p = state["python"]
    random.setstate((p[0], tuple(p[1]), p[2]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(torch.frombuffer(bytearray(base64.b64decode(state["cuda"])), dtype=torch.uint8))


def _write_json(path: Path, data: dict) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f)
        f.flush()
        os.fsync(f.fileno())


def list_checkpoints(folder: Path) -> list[Path]:
    """Complete checkpoints, oldest first (a complete one has its trainer.json)."""
    if not folder.is_dir():
        return []
    done = [p for p in folder.iterdir() if p.name.startswith(PREFIX) and (p / "trainer.json").is_file()]
    return sorted(done, key=lambda p: int(p.name[len(PREFIX):]))


def latest_checkpoint(folder: Path) -> Path | None:
    found = list_checkpoints(folder)
    return found[-1] if found else None


def save_checkpoint(
    folder: Path,
    step: int,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler,
    info: DistInfo,
    trainer: dict,
    keep_last: int,
) -> Path:
    """Write `folder/step-XXXXXXXX` atomically on all ranks; prune to the newest `keep_last`."""
    final = folder / f"{PREFIX}{step:08d}"
    tmp = folder / f"{TMP_PREFIX}{PREFIX}{step:08d}"
    if info.is_main:
        folder.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
    with temporaries.tracked(tmp) if info.is_main else contextlib.nullcontext():  # SIGTERM removes it
        return _save_into(tmp, final, folder, step, model, optimizer, scheduler, info, trainer, keep_last)


def _save_into(tmp: Path, final: Path, folder: Path, step: int, model: torch.nn.Module,
               optimizer: torch.optim.Optimizer, scheduler, info: DistInfo, trainer: dict, keep_last: int) -> Path:
    barrier(info)
    failure: BaseException | None = None
    try:
        model_sd, optim_sd = get_state_dict(model, optimizer)
        with _quiet_single_process():
            dcp.save({"model": model_sd, "optim": optim_sd}, checkpoint_id=str(tmp))
        _write_json(tmp / f"rank-{info.rank}.json", {"rng": _rng_state(), "step": step})
    except (Exception, CheckpointException) as exc:  # noqa: BLE001 - re-raised below on every rank
        failure = exc
    _abort_if_any_rank_failed(failure, tmp, final, folder, info)
    try:
        if info.is_main:
            _write_json(tmp / "trainer.json", {**trainer, "step": step, "scheduler": scheduler.state_dict(), "world": info.world})
            os.replace(tmp, final)
    except OSError as exc:
        failure = exc
    _abort_if_any_rank_failed(failure, tmp, final, folder, info)
    if info.is_main:
        for old in list_checkpoints(folder)[:-keep_last]:
            shutil.rmtree(old, ignore_errors=True)
    barrier(info)
    return final


def _abort_if_any_rank_failed(failure: BaseException | None, tmp: Path, final: Path, folder: Path,
                              info: DistInfo) -> None:
    """Every rank raises the same error if any rank failed; the half-written folder is removed."""
    if any_rank(failure is not None, info):
        if info.is_main:
            shutil.rmtree(tmp, ignore_errors=True)
        barrier(info)
        raise HyperLoRAError(_save_failure_message(final, failure, folder)) from failure


def _save_failure_message(final: Path, exc: BaseException | None, folder: Path) -> str:
    prev = latest_checkpoint(folder)
    keep = f"The previous checkpoint {prev.name} is intact." if prev else "No earlier checkpoint exists."
    root = exc
    while root is not None and not isinstance(root, OSError) and root.__cause__ is not None:
        root = root.__cause__
    text = str(exc) if exc is not None else "another rank failed"
    if isinstance(root, OSError) and root.errno == errno.ENOSPC or "No space left" in text:
        return (
            f"disk full writing checkpoint {final}: no space left on the device. Free disk space (or lower "
            f"train.checkpoint.keep_last) and run fit again to resume. {keep} The partial write was removed."
        )
    return f"could not write checkpoint {final} ({text}). {keep} The partial write was removed."


def clean_temporaries(folder: Path, info: DistInfo) -> None:
    """Remove leftovers of checkpoints whose write was interrupted (e.g. the process was killed)."""
    if info.is_main and folder.is_dir():
        for p in folder.iterdir():
            if p.name.startswith(TMP_PREFIX):
                shutil.rmtree(p, ignore_errors=True)
    barrier(info)


def _unreadable(path: Path, what: str) -> HyperLoRAError:
    """The resume failed on checkpoint `path`: which file, and how to go on without losing progress."""
    earlier = [p for p in list_checkpoints(path.parent) if p != path]
    aside = f"rename {path.name} to damaged-{path.name} (fit ignores it then)"
    if earlier:
        advice = (f"The previous checkpoint {earlier[-1].name} can be used: {aside} and run fit again; it resumes from "
                  f"step {int(earlier[-1].name[len(PREFIX):])}.")
    else:
        advice = (f"This stage has no earlier checkpoint: {aside} and run fit again to redo this stage "
                  "(the finished stages are kept).")
    return HyperLoRAError(f"could not resume from checkpoint {path}: {what}. {advice}")


def load_checkpoint(
    path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler, info: DistInfo
) -> dict:
    """Restore model, optimizer, scheduler and (same world size) this rank's RNG; return trainer.json."""
    try:
        trainer = json.loads((path / "trainer.json").read_text(encoding="utf-8"))
        trainer["scheduler"], trainer["step"]  # noqa: B018 - both must be there
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise _unreadable(path, f"its trainer.json is damaged ({type(exc).__name__}: {exc})") from None
    model_sd, optim_sd = get_state_dict(model, optimizer)
    state = {"model": model_sd, "optim": optim_sd}
    try:
        with _quiet_single_process():
            dcp.load(state, checkpoint_id=str(path))
    except (Exception, CheckpointException) as exc:  # noqa: BLE001 - DCP raises several types
        text = str(exc)
        named = sorted({f.name for f in path.iterdir() if f.name in text}) if path.is_dir() else []
        which = f"its file {named[0]}" if named else "one of its files (.metadata or a .distcp shard)"
        raise _unreadable(
            path,
            f"{which} could not be read ({text.splitlines()[0][:300] if text else type(exc).__name__}). Either it is "
            "damaged, or the config's model settings changed since it was written (then restore them)",
        ) from None
    set_state_dict(model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optim"])
    scheduler.load_state_dict(trainer["scheduler"])
    rank_file = path / f"rank-{info.rank}.json"
    if trainer.get("world") == info.world and rank_file.is_file():
        try:
            _set_rng_state(json.loads(rank_file.read_text(encoding="utf-8"))["rng"])
        except (OSError, ValueError, KeyError, TypeError, IndexError) as exc:  # empty or half-written after a crash
            raise _unreadable(path, f"its file {rank_file.name} is empty or incomplete ({type(exc).__name__}: {exc}); "
                                    "the write was cut short (a crash or power loss)") from None
    return trainer


def load_model_weights(path: Path, model: torch.nn.Module) -> torch.nn.Module:
    """Only the model part of a checkpoint, into `model` (the module the trainer saved, e.g. a
    `HyperStep`): reading trained weights needs no optimiser, scheduler or process group."""
    state = {"model": get_model_state_dict(model)}
    try:
        with _quiet_single_process():
            dcp.load(state, checkpoint_id=str(path))
    except (Exception, CheckpointException) as exc:  # noqa: BLE001 - DCP raises several types
        raise HyperLoRAError(f"could not read the model weights of checkpoint {path} ({exc}).") from None
    set_model_state_dict(model, state["model"])
    return model
