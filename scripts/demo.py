"""`make demo`: the main job end to end through ComfyUI's HTTP API.

Starts the ComfyUI host with this pack, queues the shipped text-to-image workflow
(workflows/api/hyperlora_t2i_one_photo.json) plus a Save-LoRA node, and writes the image and the
generated LoRA under output/demo/.

* Real models, when all are in the host's model folders (SDXL checkpoint in models/checkpoints, CLIP
  ViT-L/14 in models/clip_vision, a HyperLoRA checkpoint in models/hyper_lora, the antelopev2 pack
  in models/insightface/models) and a face photo is given (--photo, or the host's input/face_1.png).
* Otherwise the toy world shipped in models/toy (`scripts/toy_demo.py`): reference photos of
  held-out synthetic identities -> the toy HyperLoRA -> images with and without the LoRA, judged,
  with the identity-match table, a grid PNG and `heldout_match_with_lora=<x> without=<y>` last.
* With --standins (or without a toy world): tiny random stand-ins it creates (an SDXL-architecture UNet, text encoders, VAE and CLIP
  vision of small width, a random HyperLoRA checkpoint, stand-in face models and a synthetic photo):
  every node and ComfyUI code path is the real one, the picture is noise. It says so.
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

from scripts.comfy_env import ROOT, boot_comfy, comfyui_path

WORKFLOW = "hyperlora_t2i_one_photo"
OUT = ROOT / "output" / "demo"


def say(msg: str) -> None:
    print(f"[demo] {msg}", flush=True)


# -- what is there ---------------------------------------------------------------------------------
def find_real_models(comfy: Path, photo: str | None) -> tuple[dict, list[str]]:
    """Names of the real models in the host's model folders, and what is missing."""
    from hyperlora_core.standins import is_standin_pack

    models = comfy / "models"
    found, missing = {}, []

    def first(folder: Path, pattern: str, prefer: str | None = None) -> str | None:
        if prefer and (folder / prefer).is_file():
            return prefer
        hits = sorted(p.relative_to(folder).as_posix() for p in folder.glob(pattern)) if folder.is_dir() else []
        return hits[0] if hits else None

    found["ckpt"] = first(models / "checkpoints", "*.safetensors", "sd_xl_base_1.0.safetensors")
    found["clip_vision"] = first(models / "clip_vision", "*.safetensors", "clip_vit_large_patch14.safetensors")
    hyper = models / "hyper_lora"
    fidelity = "sdxl_hyper_id_lora_v1_fidelity"
    if (hyper / fidelity / "hyper_lora_modules.json").is_file():
        found["hyperlora"] = fidelity
    elif (hyper / "hyper_lora" / fidelity / "hyper_lora_modules.json").is_file():
        found["hyperlora"] = f"hyper_lora/{fidelity}"
    else:
        found["hyperlora"] = first(hyper, "*.safetensors")
    pack = models / "insightface" / "models" / "antelopev2"
    found["faces"] = "antelopev2" if pack.is_dir() and any(pack.glob("*.onnx")) and not is_standin_pack(pack) else None
    default_photo = comfy / "input" / "face_1.png"
    found["photo"] = photo or (str(default_photo) if default_photo.is_file() else None)
    labels = {"ckpt": "SDXL checkpoint (models/checkpoints)", "clip_vision": "CLIP ViT-L/14 (models/clip_vision)",
              "hyperlora": "HyperLoRA checkpoint (models/hyper_lora)", "faces": "antelopev2 (models/insightface/models)",
              "photo": "a face photo (--photo)"}
    missing = [labels[k] for k, v in found.items() if not v]
    return found, missing


