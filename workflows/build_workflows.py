"""Builds the example workflows in this folder, in both of ComfyUI's formats, from one description each.

    .venv/bin/python workflows/build_workflows.py          # rewrite workflows/*.json
    .venv/bin/python workflows/build_workflows.py --check  # exit 1 if a file is out of date

`<name>.json` is the graph-editor (UI) format ComfyUI serves as a template (Workflow -> Browse
Templates, under this pack); `api/<name>.json` is the API format for `POST /prompt`. The UI form is
derived from the node definitions the host reports (widget order, sockets, output types), so the
two files always describe the same graph; a test runs the API files on the real server and the
browser test loads the UI files into the real frontend and compares its API export with them.
"""

from __future__ import annotations

import argparse
import json
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

TRIGGER = "fcsks fxhks fhyks, "
POSITIVE = TRIGGER + "a portrait photo of a person, upper body, soft natural light, detailed skin, 85mm lens"
NEGATIVE = "lowres, blurry, bad anatomy, bad hands, watermark, text, jpeg artifacts, deformed"

SDXL = {"name": "sd_xl_base_1.0.safetensors", "directory": "checkpoints",
        "url": "https://huggingface.co/stabilityai/stable-diffusion-xl-base-1.0/resolve/main/sd_xl_base_1.0.safetensors"}
CLIP_L = {"name": "clip_vit_large_patch14.safetensors", "directory": "clip_vision",
          "url": "https://huggingface.co/openai/clip-vit-large-patch14/resolve/main/model.safetensors"}
HYPERLORA = "sdxl_hyper_id_lora_v1_fidelity"
HYPERLORA_FILES = [
    {"name": f"{HYPERLORA}/{f}", "directory": "hyper_lora",
     "url": f"https://huggingface.co/bytedance-research/HyperLoRA/resolve/main/{HYPERLORA}/{f}"}
    for f in ("hyper_lora_modules.safetensors", "resampler.safetensors", "id_projector.safetensors")
]


@dataclass
class N:
    """One node: id, type, inputs (a literal, or `L(node, slot)` for a link), grid position."""

    id: int
    type: str
    inputs: dict
    col: int
    row: float
    title: str | None = None
    models: list = field(default_factory=list)


@dataclass(frozen=True)
class L:
    node: int
    slot: int = 0


# -- the shared pieces -------------------------------------------------------------------------
def sdxl_base(first_id: int = 1) -> list[N]:
    """Checkpoint, CLIP skip -2, prompts, latent: ids first_id .. first_id+4."""
    i = first_id
    return [
        N(i, "CheckpointLoaderSimple", {"ckpt_name": SDXL["name"]}, 0, 0, models=[SDXL]),
        N(i + 1, "CLIPSetLastLayer", {"clip": L(i, 1), "stop_at_clip_layer": -2}, 1, 0, "CLIP skip -2 (as trained)"),
        N(i + 2, "CLIPTextEncode", {"text": POSITIVE, "clip": L(i + 1)}, 2, 0,
          "Prompt (starts with the trigger words)"),
        N(i + 3, "CLIPTextEncode", {"text": NEGATIVE, "clip": L(i + 1)}, 2, 1.1, "Negative prompt"),
        N(i + 4, "EmptyLatentImage", {"width": 1024, "height": 1024, "batch_size": 1}, 2, 2.2),
    ]


def hyperlora_models(first_id: int) -> list[N]:
    """HyperLoRA checkpoint, face models, CLIP vision: ids first_id .. first_id+2."""
    i = first_id
    return [
        N(i, "HyperLoRACheckpointLoader", {"checkpoint": HYPERLORA, "dtype": "auto"}, 0, 2, models=HYPERLORA_FILES),
        N(i + 1, "HyperLoRAFaceAnalysisLoader", {"pack": "antelopev2", "provider": "auto"}, 0, 3),
        N(i + 2, "CLIPVisionLoader", {"clip_name": CLIP_L["name"]}, 0, 4, models=[CLIP_L]),
    ]


