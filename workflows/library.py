"""Every workflow this pack ships, described once.

The templates in this folder (graph editor + API format) and the toy graph `make demo` queues over
the API are built here and nowhere else, so their sampler settings, prompts and model names cannot
drift apart. Model file names and download addresses come from the manifest
(`hyperlora_core/models/manifest.json`).

Layout: `col` is a column of the editor, `row` orders the nodes within it (`ui.layout` stacks them).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from hyperlora_core.config import TRIGGER_WORDS
from hyperlora_core.models import download_entry, item
from hyperlora_core.models.check import FETCH_NODE

from .graph import L, N, note
from .sample_photos import ASTRONAUT, ASTRONAUT_2, ASTRONAUT_3, HOPPER, POSE

POSITIVE = TRIGGER_WORDS + "a portrait photo of a person, upper body, soft natural light, detailed skin, 85mm lens"
NEGATIVE = "lowres, blurry, bad anatomy, bad hands, watermark, text, jpeg artifacts, deformed"

HYPERLORA = item("hyperlora-fidelity")
CLIP_L = item("clip-vit-large-patch14")
FACES = item("antelopev2")
SDXL = item("sdxl-base")
CONTROLNET = item("controlnet-openpose-sdxl")
CHECKPOINT = HYPERLORA.main.target
"""The Loader's value for the published checkpoint: its main file, as the frontends match it."""
FACE_PACK = FACES.main.target.split("/", 1)[1]
"""'antelopev2/glintr100.onnx': the face pack as the Face Analysis Loader lists it (relative to insightface/models).
It has no download entry: insightface's zip is placed by hand (see the manifest), and ComfyUI's model lists
leave out .onnx files, so a frontend could not tell whether it is there."""
STYLE_LORA = "your_style_lora.safetensors"

TOY_SAMPLER = {"steps": 20, "cfg": 1.0, "sampler_name": "euler", "scheduler": "karras", "denoise": 1.0}
"""The toy world's sampler, for the template and for `make demo` alike."""
TOY_SEED = 11
TOY_LATENT = 128
"""EmptyLatentImage assumes /8: 128 px gives the toy's 16 x 16 latent (its /2 VAE decodes 32 x 32 images)."""
TOY_WITH, TOY_WITHOUT, TOY_ID_BASE = "with_lora", "without_lora", "id_base"
"""Output names of the toy graphs' saved images (`graph.outputs`): with / without the ID-LoRA (`toy_world`), ID + Base
with the empty caption (`toy_world_edit`; its ID-LoRA with caption k is `toy_edit_output(k)`). `make demo` reads them."""


# -- shared pieces ------------------------------------------------------------------------------
# The SDXL templates read left to right: models and settings (column 0), the photos and their encoding,
# prompts and the LoRA, then sampling and the picture (the last column). Rows only order the nodes
# within a column (each is stacked below the one before, see `ui.layout`).
MODELS = 0


def sdxl_base(i: int, prompt_col: int, latent_col: int | None = None) -> list[N]:
    """Checkpoint and CLIP skip -2 (column 0, below the HyperLoRA models), prompts and latent."""
    return [
        N(i, "CheckpointLoaderSimple", {"ckpt_name": SDXL.main.target}, MODELS, 20, "SDXL checkpoint",
          models=[download_entry(SDXL)]),
        N(i + 1, "CLIPSetLastLayer", {"clip": L(i, 1), "stop_at_clip_layer": -2}, MODELS, 21, "CLIP skip -2"),
        N(i + 2, "CLIPTextEncode", {"text": POSITIVE, "clip": L(i + 1)}, prompt_col, 0, "Prompt"),
        N(i + 3, "CLIPTextEncode", {"text": NEGATIVE, "clip": L(i + 1)}, prompt_col, 1, "Negative prompt"),
        N(i + 4, "EmptyLatentImage", {"width": 1024, "height": 1024, "batch_size": 1},
          prompt_col if latent_col is None else latent_col, 2, "Image size"),
    ]


