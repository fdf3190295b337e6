"""`make demo` on the toy world: never-seen identities personalised through ComfyUI's HTTP API.

Used by `scripts/demo.py` when the real models are not in ComfyUI's model folders. It starts the
ComfyUI host with this pack, links the shipped toy world (models/toy) into a private models folder,
writes reference photos of held-out identities (no training stage ever saw them) into its input
folder and, per identity, queues the toy template's graph (`workflows.library.toy_world`, with LoadImage
nodes for the photos: LoadImage -> HyperLoRA Toy Encode -> HyperLoRA Generate ID LoRA -> HyperLoRA Apply
on the Toy World Loader's MODEL -> KSampler -> VAEDecode -> SaveImage) with one and with four reference
photos, plus the same seed without the LoRA. When the world's HyperLoRA has a Base-LoRA branch it also
queues the edit graph (`workflows.library.toy_world_edit`: Toy Encode Base -> Generate Base LoRA -> Apply
with both LoRAs) with two captions naming a shirt and a background the photo does not have. The saved
images are then read back and judged by the toy world's attribute classifier and base-factor judge
(networks the HyperLoRA never reads): the identity-match table, the editing table, a grid PNG
(reference / ID-LoRA / ID-LoRA with caption 1 / with caption 2 / ID + Base / no LoRA) and, last,
`heldout_match_with_lora=<x> without=<y>`.

`base` "dit" (`make demo BASE=dit`, `python -m scripts.toy_demo --base dit`) runs the same on the world's DiT
(a tiny FLUX-architecture model trained with flow matching) and its own HyperLoRA: the graphs' Toy World Loader
picks that base, their KSampler its profile's scheduler.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from PIL import Image

from scripts.comfy_env import ROOT

REFS = (1, 4)
GRID_ROWS = ("reference", "ID-LoRA x1", "ID-LoRA, caption 1", "ID-LoRA, caption 2", "ID + Base", "no LoRA")
"""The demo grid's rows, top to bottom (the edit rows only for a world whose HyperLoRA has a Base branch)."""


def say(msg: str) -> None:
    print(f"[demo] {msg}", flush=True)


def toy_world_ready(base: str | None = None) -> bool:
    """Whether the shipped toy world (with its trained HyperLoRA) is there, with the base `base` (None: the UNet)."""
    from hyperlora_core.toy import files
    from hyperlora_core.toy.models import toy_base

    parts = [*files.FILES, *toy_base(base).parts.values()]
    return all(files.part_path(part).is_file() for part in parts)


def _read(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.uint8)


def _saved(server, result, node: str) -> Path:
    images = result.outputs[node]["images"]
    return server.output_dir / images[0]["subfolder"] / images[0]["filename"]


EDIT_SEEDS = (3, 4)
"""Seeds of the two editing captions per identity (`study.edit_factors`: factors the photo does not have)."""