def encode_generate(first_id: int, photos: L, models: int, col: int, row: float, weights: str = "",
                    title: str | None = None) -> list[N]:
    """Encode ID + Generate ID LoRA (+ crop preview): ids first_id .. first_id+2; LoRA at first_id+1."""
    i = first_id
    return [
        N(i, "HyperLoRAEncodeID", {"photos": photos, "face_analysis": L(models + 1), "clip_vision": L(models + 2),
                                   "weights": weights, "remove_background": True, "grayscale": False,
                                   "face_index": -1, "on_no_face": "error"}, col, row, title),
        N(i + 1, "HyperLoRAGenerateID", {"hyper_lora": L(models), "id_cond": L(i), "allow_other_face_pack": False},
          col + 1, row),
        N(i + 2, "PreviewImage", {"images": L(i, 1)}, col + 1, row + 1, "Face crops CLIP saw"),
    ]


def sample_and_save(first_id: int, model: L, base: int, prefix: str, col: int) -> list[N]:
    i = first_id
    return [
        N(i, "KSampler", {"model": model, "seed": 42, "steps": 20, "cfg": 5.0, "sampler_name": "dpmpp_2m",
                          "scheduler": "karras", "positive": L(base + 2), "negative": L(base + 3),
                          "latent_image": L(base + 4), "denoise": 1.0}, col, 0),
        N(i + 1, "VAEDecode", {"samples": L(i), "vae": L(base, 2)}, col + 1, 0),
        N(i + 2, "SaveImage", {"images": L(i + 1), "filename_prefix": prefix}, col + 2, 0),
    ]


def load(i: int, name: str, col: int, row: float, title: str | None = None) -> N:
    return N(i, "LoadImage", {"image": name}, col, row, title)


# -- the workflows -----------------------------------------------------------------------------
def t2i_one_photo() -> list[N]:
    return [
        *sdxl_base(1), *hyperlora_models(6),
        load(9, "face_1.png", 0, 5, "Photo of the person"),
        *encode_generate(10, L(9), 6, 1, 3),
        N(13, "HyperLoRAApply", {"model": L(1), "lora": L(11), "strength": 0.85, "base_strength": 0.0}, 3, 3),
        *sample_and_save(14, L(13), 1, "hyperlora/one_photo", 4),
    ]


def t2i_several_photos() -> list[N]:
    return [
        *sdxl_base(1), *hyperlora_models(6),
        load(9, "face_1.png", 0, 5, "Photo 1"),
        load(10, "face_2.png", 0, 7, "Photo 2"),
        load(11, "face_3.png", 0, 9, "Photo 3"),
        N(12, "ImageBatch", {"image1": L(9), "image2": L(10)}, 1, 6),
        N(13, "ImageBatch", {"image1": L(12), "image2": L(11)}, 1, 7),
        *encode_generate(14, L(13), 6, 2, 3, weights="1, 1, 1", title="Encode ID (one weight per photo)"),
        N(17, "HyperLoRAApply", {"model": L(1), "lora": L(15), "strength": 0.85, "base_strength": 0.0}, 4, 3),
        *sample_and_save(18, L(17), 1, "hyperlora/several_photos", 5),
    ]


def interpolate_two_people() -> list[N]:
    return [
        *sdxl_base(1), *hyperlora_models(6),
        load(9, "person_a.png", 0, 5, "Person A"),
        load(10, "person_b.png", 0, 7, "Person B"),
        *encode_generate(11, L(9), 6, 1, 3, title="Encode person A"),
        *encode_generate(14, L(10), 6, 1, 6, title="Encode person B"),
        N(17, "HyperLoRAInterpolate", {"lora_a": L(12), "lora_b": L(15), "t": 0.5, "mode": "factors"}, 3, 4,
          "A -> B (t = 0.5: halfway)"),
        N(18, "HyperLoRAApply", {"model": L(1), "lora": L(17), "strength": 0.85, "base_strength": 0.0}, 4, 3),
        *sample_and_save(19, L(18), 1, "hyperlora/interpolated", 5),
    ]