def hyperlora_models(i: int) -> list[N]:
    """HyperLoRA checkpoint, face models, CLIP vision (ids i .. i+2), in column 0 below the note."""
    return [
        N(i, "HyperLoRACheckpointLoader", {"checkpoint": CHECKPOINT, "dtype": "auto"}, MODELS, 10,
          "HyperLoRA checkpoint"),
        N(i + 1, "HyperLoRAFaceAnalysisLoader", {"pack": FACE_PACK, "provider": "auto"}, MODELS, 11, "Face models"),
        N(i + 2, "HyperLoRACLIPVisionLoader", {"clip_vision": CLIP_L.main.target, "dtype": "auto"}, MODELS, 12,
          "CLIP ViT-L/14", models=[download_entry(CLIP_L)]),
    ]


def encode_generate(i: int, photos: L, models: int, col: int, gen_col: int, row: float = 10, weights: str = "",
                    title: str = "Encode the face", preview: bool = True) -> list[N]:
    """Encode ID (+ the crop preview below it) and Generate ID LoRA: ids i .. i+2; the LoRA is output 0 of i+1."""
    nodes = [
        N(i, "HyperLoRAEncodeID", {"photos": photos, "face_analysis": L(models + 1), "clip_vision": L(models + 2),
                                   "weights": weights, "remove_background": True, "grayscale": False,
                                   "face_index": -1, "on_no_face": "error"}, col, row, title),
        N(i + 1, "HyperLoRAGenerateID", {"hyper_lora": L(models), "id_cond": L(i), "allow_other_face_pack": False},
          gen_col, row, "Generate ID-LoRA"),
    ]
    if preview:
        nodes.append(N(i + 2, "PreviewImage", {"images": L(i, 1)}, col, row + 0.5, "What CLIP saw"))
    return nodes


def apply(i: int, model: L, lora: L, col: int, row: float = 20, strength: float = 0.85,
          title: str = "Apply the LoRA") -> N:
    return N(i, "HyperLoRAApply", {"model": model, "lora": lora, "strength": strength, "base_strength": 0.0},
             col, row, title)


def sample_and_save(i: int, model: L, positive: L, negative: L, latent: L, vae: L, prefix: str, col: int) -> list[N]:
    """KSampler, VAE Decode, Save Image (ids i .. i+2), stacked in one column."""
    return [
        N(i, "KSampler", {"model": model, "seed": 42, "steps": 20, "cfg": 5.0, "sampler_name": "dpmpp_2m",
                          "scheduler": "karras", "positive": positive, "negative": negative,
                          "latent_image": latent, "denoise": 1.0}, col, 0),
        N(i + 1, "VAEDecode", {"samples": L(i), "vae": vae}, col, 1),
        N(i + 2, "SaveImage", {"images": L(i + 1), "filename_prefix": prefix}, col, 2),
    ]


def load(i: int, name: str, col: int, row: float, title: str) -> N:
    return N(i, "LoadImage", {"image": name}, col, row, title)


MODELS_HOWTO = (f"Models: the node {FETCH_NODE} (template *HyperLoRA model check*) downloads the HyperLoRA "
                "checkpoint and CLIP ViT-L/14 once you accept their licences, and shows the step for antelopev2, "
                "which goes into models/insightface/models/ by hand. Run names anything missing, with the exact "
                "command for this install.")
SDXL_NOTE = ("Opens with sample photos ({photos}): pick or upload your own in Load Image.\n"
             + MODELS_HOWTO + "\nKeep the trigger words at the start of the prompt; LoRA strength 0.75-0.9.")


def sdxl_note(i: int, what: str, photos: str) -> N:
    return note(i, f"{what}\n" + SDXL_NOTE.format(photos=photos), MODELS, 0, width=540)


def sdxl(nodes: list[N], model: L, prefix: str, what: str, photos: str, sample_col: int, prompt_col: int,
         latent_col: int | None = None, positive: L | None = None, negative: L | None = None) -> list[N]:
    """An SDXL template: note, models, base, the given photo and LoRA nodes, sampling (from the prompts, or from
    `positive` / `negative` when something sits between them and the sampler)."""
    return [sdxl_note(30, what, photos), *hyperlora_models(6), *sdxl_base(1, prompt_col, latent_col), *nodes,
            *sample_and_save(40, model, positive or L(3), negative or L(4), L(5), L(1, 2), prefix, sample_col)]


