"""A new user's first run, end to end on the real ComfyUI server (issue 19's "Done when").

A fresh ComfyUI base folder with no weights and an empty input folder, HF_ENDPOINT on the loopback fake hub,
which serves working stand-ins under the manifest's repositories and paths. The shipped template is refused at
queue time with the fix in its first sentence; the Fetch Models node, licences accepted, puts the files in place;
the user unzips the face pack by hand; the template, model names as shipped, then runs to a saved image.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from fixtures.fake_hub import FakeHub
from fixtures.pack import ROOT

from hyperlora_core import standins
from hyperlora_core.models import item
from scripts.standin_graphs import nodes_of, standin_photos

TEMPLATE = "hyperlora_t2i_one_photo"
FIDELITY = "sdxl_hyper_id_lora_v1_fidelity"


@pytest.fixture(scope="module")
def working_files(tmp_path_factory) -> dict[tuple[str, str], bytes]:
    """What the fake hub serves: files that load and run, under the manifest's repositories and paths.

    ComfyUI's CLIP vision loader recognises only the real shapes, so the CLIP file is a full-size ViT-L/14 with
    random weights (fp16, ~0.6 GB) and the HyperLoRA checkpoint (published layout, for the tiny SDXL's attention
    modules) reads CLIP width 1024, as the published ones do."""
    import torch
    from fixtures.comfy_session import write_random_vit_l

    folder = tmp_path_factory.mktemp("hub_files")
    config = standins.small_config(modules=standins.tiny_module_specs(), clip_dim=1024)
    standins.random_hyperlora(config, seed=5).save_pretrained(folder / FIDELITY, dtype=torch.float32)
    write_random_vit_l(folder / "model.safetensors")
    hyper, vit = item("hyperlora-fidelity"), item("clip-vit-large-patch14")
    files = {(hyper.hub.repo, f.path): (folder / f.path).read_bytes() for f in hyper.files}
    files[(vit.hub.repo, "model.safetensors")] = (folder / "model.safetensors").read_bytes()
    return files


def in_the_standin_world(prompt: dict) -> dict:
    """Only what a stand-in world forces, every model name kept: ComfyUI's checkpoint loader recognises only a
    full-size SDXL (~7 GB), so the tiny SDXL loader of the stand-in pack takes its place; the stand-in face detector
    finds faces only in stand-in photos; 64 px and 2 steps keep sampling cheap on a CPU."""
    for key in nodes_of(prompt, "CheckpointLoaderSimple"):
        prompt[key] = {"class_type": "HyperLoRATestTinySDXL", "inputs": {"seed": 0}}
    for key in nodes_of(prompt, "EmptyLatentImage"):
        prompt[key]["inputs"].update(width=64, height=64)
    for key in nodes_of(prompt, "KSampler"):
        prompt[key]["inputs"]["steps"] = 2
    standin_photos(prompt)
    return prompt


def test_a_new_user_gets_from_a_fresh_comfyui_to_a_saved_image(tmp_path, working_files, comfyui_path):
    from fixtures import workflows
    from PIL import Image

    from scripts.comfy_server import PACK_LINK_NAME, STANDIN_PACK, ComfyServer, PromptRejected

    base = tmp_path / "ComfyUI"
    models = base / "models"
    fetch = {"1": {"class_type": "HyperLoRAFetchModels", "inputs": {"models": "required", "accept_licences": True}}}
    shipped = workflows.api(TEMPLATE)
    loaders = {"HyperLoRACheckpointLoader": "checkpoint", "HyperLoRACLIPVisionLoader": "clip_vision",
               "HyperLoRAFaceAnalysisLoader": "pack"}
    names = {name: shipped[nodes_of(shipped, node)[0]]["inputs"][name] for node, name in loaders.items()}
    assert names["checkpoint"] == f"{FIDELITY}/hyper_lora_modules.safetensors"
    with FakeHub() as hub:
        for (repo, path), data in working_files.items():
            hub.add(repo, path, data)
        env = {"HF_ENDPOINT": hub.url, "HF_HOME": str(tmp_path / "hf_home"), "HF_HUB_DISABLE_TELEMETRY": "1",
               "HF_HUB_ETAG_TIMEOUT": "5", "HF_HUB_DOWNLOAD_TIMEOUT": "30"}
        # the pack as users link it, and the stand-in pack only for its tiny SDXL loader
        packs = {PACK_LINK_NAME: ROOT, "hyperlora_standin_nodes": STANDIN_PACK}
        with ComfyServer(comfyui_path, base, env=env, packs=packs) as server:
            assert not [p for p in models.rglob("*") if p.is_file()]
            # 1. the template as shipped: its sample photo is there, the models are not, and each loader's
            # refusal names the missing file and the fix in its first sentence
            with pytest.raises(PromptRejected) as err:
                server.queue(shipped)
            errors = err.value.body["node_errors"]
            # only the model loaders: no photo is missing (the pack placed the sample photo); the SDXL checkpoint
            # is ComfyUI's own loader's "not in []", naming the file
            assert set(errors) == {nodes_of(shipped, node)[0] for node in [*loaders, "CheckpointLoaderSimple"]}, errors
            first = {e["extra_info"]["input_name"]: e["details"].split(". ")[0] for node in errors.values()
                     for e in node["errors"] if e["type"] == "custom_validation_failed"}
            assert set(first) == {"checkpoint", "clip_vision", "pack"}, first
            for name, fix in (("checkpoint", "run the node HyperLoRA Fetch Models"),
                              ("clip_vision", "run the node HyperLoRA Fetch Models"),
                              ("pack", "must be placed by hand: download antelopev2.zip")):
                assert f"'{names[name]}' is missing" in first[name] and fix in first[name], first[name]

            # 2. the Fetch Models node, licences accepted, downloads what the hub serves
            done = server.run(fetch)
            assert done.error is None, done.error
            text = done.outputs["1"]["text"][0]
            assert f"fetched {len(working_files)} file(s); 0 were already in place" in text, text
            assert "Still needed by hand: antelopev2" in text, text

            # 3. the face pack, unzipped by hand where the report says; the user's own photo in the input folder
            standins.write_tiny_face_pack(models / "insightface" / "models" / "antelopev2")
            prompt = in_the_standin_world(workflows.api(TEMPLATE))
            photo = prompt[nodes_of(prompt, "LoadImage")[0]]["inputs"]["image"]
            standins.face_photo(0).save(server.input_dir / photo)

            # 4. the template runs, every HyperLoRA model by the name it ships with, to a saved image
            for node in loaders:
                assert prompt[nodes_of(prompt, node)[0]]["inputs"] == shipped[nodes_of(shipped, node)[0]]["inputs"]
            gets = len([r for r in hub.requests if r[0] == "GET"])
            result = server.run(prompt)
            assert result.error is None, result.error
            assert len([r for r in hub.requests if r[0] == "GET"]) == gets  # nothing fetched while it runs
            saved = result.outputs[nodes_of(prompt, "SaveImage")[0]]["images"]
            assert len(saved) == 1 and saved[0]["type"] == "output", saved
            image = server.output_dir / saved[0]["subfolder"] / saved[0]["filename"]
            with Image.open(image) as png:
                assert png.size == (64, 64)
    for (_repo, path), data in working_files.items():
        target = Path("clip_vision/clip_vit_large_patch14.safetensors" if path == "model.safetensors"
                      else f"hyper_lora/{path}")
        assert (models / target).read_bytes() == data