def concept_slider() -> list[N]:
    return [
        *sdxl_base(1), *hyperlora_models(6),
        load(9, "face_1.png", 0, 5, "The person"),
        load(10, "slider_a.png", 0, 7, "Slider start (e.g. neutral)"),
        load(11, "slider_b.png", 0, 9, "Slider end (e.g. smiling)"),
        *encode_generate(12, L(9), 6, 1, 3, title="Encode the person"),
        *encode_generate(15, L(10), 6, 1, 6, title="Encode slider start"),
        *encode_generate(18, L(11), 6, 1, 9, title="Encode slider end"),
        N(21, "HyperLoRAConceptSlider", {"lora_a": L(16), "lora_b": L(19), "scale": 1.0}, 3, 7, "Slider: scale x (end - start)"),
        N(22, "HyperLoRAApply", {"model": L(1), "lora": L(13), "strength": 0.85, "base_strength": 0.0}, 3, 3,
          "Apply the ID-LoRA"),
        N(23, "HyperLoRAApply", {"model": L(22), "lora": L(21), "strength": 0.7, "base_strength": 0.0}, 4, 4,
          "Apply the slider"),
        *sample_and_save(24, L(23), 1, "hyperlora/slider", 5),
    ]


def save_lora() -> list[N]:
    return [
        *hyperlora_models(1),
        load(4, "face_1.png", 0, 5, "Photo 1"),
        load(5, "face_2.png", 0, 7, "Photo 2"),
        N(6, "ImageBatch", {"image1": L(4), "image2": L(5)}, 1, 5),
        *encode_generate(7, L(6), 1, 2, 2),
        N(10, "HyperLoRASave", {"lora": L(8), "filename_prefix": "hyperlora/my_face", "dtype": "fp16",
                                "notes": "made from two photos"}, 4, 2, "Save LoRA (output/hyperlora/)"),
    ]


def one_click() -> list[N]:
    return [
        *sdxl_base(1),
        load(6, "face_1.png", 0, 3, "Photo of the person"),
        N(7, "HyperLoRAOneClick", {"model": L(1), "photos": L(6), "strength": 0.85, "checkpoint": HYPERLORA,
                                   "clip_vision": CLIP_L["name"], "face_pack": "antelopev2"}, 1, 2,
          models=[*HYPERLORA_FILES, CLIP_L]),
        N(8, "PreviewImage", {"images": L(7, 2)}, 2, 4, "Face crops CLIP saw"),
        *sample_and_save(9, L(7), 1, "hyperlora/one_click", 3),
    ]


TOY_WORLD = "(built-in) models/toy"


def toy_world() -> list[N]:
    """The shipped toy world end to end, nothing to download: a never-seen identity's photo -> its
    ID-LoRA -> four samples with it and the same four seeds without it (empty caption)."""
    sampler = {"seed": 11, "steps": 20, "cfg": 1.0, "sampler_name": "euler", "scheduler": "karras",
               "positive": L(7), "negative": L(8), "latent_image": L(9), "denoise": 1.0}
    return [
        N(1, "HyperLoRAToyWorldLoader", {"world": TOY_WORLD}, 0, 0),
        N(2, "HyperLoRAToyPhotos", {"identity": 0, "photos": 1, "variation": 0, "scale": 4}, 0, 2,
          "Photos of a never-seen identity"),
        N(3, "PreviewImage", {"images": L(2)}, 1, 3.2, "Reference photo"),
        N(5, "HyperLoRAToyEncode", {"photos": L(2), "world": TOY_WORLD, "weights": ""}, 1, 2),
        N(6, "HyperLoRAGenerateID", {"hyper_lora": L(1, 3), "id_cond": L(5), "allow_other_face_pack": False}, 2, 2),
        N(16, "HyperLoRAApply", {"model": L(1), "lora": L(6), "strength": 1.0, "base_strength": 0.0}, 3, 2),
        N(7, "CLIPTextEncode", {"text": "", "clip": L(1, 1)}, 1, 0, "Caption (empty: only the LoRA carries identity)"),
        N(8, "CLIPTextEncode", {"text": "", "clip": L(1, 1)}, 1, 1, "Negative caption"),
        N(9, "EmptyLatentImage", {"width": 128, "height": 128, "batch_size": 4}, 2, 0,
          "128 px here = the toy's 16 x 16 latent (32 px images)"),
        N(10, "KSampler", {"model": L(16), **sampler}, 4, 2, "With the ID-LoRA"),
        N(11, "VAEDecode", {"samples": L(10), "vae": L(1, 2)}, 5, 2),
        N(12, "SaveImage", {"images": L(11), "filename_prefix": "hyperlora/toy_with_lora"}, 6, 2),
        N(13, "KSampler", {"model": L(1), **sampler}, 4, 0, "Same seeds, no LoRA"),
        N(14, "VAEDecode", {"samples": L(13), "vae": L(1, 2)}, 5, 0),
        N(15, "SaveImage", {"images": L(14), "filename_prefix": "hyperlora/toy_without_lora"}, 6, 0),
    ]