# -- the templates ------------------------------------------------------------------------------
def one_photo() -> list[N]:
    return sdxl([load(9, ASTRONAUT, 1, 0, "Photo of the person"),
                 *encode_generate(10, L(9), 6, 1, 2), apply(13, L(1), L(11), 2)],
                L(13), "hyperlora/one_photo", "One face photo -> an ID-LoRA -> a new portrait of that person.",
                "a public-domain portrait", sample_col=3, prompt_col=2)


def several_photos() -> list[N]:
    return sdxl([
        load(9, ASTRONAUT, 1, 0, "Photo 1"), load(10, ASTRONAUT_2, 1, 1, "Photo 2"),
        load(11, ASTRONAUT_3, 2, 0, "Photo 3"),
        N(12, "ImageBatch", {"image1": L(9), "image2": L(10)}, 2, 1, "Photos 1 + 2"),
        N(13, "ImageBatch", {"image1": L(12), "image2": L(11)}, 2, 2, "Photos 1 + 2 + 3"),
        *encode_generate(14, L(13), 6, 2, 3, weights="1, 1, 1", title="Encode (weights)", preview=False),
        apply(17, L(1), L(15), 3),
    ], L(17), "hyperlora/several_photos",
        "Three photos of one person -> one ID-LoRA (averaged; a weight per photo in Encode).",
        "three photos of one astronaut", sample_col=4, prompt_col=3)


def two_people() -> list[N]:
    return sdxl([
        load(9, ASTRONAUT, 1, 0, "Person A"), load(10, HOPPER, 1, 1, "Person B"),
        *encode_generate(11, L(9), 6, 2, 3, row=-2, title="Encode person A", preview=False),
        *encode_generate(14, L(10), 6, 2, 3, row=-1, title="Encode person B", preview=False),
        N(17, "HyperLoRAInterpolate", {"lora_a": L(12), "lora_b": L(15), "t": 0.5, "mode": "factors"}, 3, 15,
          "A -> B"),
        apply(18, L(1), L(17), 3),
    ], L(18), "hyperlora/interpolated",
        "Two people -> two ID-LoRAs -> a face halfway between them (t = 0: A, 1: B).", "two public-domain portraits",
        sample_col=4, prompt_col=2, latent_col=3)


def concept_slider() -> list[N]:
    return sdxl([
        load(9, HOPPER, 1, 0, "Neutral photo"), load(10, ASTRONAUT, 1, 1, "Smiling photo"),
        *encode_generate(12, L(9), 6, 2, 3, row=-2, title="Encode neutral", preview=False),
        *encode_generate(15, L(10), 6, 2, 3, row=-1, title="Encode smiling", preview=False),
        N(21, "HyperLoRAConceptSlider", {"lora_a": L(13), "lora_b": L(16), "scale": 1.0}, 3, 15, "Slider"),
        apply(22, L(1), L(13), 3, title="Apply the ID-LoRA"),
        apply(23, L(22), L(21), 3, row=21, strength=0.7, title="Apply the slider"),
    ], L(23), "hyperlora/slider",
        "Two photos of one person (neutral, smiling): the ID-LoRA from the neutral one, and a slider "
        "scale x (smiling - neutral) on top; scale < 0 goes the other way. (The samples are two different people, "
        "so their slider moves between them: for a smile, give two photos of one person.)", "two portraits",
        sample_col=4, prompt_col=2, latent_col=3)


def save_lora() -> list[N]:
    return [
        note(30, "Two photos of one person -> an ID-LoRA saved as a kohya .safetensors file in output/hyperlora/, "
             "for any LoRA loader.\n\nOpens with two sample photos of one person: pick or upload your own in "
             "Load Image.\n" + MODELS_HOWTO, MODELS, 0, width=540),
        *hyperlora_models(1),
        load(4, ASTRONAUT, 1, 0, "Photo 1"), load(5, ASTRONAUT_2, 1, 1, "Photo 2"),
        N(6, "ImageBatch", {"image1": L(4), "image2": L(5)}, 2, 0, "Both photos"),
        *encode_generate(7, L(6), 1, 2, 3),
        N(10, "HyperLoRASave", {"lora": L(8), "filename_prefix": "hyperlora/my_face", "dtype": "fp16",
                                "notes": "made from two photos"}, 3, 20, "Save the LoRA"),
    ]