def run_toy_demo(comfy: Path, server_mod, out: Path, identities: int = 24, seed: int = 11, steps: int = 20,
                 timeout: float = 3600, base: str | None = None) -> int:
    from hyperlora_core.model import HyperLoRA
    from hyperlora_core.toy import files, world
    from hyperlora_core.toy.measure import Heldout, Judgements, Judges, edit_factors, summary_line
    from hyperlora_core.toy.models import toy_base
    from hyperlora_core.toy.workflow import WORLD, setup_demo
    from workflows.graph import api_format, outputs
    from workflows.library import TOY_ID_BASE, TOY_WITH, TOY_WITHOUT, toy_edit_output, toy_world, toy_world_edit

    paths = setup_demo(out / "comfy", identities=identities, refs=max(REFS))
    photos = paths["photo_names"]
    per_identity = max(REFS)
    count = len(photos) // per_identity
    ident = [int(Path(p).stem.split("_")[1]) for p in photos[::per_identity]]
    photo_factors = paths["base_factors"][::per_identity]  # background, pattern, shirt of each first photo
    edits = [edit_factors(photo_factors, seed) for seed in EDIT_SEEDS]
    for i in np.flatnonzero((edits[1] == edits[0]).all(1)):  # two different captions: another shirt colour
        edits[1][i, 2] = next(v for v in range(world.BASE_FACTOR_SIZES[2]) if v not in (photo_factors[i, 2], edits[0][i, 2]))
    captions = [[", ".join(world.base_phrases(e[i])) for e in edits] for i in range(count)]
    model = toy_base(base)
    with_base = HyperLoRA.from_pretrained(files.part_path(model.parts["hyperlora"])).config.has_base
    comfy_dir = out / "comfy"
    say(f"toy world (models/toy, base: {model.description}) linked into {comfy_dir / 'models'}; reference photos of "
        f"{count} held-out identities in {comfy_dir / 'input' / 'toy_world'}")
    server = server_mod.ComfyServer(comfy, comfy_dir, packs={"comfyui-hyperlora": ROOT}, output_dir=out / "images")
    labels = ["no LoRA", *(f"ID-LoRA x{k}" for k in REFS)]
    if with_base:
        labels += ["ID-LoRA, caption 1", "ID-LoRA, caption 2", "ID + Base"]
    images: dict[str, list[np.ndarray]] = {label: [] for label in labels}
    prompts = 0
    t0 = time.monotonic()
    with server:
        say(f"ComfyUI {comfy} started at {server.url} in {time.monotonic() - t0:.1f} s (log: {server.log_path})")
        t1 = time.monotonic()
        for i in range(count):
            names = photos[i * per_identity:(i + 1) * per_identity]
            graphs = [(f"{k} photo(s)", toy_world(
                names[:k], seed=seed + i, world=WORLD, prefix=f"toy/identity{ident[i]:04d}_{k}ref", batch=1,
                compare=k == REFS[0], display_scale=1, steps=steps, base=base),
                {TOY_WITH: f"ID-LoRA x{k}", **({TOY_WITHOUT: "no LoRA"} if k == REFS[0] else {})}) for k in REFS]
            if with_base:
                graphs.append(("editing captions", toy_world_edit(
                    names[:1], captions[i], seed=seed + i, batch=1, world=WORLD, prefix=f"toy/identity{ident[i]:04d}_edit",
                    display_scale=1, steps=steps, base=base),
                    {TOY_ID_BASE: "ID + Base", toy_edit_output(0): "ID-LoRA, caption 1",
                     toy_edit_output(1): "ID-LoRA, caption 2"}))
            for what, nodes, saved in graphs:
                result = server.run(api_format(nodes), timeout=timeout)
                prompts += 1
                if result.error:
                    say(f"identity {ident[i]}, {what}: the prompt failed: "
                        + str(result.error.get("exception_message", result.error)))
                    return 1
                node_of = outputs(nodes)
                for name, label in saved.items():
                    images[label].append(_read(_saved(server, result, node_of[name])))
            if i == 0 or (i + 1) % 8 == 0 or i + 1 == count:
                say(f"{i + 1}/{count} identities queued and done ({time.monotonic() - t1:.0f} s)")
        say(f"{prompts} prompts ran through POST /prompt in {time.monotonic() - t1:.1f} s")
    # the photos written are the held-out set `toy.measure` makes (the same identities, renders and order)
    judges = Judges.load()
    from hyperlora_core.toy.world_loader import ToyWorld

    held = Heldout.make(ToyWorld.load().conditioner, count=count, refs=max(REFS))
    if list(held.identities) != ident:
        raise RuntimeError(f"the demo's photos are of identities {ident[:4]}..., not the held-out set {held.identities[:4]}...")
    result = Judgements(held)
    for label in labels:
        result.add(label, np.stack(images[label]), judges, keep=True)
    shown = [label for label in GRID_ROWS if label == "reference" or label in images]
    grid = result.grid(out / "toy_demo_grid.png", rows=shown)
    print()
    print(f"Held-out identity match ({count} identities never seen in training; judge: the toy attribute "
          "classifier; empty caption, the same seed with and without the LoRA):")
    print(result.table(["no LoRA", *(f"ID-LoRA x{k}" for k in REFS)]))
    lift = result.difference("ID-LoRA x1", "no LoRA")
    print(f"lift of the 1-photo ID-LoRA over no LoRA: {lift.mean:+.3f}, 95 % CI [{lift.low:+.3f}, {lift.high:+.3f}] "
          f"(bootstrap over the {count} identities)")
    if with_base:
        wanted = {f"ID-LoRA, caption {k + 1}": k for k in range(len(EDIT_SEEDS))}
        print()
        print("Editing (background colour, pattern and shirt, read by the base-factor judge; the captions name ones "
              "the photo does not have):")
        print("| images | caption | ID match | = the photo's | = the caption's |")
        print("|---|---|---|---|---|")
        for label in ("no LoRA", "ID-LoRA x1", "ID-LoRA, caption 1", "ID-LoRA, caption 2", "ID + Base"):
            k = wanted.get(label)
            caption = "empty" if k is None else f"e.g. '{captions[0][k]}'"
            follow = "-" if k is None else f"{float(result.factor_match(label, edits[k]).mean()):.3f}"
            print(f"| {label} | {caption} | {result.mean(label):.3f} | "
                  f"{float(result.factor_match(label, photo_factors).mean()):.3f} | {follow} |")
    print()
    say(f"grid (rows: {', '.join(shown)}; one column per identity): {grid}")
    say(f"images: {server.output_dir / 'toy'}")
    print(summary_line(result.mean("ID-LoRA x1"), result.mean("no LoRA")))
    return 0


if __name__ == "__main__":  # `python -m scripts.toy_demo [--base dit] ...`: `make demo`'s toy path, on the toy world
    import sys

    from scripts.demo import main

    raise SystemExit(main(["--toy", *sys.argv[1:]]))
