"""`make demo` on the toy world: never-seen identities personalised through ComfyUI's HTTP API.

Used by `scripts/demo.py` when the real models are not in ComfyUI's model folders. It starts the
ComfyUI host with this pack, links the shipped toy world (models/toy) into a private models folder,
writes reference photos of held-out identities (no training stage ever saw them) into its input
folder and, per identity, queues the toy template's graph (`workflows.library.toy_world`, with LoadImage
nodes for the photos: LoadImage -> HyperLoRA Toy Encode -> HyperLoRA Generate ID LoRA -> HyperLoRA Apply
on the Toy World Loader's MODEL -> KSampler -> VAEDecode -> SaveImage) with one and with four reference
photos, plus the same seed without the LoRA. The saved images are then read back and judged by the
toy world's attribute classifier (a network the HyperLoRA never reads): the identity-match table,
a grid PNG (references / with LoRA / without) and, last, `heldout_match_with_lora=<x> without=<y>`.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from PIL import Image

from scripts.comfy_env import ROOT

REFS = (1, 4)


def say(msg: str) -> None:
    print(f"[demo] {msg}", flush=True)


def toy_world_ready() -> bool:
    """Whether the shipped toy world (with its trained HyperLoRA) is there."""
    from hyperlora_core.toy import files

    return all(files.part_path(part).is_file() for part in files.FILES)


def _read(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.uint8)


def _saved(server, result, node: str) -> Path:
    images = result.outputs[node]["images"]
    return server.output_dir / images[0]["subfolder"] / images[0]["filename"]


def run_toy_demo(comfy: Path, server_mod, out: Path, identities: int = 24, seed: int = 11, steps: int = 20,
                 timeout: float = 3600) -> int:
    import torch

    from hyperlora_core.toy import files, world
    from hyperlora_core.toy.encoders import AttributeJudge
    from hyperlora_core.toy.evaluate import Row, ToyEval
    from hyperlora_core.toy.workflow import WORLD, setup_demo
    from workflows.graph import api_format
    from workflows.library import TOY_SAVE_WITH, TOY_SAVE_WITHOUT, toy_world

    base = out / "comfy"
    paths = setup_demo(base, identities=identities, refs=max(REFS))
    photos = paths["photo_names"]
    per_identity = max(REFS)
    count = len(photos) // per_identity
    ident = [int(Path(p).stem.split("_")[1]) for p in photos[::per_identity]]
    say(f"toy world (models/toy) linked into {base / 'models'}; reference photos of {count} held-out identities "
        f"in {base / 'input' / 'toy_world'}")
    server = server_mod.ComfyServer(comfy, base, packs={"comfyui-hyperlora": ROOT}, output_dir=out / "images")
    images: dict[str, list[np.ndarray]] = {"no LoRA": [], **{f"ID-LoRA x{k}": [] for k in REFS}}
    t0 = time.monotonic()
    with server:
        say(f"ComfyUI {comfy} started at {server.url} in {time.monotonic() - t0:.1f} s (log: {server.log_path})")
        t1 = time.monotonic()
        for i in range(count):
            names = photos[i * per_identity:(i + 1) * per_identity]
            for k in REFS:
                prefix = f"toy/identity{ident[i]:04d}_{k}ref"
                graph = api_format(toy_world(names[:k], seed=seed + i, world=WORLD, prefix=prefix, batch=1,
                                             compare=k == REFS[0], display_scale=1, steps=steps))
                result = server.run(graph, timeout=timeout)
                if result.error:
                    say(f"identity {ident[i]}, {k} photo(s): the prompt failed: "
                        + str(result.error.get("exception_message", result.error)))
                    return 1
                images[f"ID-LoRA x{k}"].append(_read(_saved(server, result, str(TOY_SAVE_WITH))))
                if k == REFS[0]:
                    images["no LoRA"].append(_read(_saved(server, result, str(TOY_SAVE_WITHOUT))))
            if i == 0 or (i + 1) % 8 == 0 or i + 1 == count:
                say(f"{i + 1}/{count} identities queued and done ({time.monotonic() - t1:.0f} s)")
        say(f"{count * len(REFS)} prompts ran through POST /prompt in {time.monotonic() - t1:.1f} s")
    judge = files.load_module(AttributeJudge(), "judge")
    truth = torch.from_numpy(world.all_attributes()[ident])

    def matches(stack: list[np.ndarray]) -> np.ndarray:
        x = torch.from_numpy(np.stack(stack)).permute(0, 3, 1, 2).float() / 255.0
        with torch.no_grad():
            return (judge.predict(x) == truth).numpy()

    rows = [Row("no LoRA", 0, 0.0, matches(images["no LoRA"]))]
    rows += [Row("ID-LoRA", k, 1.0, matches(images[f"ID-LoRA x{k}"])) for k in REFS]
    refs = np.stack([_read(base / "input" / name) for name in photos[::per_identity]])
    result = ToyEval(rows, np.asarray(ident), {k: np.stack(v) for k, v in images.items()}, refs)
    grid = result.save_grid(out / "toy_demo_grid.png")
    print()
    print(f"Held-out identity match ({count} identities never seen in training; judge: the toy attribute "
          "classifier; empty caption, the same seed with and without the LoRA):")
    print(result.table())
    print()
    say(f"grid (references / with the 1-photo LoRA / without): {grid}")
    say(f"images: {server.output_dir / 'toy'}")
    print(result.summary_line())
    return 0