def one_click() -> list[N]:
    return [
        sdxl_note(30, "The whole HyperLoRA chain in one node: model + photos + strength -> the personalised model.",
                  "a public-domain portrait"),
        N(7, "HyperLoRAOneClick", {"model": L(1), "photos": L(6), "strength": 0.85, "checkpoint": CHECKPOINT,
                                   "clip_vision": CLIP_L.main.target, "face_pack": FACE_PACK}, MODELS, 10, "HyperLoRA",
          models=[download_entry(CLIP_L)]),
        *sdxl_base(1, 2),
        load(6, ASTRONAUT, 1, 0, "Photo of the person"),
        N(8, "PreviewImage", {"images": L(7, 2)}, 1, 1, "What CLIP saw"),
        *sample_and_save(40, L(7), L(3), L(4), L(5), L(1, 2), "hyperlora/one_click", 3),
    ]


def with_controlnet() -> list[N]:
    return sdxl([
        load(9, ASTRONAUT, 1, 0, "Photo of the person"), load(14, POSE, 1, 20, "Pose picture"),
        *encode_generate(10, L(9), 6, 1, 2, preview=False),
        apply(13, L(1), L(11), 2, row=11),
        N(15, "ControlNetLoader", {"control_net_name": CONTROLNET.main.target}, 3, 3, "ControlNet (pose)",
          models=[download_entry(CONTROLNET)]),
        N(16, "ControlNetApplyAdvanced", {"positive": L(3), "negative": L(4), "control_net": L(15), "image": L(14),
                                          "strength": 0.8, "start_percent": 0.0, "end_percent": 1.0}, 2, 21,
          "Apply the ControlNet"),
    ], L(13), "hyperlora/controlnet",
        "HyperLoRA for the face (weights) + an OpenPose ControlNet for the pose (conditioning); the sample pose is a "
        "skeleton, pick yours in Pose picture.",
        "a public-domain portrait", sample_col=3, prompt_col=2, positive=L(16, 0), negative=L(16, 1))


def with_style_lora() -> list[N]:
    return sdxl([
        load(9, ASTRONAUT, 1, 0, "Photo of the person"),
        *encode_generate(10, L(9), 6, 1, 2, preview=False),
        apply(13, L(1), L(11), 2, row=11),
        N(14, "LoraLoaderModelOnly", {"model": L(13), "lora_name": STYLE_LORA, "strength_model": 0.8}, 2, 12,
          "Style LoRA"),
    ], L(14), "hyperlora/style",
        f"HyperLoRA for the face + any SDXL style LoRA: both are weight patches and add up. Pick your style "
        f"LoRA (models/loras) in place of {STYLE_LORA}.", "a public-domain portrait", sample_col=3, prompt_col=2)


def model_check() -> list[N]:
    return [
        note(3, "Run this to see which files HyperLoRA needs, where each is or should go, and what is wrong "
             "(missing, nested folder, Git-LFS pointer, truncated download, wrong face pack).\n\n"
             f"To download what is missing: read the licences in {FETCH_NODE}'s report, set accept_licences to "
             "true and run again. The face pack antelopev2 is placed by hand (the report gives the step). The "
             "report also prints the same command for a terminal.", 0, 0, width=400),
        N(1, "HyperLoRAModelCheck", {}, 0, 6, "HyperLoRA model check", width=400),
        N(2, "PreviewAny", {"source": L(1)}, 1, 0, "Report", width=900, height=560),
        N(4, "HyperLoRAFetchModels", {"models": "required", "accept_licences": False}, 0, 7, FETCH_NODE, width=400),
        N(5, "PreviewAny", {"source": L(4)}, 1, 1, "What was fetched", width=900, height=300),
    ]


def toy_loader_inputs(world: str, base: str | None) -> dict:
    """The Toy World Loader's widgets: the world and its base (None: the UNet), both written out as the editor
    saves them."""
    from hyperlora_core.toy.models import UNET

    return {"world": world, "base": base or UNET.name}


def toy_sampler(base: str | None) -> dict:
    """The toy sampler for a toy base (None: the UNet): euler with the base's own scheduler (its profile's)."""
    if not base:
        return dict(TOY_SAMPLER)
    from hyperlora_core.toy.models import toy_base

    return {**TOY_SAMPLER, "scheduler": toy_base(base).profile.scheduler}