# -- the two set-ups -----------------------------------------------------------------------------------
def standin_setup(base: Path) -> tuple[dict, Path]:
    """Tiny models, stand-in face pack and a synthetic photo inside a private ComfyUI base folder."""
    from hyperlora_core import standins

    models = base / "models"
    standins.write_tiny_checkpoint(models / "hyper_lora" / "tiny_standin.safetensors", seed=1)
    standins.write_tiny_face_pack(models / "insightface" / "models" / "antelopev2")
    inputs = base / "input"
    inputs.mkdir(parents=True, exist_ok=True)
    standins.face_photo(0).save(inputs / "face_1.png")
    return {"tiny_checkpoint": "tiny_standin.safetensors"}, inputs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photo", help="a face photo for the real models")
    parser.add_argument("--toy", action="store_true", help="use the toy world even if real models exist")
    parser.add_argument("--standins", action="store_true",
                        help="use tiny random stand-ins (every node, noise pictures) instead of real models or the toy world")
    parser.add_argument("--identities", type=int, default=24, help="toy world: held-out identities to test")
    parser.add_argument("--base", default=None,
                        help="toy world: its base model, unet (default: the SDXL-architecture UNet) or dit (the "
                             "FLUX-architecture DiT), each with its own HyperLoRA")
    parser.add_argument("--seed", type=int, default=11, help="toy world: first sampler seed (one per identity)")
    parser.add_argument("--steps", type=int, default=None, help="sampler steps (default: 20 real, 2 stand-ins)")
    parser.add_argument("--size", type=int, default=None, help="image side in px (default: 1024 real, 64 stand-ins)")
    parser.add_argument("--timeout", type=float, default=3600)
    parser.add_argument("--out", default=str(OUT), help="output folder (default output/demo)")
    args = parser.parse_args(argv)
    out = Path(args.out)

    comfy = comfyui_path()
    if not (comfy / "main.py").is_file():
        say(f"no ComfyUI at {comfy}; run `make setup` or set COMFYUI_PATH.")
        return 2
    boot_comfy(cpu=True)  # in this process only to write the stand-ins; the server picks its own device
    import json

    import torch

    from scripts import comfy_server as server_mod
    from scripts import standin_graphs as flows

    prompt = json.loads((ROOT / "workflows" / "api" / f"{WORKFLOW}.json").read_text())
    found, missing = find_real_models(comfy, args.photo)
    real = not missing and not args.standins and not args.toy
    shutil.rmtree(out / "comfy", ignore_errors=True)
    base = out / "comfy"
    out.mkdir(parents=True, exist_ok=True)
    from scripts.toy_demo import run_toy_demo, toy_world_ready

    if not real and not args.standins:
        if toy_world_ready(args.base):
            if not args.toy:
                say("real models not used (missing: " + "; ".join(missing) + ").")
            kind = "FLUX-architecture DiT (flow matching)" if args.base == "dit" else "SDXL-architecture"
            say(f"running on the TOY WORLD shipped in models/toy: a tiny synthetic {kind} world and a "
                "HyperLoRA trained on it by this pack's trainer (`make toy-world`).")
            shutil.rmtree(out / "images" / "toy", ignore_errors=True)
            return run_toy_demo(comfy, server_mod, out, identities=args.identities, seed=args.seed,
                                steps=args.steps or 20, timeout=args.timeout, base=args.base)
        if args.base:
            say(f"the toy world in models/toy has no '{args.base}' base (build it with `make toy-world BASE="
                f"{args.base}`).")
            return 2
        say("the toy world is not in models/toy (rebuild it with `make toy-world`); falling back to stand-ins.")
    if real:
        say("using the real models: " + ", ".join(f"{k}={v}" for k, v in found.items() if k != "photo"))
        inputs = base / "input"
        inputs.mkdir(parents=True, exist_ok=True)
        shutil.copy(found["photo"], inputs / "face_1.png")
        for node in prompt.values():
            kind, inp = node["class_type"], node["inputs"]
            if kind == "CheckpointLoaderSimple":
                inp["ckpt_name"] = found["ckpt"]
            elif kind == "CLIPVisionLoader":
                inp["clip_name"] = found["clip_vision"]
            elif kind == "HyperLoRACLIPVisionLoader":
                inp["clip_vision"] = found["clip_vision"]
            elif kind == "HyperLoRACheckpointLoader":
                inp["checkpoint"] = found["hyperlora"]
            elif kind == "EmptyLatentImage" and args.size:
                inp.update(width=args.size, height=args.size)
            elif kind == "KSampler" and args.steps:
                inp["steps"] = args.steps
            elif kind == "LoadImage":
                inp["image"] = "face_1.png"  # the given photo, not the template's sample
        yaml_path = server_mod.write_extra_model_paths(base / "extra_model_paths.yaml", comfy / "models", {
            name: name for name in ("checkpoints", "clip_vision", "hyper_lora", "insightface", "vae", "loras")})
        server = server_mod.ComfyServer(comfy, base, extra_model_paths=yaml_path, packs={"comfyui-hyperlora": ROOT},
                                        cpu=not torch.cuda.is_available(), output_dir=out)
    else:
        why = "--standins given" if args.standins else "missing: " + "; ".join(missing)
        say(f"real models not used ({why}).")
        say("running on TINY RANDOM STAND-INS created now (tiny SDXL-architecture UNet, text encoders, VAE, CLIP vision, "
            "a random HyperLoRA checkpoint, stand-in face models, a synthetic photo): the nodes and ComfyUI paths are the "
            "real ones, the image is noise.")
        names, _ = standin_setup(base)
        prompt = flows.for_tiny_models(prompt, names["tiny_checkpoint"], names["tiny_checkpoint"],
                                       size=args.size or 64, steps=args.steps or 2)
        server = server_mod.ComfyServer(comfy, base, output_dir=out)
    generate = flows.nodes_of(prompt, "HyperLoRAGenerateID")[0]
    prompt["900"] = {"class_type": "HyperLoRASave", "inputs": {"lora": [generate, 0], "filename_prefix": "hyperlora/demo_lora",
                                                               "dtype": "fp16", "notes": "made by make demo"}}
    t0 = time.monotonic()
    with server:
        say(f"ComfyUI {comfy} started at {server.url} in {time.monotonic() - t0:.1f} s (log: {server.log_path})")
        t1 = time.monotonic()
        result = server.run(prompt, timeout=args.timeout)
        if result.error:
            say("the prompt failed: " + str(result.error.get("exception_message", result.error)))
            return 1
        say(f"{WORKFLOW} ran in {time.monotonic() - t1:.1f} s through POST /prompt")
        images = [server.output_dir / i["subfolder"] / i["filename"] for n in flows.nodes_of(prompt, "SaveImage")
                  for i in result.outputs[n]["images"]]
        loras = [server.output_dir / e["subfolder"] / e["filename"] for e in result.outputs["900"]["loras"]]
    for p in images:
        say(f"image: {p}")
    for p in loras:
        say(f"LoRA:  {p}  (kohya .safetensors; any LoRA loader reads it)")
    if not real:
        say("for a real result put the models listed above into ComfyUI's model folders and run "
            "`make demo DEMO_ARGS='--photo your_face.png'` (or .venv/bin/python -m scripts.demo --photo your_face.png).")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