WORKFLOWS = {
    "hyperlora_t2i_one_photo": t2i_one_photo,
    "hyperlora_t2i_several_photos": t2i_several_photos,
    "hyperlora_interpolate_two_people": interpolate_two_people,
    "hyperlora_concept_slider": concept_slider,
    "hyperlora_save_lora": save_lora,
    "hyperlora_one_click": one_click,
    "hyperlora_toy_world": toy_world,
}
PHOTOS = ("face_1.png", "face_2.png", "face_3.png", "person_a.png", "person_b.png", "slider_a.png", "slider_b.png")
"""Every image name the workflows load (put your own photos under these names, or pick others)."""


# -- API format --------------------------------------------------------------------------------
def api_format(nodes: list[N]) -> dict:
    out = {}
    for n in nodes:
        inputs = {k: [str(v.node), v.slot] if isinstance(v, L) else v for k, v in n.inputs.items()}
        out[str(n.id)] = {"class_type": n.type, "inputs": inputs, "_meta": {"title": n.title or n.type}}
    return out


# -- UI format ---------------------------------------------------------------------------------
WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}


@dataclass(frozen=True)
class NodeInfo:
    inputs: list[tuple[str, str, dict]]  # name, type ("COMBO" for lists), options; required + optional
    outputs: list[tuple[str, str]]
    display_name: str


def node_info(cls, display_name: str) -> NodeInfo:
    spec = cls.INPUT_TYPES()
    inputs = []
    for group in ("required", "optional"):
        for name, entry in (spec.get(group) or {}).items():
            kind = "COMBO" if isinstance(entry[0], list) else entry[0]
            inputs.append((name, kind, entry[1] if len(entry) > 1 else {}))
    names = getattr(cls, "RETURN_NAMES", None) or cls.RETURN_TYPES
    return NodeInfo(inputs, list(zip(names, cls.RETURN_TYPES)), display_name)


def _is_widget(kind: str, opts: dict) -> bool:
    return kind in WIDGET_TYPES and not opts.get("forceInput")


def _size(info: NodeInfo) -> list[int]:
    sockets = sum(1 for _, k, o in info.inputs if not _is_widget(k, o))
    widgets = sum(1 for _, k, o in info.inputs if _is_widget(k, o))
    multiline = sum(1 for _, k, o in info.inputs if k == "STRING" and o.get("multiline"))
    return [320, 30 + 22 * max(sockets, len(info.outputs), 1) + 26 * widgets + 60 * multiline]