def toy_world(photos: Sequence[str] | None = None, seed: int = TOY_SEED, strength: float = 1.0, prompt: str = "",
              batch: int = 4, world: str | None = None, prefix: str = "hyperlora/toy", compare: bool = True,
              display_scale: int = 8, steps: int = TOY_SAMPLER["steps"], base: str | None = None) -> list[N]:
    """The shipped toy world end to end, nothing to download: a never-seen identity's photo -> its ID-LoRA ->
    `batch` samples with it and (if `compare`) the same seeds without it, with an empty caption so that
    only the LoRA can carry identity. `base`: the world's base model (None: the UNet; "dit": the DiT).

    The template makes its reference photo with the Toy Reference Photos node; `make demo` passes `photos`
    (names in ComfyUI's input folder) and `display_scale=1` (it judges the 32 x 32 images themselves).
    """
    from hyperlora_core.toy.files import BUILTIN_WORLD

    world = world or BUILTIN_WORLD
    what = ("a tiny synthetic world with a FLUX-architecture DiT trained by flow matching on CPU" if base == "dit"
            else "a tiny synthetic SDXL-architecture world trained on CPU")
    nodes = [
        note(20, f"The toy world (models/toy): {what}, shipped "
             "with the pack. Press Run: a never-seen identity's photo -> its ID-LoRA -> four samples with it "
             "(top) and the same seeds without it (bottom). The caption stays empty so only the LoRA carries "
             "identity. Change 'identity' for another person.", 0, 0),
        N(1, "HyperLoRAToyWorldLoader", toy_loader_inputs(world, base), 0, 6, "Toy world"),
    ]
    if photos is None:
        nodes += [
            N(2, "HyperLoRAToyPhotos", {"identity": 0, "photos": 1, "variation": 0, "scale": 4}, 0, 10,
              "Reference photo"),
            N(3, "PreviewImage", {"images": L(2)}, 5, 0, "The person (reference)"),  # right of the results
        ]
        source = L(2)
    else:
        if not photos:
            raise ValueError("give at least one reference photo (a name inside ComfyUI's input folder)")
        for k, name in enumerate(photos):
            nodes.append(load(100 + k, name, 0, 10 + 7 * k, f"Photo {k + 1}"))
            if k:
                nodes.append(N(200 + k, "ImageBatch", {"image1": L(100 if k == 1 else 200 + k - 1), "image2": L(100 + k)},
                               1, 10 + 3 * k))
        source = L(100 if len(photos) == 1 else 200 + len(photos) - 1)
    sampler = {"seed": seed, **toy_sampler(base), "steps": steps, "positive": L(7), "negative": L(8),
               "latent_image": L(9)}
    nodes += [
        N(5, "HyperLoRAToyEncode", {"photos": source, "world": world, "weights": ""}, 1, 6, "Toy encode"),
        N(6, "HyperLoRAGenerateID", {"hyper_lora": L(1, 3), "id_cond": L(5), "allow_other_face_pack": False}, 1, 10,
          "Generate ID-LoRA"),
        N(16, "HyperLoRAApply", {"model": L(1), "lora": L(6), "strength": strength, "base_strength": 0.0}, 1, 13,
          "Apply the LoRA"),
        N(7, "CLIPTextEncode", {"text": prompt, "clip": L(1, 1)}, 1, 20, "Caption (empty)"),
        N(8, "CLIPTextEncode", {"text": "", "clip": L(1, 1)}, 1, 24, "Negative caption"),
        N(9, "EmptyLatentImage", {"width": TOY_LATENT, "height": TOY_LATENT, "batch_size": batch}, 1, 28, "Latent 16 x 16"),
        N(10, "KSampler", {"model": L(16), **sampler}, 3, 0, "With the ID-LoRA"),
        *decode_save(10, L(1, 2), prefix, TOY_WITH, None, 3, 1, display_scale, scale_beside_save=True),
    ]
    if compare:
        nodes += [N(30, "KSampler", {"model": L(1), **sampler}, 3, 8, "Same seeds, no LoRA"),
                  *decode_save(30, L(1, 2), prefix, TOY_WITHOUT, None, 3, 9, display_scale, scale_beside_save=True)]
    return nodes


def decode_save(sampler: int, vae: L, prefix: str, output: str, title: str | None, col: int, row: float,
                display_scale: int, scale_beside_save: bool = False) -> list[N]:
    """A toy graph's result row: VAEDecode of KSampler `sampler` -> (display_scale > 1) nearest-neighbour upscale
    for the editor -> SaveImage named `output` (ids `sampler` + 1, 2, 3). The decode goes in column `col`, the
    SaveImage in the next one; the upscale below the decode, or above the SaveImage (`scale_beside_save`)."""
    nodes = [N(sampler + 1, "VAEDecode", {"samples": L(sampler), "vae": vae}, col, row)]
    image = L(sampler + 1)
    if display_scale > 1:
        at = (col + 1, row - 0.5) if scale_beside_save else (col, row + 0.5)
        nodes.append(N(sampler + 2, "ImageScaleBy", {"image": image, "upscale_method": "nearest-exact",
                                                      "scale_by": float(display_scale)}, *at,
                       f"x{display_scale} (pixel art)"))
        image = L(sampler + 2)
    nodes.append(N(sampler + 3, "SaveImage", {"images": image, "filename_prefix": f"{prefix}_{output}"}, col + 1, row,
                   title, output=output))
    return nodes


TOY_EDIT_CAPTION = "red shirt, blue striped background"
"""The edit template's caption: a shirt and a background the template's photo does not have."""


def toy_edit_output(k: int) -> str:
    """Output name of the edit graph's image of the ID-LoRA with its `k`-th caption (from 0)."""
    return f"id_edit{k + 1}"


def toy_world_edit(photos: Sequence[str] | None = None, captions: Sequence[str] = (TOY_EDIT_CAPTION,), seed: int = TOY_SEED,
                   batch: int = 4, world: str | None = None, prefix: str = "hyperlora/toy_edit", display_scale: int = 8,
                   steps: int = TOY_SAMPLER["steps"], base: str | None = None) -> list[N]:
    """The ID / Base split in the toy world, on one never-seen person's photo: an ID-LoRA (Toy Encode -> Generate
    ID) and a Base-LoRA (Toy Encode Base -> Generate Base), then, on the same seeds, ID + Base with an empty caption
    (the photo's background and shirt come back) and the ID-LoRA alone with each editing caption (the person
    stays, the caption changes shirt and background).

    The template makes its photo with the Toy Reference Photos node; `make demo` passes `photos` (one name in
    ComfyUI's input folder) and its own captions. `base`: the world's base model (None: the UNet; "dit": the DiT)."""
    from hyperlora_core.toy.files import BUILTIN_WORLD

    world = world or BUILTIN_WORLD
    if not captions:
        raise ValueError("give at least one editing caption")
    sampler = {"seed": seed, **toy_sampler(base), "steps": steps, "negative": L(8), "latent_image": L(9)}
    nodes = [
        note(20, "Toy world: ID-LoRA and Base-LoRA from one photo. Press Run. Top: ID + Base, empty caption: the "
             "photo's person, background and shirt. Below: the ID-LoRA alone with the editing caption: the same "
             "person in the shirt and background the caption names. Try '<colour> shirt, <colour> "
             "plain|striped|dotted background'.", 0, 0),
        N(1, "HyperLoRAToyWorldLoader", toy_loader_inputs(world, base), 0, 1, "Toy world"),
    ]
    if photos is None:
        nodes += [N(2, "HyperLoRAToyPhotos", {"identity": 0, "photos": 1, "variation": 0, "scale": 4}, 0, 2,
                    "Reference photo"),
                  N(3, "PreviewImage", {"images": L(2)}, 3, -1, "The person (reference)")]  # left of the results
    else:
        if len(photos) != 1:
            raise ValueError("the edit graph takes one reference photo (a name inside ComfyUI's input folder)")
        nodes.append(load(2, photos[0], 0, 2, "Photo"))
    nodes += [
        N(8, "CLIPTextEncode", {"text": "", "clip": L(1, 1)}, 0, 3, "Negative caption"),
        N(9, "EmptyLatentImage", {"width": TOY_LATENT, "height": TOY_LATENT, "batch_size": batch}, 0, 4, "Latent 16 x 16"),
        N(5, "HyperLoRAToyEncode", {"photos": L(2), "world": world, "weights": ""}, 1, 0, "Toy encode (ID)"),
        N(6, "HyperLoRAGenerateID", {"hyper_lora": L(1, 3), "id_cond": L(5), "allow_other_face_pack": False}, 1, 1,
          "Generate ID-LoRA"),
        N(40, "HyperLoRAToyEncodeBase", {"photos": L(2), "world": world, "weights": ""}, 1, 2, "Toy encode (Base)"),
        N(41, "HyperLoRAGenerateBase", {"hyper_lora": L(1, 3), "base_cond": L(40)}, 1, 3, "Generate Base-LoRA"),
        N(16, "HyperLoRAApply", {"model": L(1), "lora": L(6), "strength": 1.0, "base_lora": L(41), "base_strength": 1.0},
          1, 4, "Apply ID + Base"),
        N(17, "HyperLoRAApply", {"model": L(1), "lora": L(6), "strength": 1.0, "base_strength": 0.0}, 1, 5,
          "Apply the ID-LoRA alone"),
        N(7, "CLIPTextEncode", {"text": "", "clip": L(1, 1)}, 2, 0, "Caption (empty)"),
    ]
    rows = [(10, 16, 7, TOY_ID_BASE, "ID + Base, empty caption")]
    for k, caption in enumerate(captions):
        nodes.append(N(18 + k, "CLIPTextEncode", {"text": caption, "clip": L(1, 1)}, 2, 1 + k,
                       "Editing caption" + (f" {k + 1}" if len(captions) > 1 else "")))
        rows.append((50 + 10 * k, 17, 18 + k, toy_edit_output(k), f"ID-LoRA, caption {k + 1}"))
    for r, (ks, model, positive, output, title) in enumerate(rows):
        nodes.append(N(ks, "KSampler", {"model": L(model), "positive": L(positive), **sampler}, 2, 10 + r, title))
        nodes += decode_save(ks, L(1, 2), prefix, output, title, 3, 2 * r, display_scale)
    return nodes