def ui_format(name: str, nodes: list[N], infos: dict[str, NodeInfo]) -> dict:
    by_id = {n.id: n for n in nodes}
    links, ui_nodes = [], []
    out_links: dict[tuple[int, int], list[int]] = {}
    order = _topological(nodes)
    for n in nodes:
        info = infos[n.type]
        ins, widgets = [], []
        for inp_name, kind, opts in info.inputs:
            value = n.inputs.get(inp_name)
            if _is_widget(kind, opts) and not isinstance(value, L):
                if inp_name not in n.inputs:
                    value = opts.get("default")
                widgets.append(value)
                if opts.get("control_after_generate"):
                    widgets.append("fixed")
                if opts.get("image_upload"):
                    widgets.append("image")
                continue
            link_id = None
            if isinstance(value, L):
                link_id = len(links) + 1
                src_type = infos[by_id[value.node].type].outputs[value.slot][1]
                links.append([link_id, value.node, value.slot, n.id, len(ins), src_type])
                out_links.setdefault((value.node, value.slot), []).append(link_id)
            entry = {"name": inp_name, "type": kind, "link": link_id}
            if _is_widget(kind, opts):
                entry["widget"] = {"name": inp_name}
            ins.append(entry)
        props = {"Node name for S&R": n.type}
        if n.models:
            props["models"] = n.models
        node = {"id": n.id, "type": n.type, "pos": [40 + 400 * n.col, 40 + 180 * n.row], "size": _size(info),
                "flags": {}, "order": order[n.id], "mode": 0, "inputs": ins, "outputs": [],
                "properties": props, "widgets_values": widgets}
        if n.title:
            node["title"] = n.title
        ui_nodes.append(node)
    for node in ui_nodes:
        info = infos[node["type"]]
        node["outputs"] = [{"name": o_name, "type": o_type, "links": out_links.get((node["id"], k), []), "slot_index": k}
                           for k, (o_name, o_type) in enumerate(info.outputs)]
    models = [m for n in nodes for m in n.models]
    return {
        "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"comfyui-hyperlora/{name}")),
        "revision": 0,
        "last_node_id": max(by_id),
        "last_link_id": len(links),
        "nodes": ui_nodes,
        "links": links,
        "groups": [],
        "config": {},
        "extra": {"ds": {"scale": 0.7, "offset": [90, 60]}},
        "models": list({m["name"]: m for m in models}.values()),
        "version": 0.4,
    }


def _topological(nodes: list[N]) -> dict[int, int]:
    deps = {n.id: {v.node for v in n.inputs.values() if isinstance(v, L)} for n in nodes}
    order, done = {}, set()
    while len(done) < len(nodes):
        ready = sorted(i for i, d in deps.items() if i not in done and d <= done)
        if not ready:
            raise ValueError("cycle in workflow")
        for i in ready:
            order[i] = len(order)
            done.add(i)
    return order


# -- host node definitions ---------------------------------------------------------------------
def host_node_infos(types: set[str]) -> dict[str, NodeInfo]:
    """Node definitions as the host reports them (ComfyUI's core nodes + this pack, in-process)."""
    from scripts.comfy_env import comfy_nodes as host_nodes
    from scripts.comfy_env import pack_nodes

    pack_nodes()
    comfy_nodes = host_nodes()
    missing = sorted(t for t in types if t not in comfy_nodes.NODE_CLASS_MAPPINGS)
    if missing:
        raise KeyError(f"node types not registered on the host: {missing}")
    return {t: node_info(comfy_nodes.NODE_CLASS_MAPPINGS[t], comfy_nodes.NODE_DISPLAY_NAME_MAPPINGS.get(t, t))
            for t in types}


def build_all(infos: dict[str, NodeInfo] | None = None) -> dict[Path, str]:
    graphs = {name: make() for name, make in WORKFLOWS.items()}
    if infos is None:
        infos = host_node_infos({n.type for g in graphs.values() for n in g})
    files = {}
    for name, nodes in graphs.items():
        files[HERE / f"{name}.json"] = json.dumps(ui_format(name, nodes, infos), indent=1) + "\n"
        files[HERE / "api" / f"{name}.json"] = json.dumps(api_format(nodes), indent=1) + "\n"
    return files


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="only check that the files are up to date")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from scripts.comfy_env import boot_comfy

    boot_comfy(cpu=True)
    files = build_all()
    stale = [p for p, text in files.items() if not p.is_file() or p.read_text() != text]
    if args.check:
        for p in stale:
            print(f"out of date: {p.relative_to(ROOT)}")
        return 1 if stale else 0
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    print(f"wrote {len(files)} files ({len(stale)} changed) in {HERE.relative_to(ROOT)}/")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