@dataclass(frozen=True)
class Template:
    slug: str
    """File name of the API-format copy (workflows/api/<slug>.json) and the name tests use."""
    title: str
    """File name of the editor copy and of its thumbnail: the frontends show it as the template's title."""
    build: Callable[[], list[N]]


TOY_DIT_TEMPLATE = Template("hyperlora_toy_world_dit", "HyperLoRA toy world (DiT)", lambda: toy_world(base="dit"))
"""The toy world's DiT graph: not among TEMPLATES until `models/toy` ships the DiT's weights (a template that
fails on its first node would be the first thing a user sees of it); tests build it on a smoke DiT world."""

TEMPLATES = (
    Template("hyperlora_toy_world", "HyperLoRA toy world", toy_world),
    Template("hyperlora_toy_world_edit", "HyperLoRA toy ID and Base", toy_world_edit),
    Template("hyperlora_t2i_one_photo", "HyperLoRA one photo", one_photo),
    Template("hyperlora_t2i_several_photos", "HyperLoRA several photos", several_photos),
    Template("hyperlora_interpolate_two_people", "HyperLoRA between two people", two_people),
    Template("hyperlora_concept_slider", "HyperLoRA concept slider", concept_slider),
    Template("hyperlora_save_lora", "HyperLoRA save the LoRA", save_lora),
    Template("hyperlora_one_click", "HyperLoRA one-click", one_click),
    Template("hyperlora_controlnet_pose", "HyperLoRA with ControlNet", with_controlnet),
    Template("hyperlora_style_lora", "HyperLoRA with a style LoRA", with_style_lora),
    Template("hyperlora_model_check", "HyperLoRA model check", model_check),
)
PHOTOS = (ASTRONAUT, ASTRONAUT_2, ASTRONAUT_3, HOPPER, POSE)
"""Every image name the templates load: the sample photos the pack places into ComfyUI's input folder
(`workflows/sample_photos.py`)."""


def template(slug: str) -> Template:
    return next(t for t in TEMPLATES if t.slug == slug)
