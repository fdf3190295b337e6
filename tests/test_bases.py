"""Every base-model profile (`comfy_bridge.bases`), on tiny random models built from ComfyUI's own classes.

Parametrised over the registry, so a new base gets every test here by adding its profile: detection,
the LoRA maths of Generate -> Apply on every target weight (and nothing else), ComfyUI's stock
LoraLoaderModelOnly reading our saved LoRA, a short fit whose loss falls, and the clear error when a
LoRA made for one base meets a model of another.
"""

from __future__ import annotations

import dataclasses
import itertools
import re

import comfy.supported_models
import folder_paths
import pytest
import torch
from fixtures.bases import base_hyperlora, id_lora, patched_weights, tiny_model
from safetensors import safe_open

from hyperlora_core import HyperLoRA, HyperLoRAError
from hyperlora_core.comfy_bridge import apply_lora, unet_lora_key_map
from hyperlora_core.comfy_bridge.bases import PROFILES, profile_named, profile_of
from hyperlora_core.comfy_bridge.host_nodes import comfy_nodes
from hyperlora_core.lora import lora_modules, save_lora
from hyperlora_core.standins import random_hyperlora

pytestmark = pytest.mark.usefixtures("one_thread")

NAMES = list(PROFILES)
FULL_SIZE_MODULES = {"sdxl": 140, "sd15": 32, "flux": 57, "zimage": 30}
"""LoRA'd modules of the full-size model: attn1 + attn2 of every transformer block (SDXL 70 blocks, SD1.5 16);
FLUX.1's 19 double + 38 single blocks (image stream); Z-Image's 30 joint layers' attention."""
TINY_MODULES = {"sdxl": 22, "sd15": 32, "flux": 6, "zimage": 2}
"""The tiny models keep the block layout with one transformer block where SDXL has 2 or 10; tiny FLUX has 2 + 4,
tiny Z-Image 2 joint layers."""
ONE_KIND_OF_LAYER = {"sdxl": r"_attn2_to_[kv]$", "sd15": r"_attn2_to_[kv]$", "flux": r"_img_attn_qkv$",
                     "zimage": r"^lora_unet_layers_\d+_attention_qkv$"}
"""A target-set regex naming a subset of each base's layers (for the targets-are-data test)."""
FIT_EXCLUDED = {"flux": "tests/test_base_flux.py's 16-step fit (flow matching falls slower than 0.6 in 12 steps)",
                "zimage": "tests/test_base_zimage.py's 40-step fit (its default set falls to about 0.74)"}


@pytest.fixture(scope="module", params=NAMES)
def tiny(request):
    return tiny_model(request.param)


@pytest.mark.parametrize("name", NAMES)
def test_the_profile_recognises_its_models_and_lists_its_targets_at_full_size(name):
    profile = profile_named(name)
    full = profile.build(device="meta")
    assert profile_of(full) is profile
    specs = profile.module_specs(full)
    assert len(specs) == FULL_SIZE_MODULES[name]
    names = [n for s in specs for n in s.layer_names()]
    assert len(names) == len(set(names)) == sum(len(s.layers) for s in specs)
    assert set(names) <= set(unet_lora_key_map(full))  # every target is a layer ComfyUI's LoRA key map knows
    tiny = profile.build(profile.tiny_config(), device="meta")
    assert profile_of(tiny) is profile and len(profile.module_specs(tiny)) == TINY_MODULES[name]


def test_an_unsupported_model_is_named_with_the_supported_bases():
    class Model:  # what ComfyUI's loaders hand out: a patcher whose model carries its supported_models class
        model_config = comfy.supported_models.SD20({"context_dim": 1024, "model_channels": 320})

    class Patcher:
        model = Model()

    with pytest.raises(HyperLoRAError, match=r"a SD20 model, which HyperLoRA does not support; it works with SDXL \('sdxl'\), "
                                             r"SD1\.5 \('sd15'\)"):
        profile_of(Patcher())


def test_lora_targets_are_data(tiny):
    profile, model = tiny
    pattern = re.compile(ONE_KIND_OF_LAYER[profile.name])
    chosen = profile.module_specs(model, [pattern.pattern])
    everything = profile.module_specs(model)
    assert chosen and sum(len(s.layers) for s in chosen) < sum(len(s.layers) for s in everything)
    assert all(pattern.search(n) for s in chosen for n in s.layer_names())
    with pytest.raises(HyperLoRAError, match=r"'attn\[' is neither a target set"):
        profile.module_specs(model, ["attn["])


def test_generate_then_apply_changes_exactly_the_target_weights(tiny):
    profile, model = tiny
    lora = id_lora(base_hyperlora(profile, model))
    assert lora.base == profile.name
    key_map = unet_lora_key_map(model)
    before = {k: v.detach().clone() for k, v in model.model.state_dict().items()}
    assert all(torch.equal(v, before[k]) for k, v in patched_weights(apply_lora(model, lora, 0.0)).items())  # strength 0
    strength = 0.7
    after = patched_weights(apply_lora(model, lora, strength))
    targets = {}
    for name, (down, up, alpha) in lora_modules(lora).items():
        targets[key_map[name]] = strength * (alpha / down.shape[0]) * (up.float() @ down.float())
    assert len(targets) == sum(len(s.layers) for s in profile.module_specs(model))
    for key, w in after.items():
        if key in targets:
            torch.testing.assert_close(w, before[key] + targets[key], rtol=1e-5, atol=1e-6)
            assert not torch.equal(w, before[key]), key
        else:
            assert torch.equal(w, before[key]), key  # every other weight bit-identical


def test_our_saved_lora_through_comfyuis_lora_loader_patches_what_apply_patches(tiny, tmp_path, monkeypatch):
    profile, model = tiny
    lora = id_lora(base_hyperlora(profile, model))
    path = save_lora(lora, tmp_path / f"{profile.name}_id.safetensors", dtype=torch.float32,
                     base_metadata=profile.kohya_metadata())
    with safe_open(str(path), "pt") as f:
        meta = f.metadata()
    assert meta["ss_base_model_version"] == profile.kohya_version and meta["hyperlora.base"] == profile.name
    monkeypatch.setitem(folder_paths.folder_names_and_paths, "loras",
                        ([str(tmp_path)], folder_paths.folder_names_and_paths["loras"][1]))
    (stock,) = comfy_nodes().LoraLoaderModelOnly().load_lora_model_only(model, path.name, 0.8)
    ours = apply_lora(model, lora, 0.8)
    assert set(stock.patches) == set(ours.patches) and len(ours.patches) == len(lora_modules(lora))
    theirs, mine = patched_weights(stock), patched_weights(ours)
    for key in mine:
        torch.testing.assert_close(theirs[key], mine[key], rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize(("made_for", "model_of"), list(itertools.permutations(NAMES, 2)))
def test_a_lora_for_one_base_on_a_model_of_another_names_both(made_for, model_of):
    profile, model = tiny_model(made_for)
    lora = id_lora(base_hyperlora(profile, model))
    other_profile, other = tiny_model(model_of)
    before = {k: v.clone() for k, v in other.model.state_dict().items()}
    with pytest.raises(HyperLoRAError, match=rf"ID-LoRA: this LoRA was made for {profile.display_name} \('{made_for}'\) "
                                             rf"but the MODEL is {other_profile.display_name} \('{model_of}'\)"):
        apply_lora(other, lora, 0.85)
    assert not other.patches and all(torch.equal(v, before[k]) for k, v in other.model.state_dict().items())


@pytest.mark.parametrize("fmt", ["single", "folder"])
def test_the_checkpoint_records_its_base(tiny, tmp_path, fmt):
    profile, model = tiny
    hl = base_hyperlora(profile, model)
    path = tmp_path / ("ckpt.safetensors" if fmt == "single" else "ckpt")
    (hl.save_single_file if fmt == "single" else hl.save_pretrained)(path, dtype=torch.float32)
    loaded = HyperLoRA.from_pretrained(path)
    assert loaded.config.base == profile.name and id_lora(loaded).base == profile.name


def test_a_checkpoint_without_a_base_is_sdxls(tmp_path):
    """The published checkpoints and our files from before base profiles record none: all were SDXL's."""
    profile, model = tiny_model("sdxl")
    hl = random_hyperlora(dataclasses.replace(base_hyperlora(profile, model).config, base=""), seed=0)
    hl.save_pretrained(tmp_path / "old", dtype=torch.float32)
    loaded = HyperLoRA.from_pretrained(tmp_path / "old")
    assert loaded.config.base == "" and loaded.config.base_name == "sdxl" and id_lora(loaded).base == "sdxl"


@pytest.mark.parametrize("name", [n for n in NAMES if n not in FIT_EXCLUDED])
def test_fit_on_the_tiny_model_overfits_a_fixed_batch(name, tmp_path):
    """The trainer on each base (as tests/test_train_fit.py's SDXL case, same criterion): the hypernetwork's
    LoRAs go through the base's conditioning and hooks, and the loss on one batch falls."""
    from fixtures.training import TINY_TRAIN_CONFIG

    from hyperlora_core.comfy_bridge.backbone import tiny_backbone
    from hyperlora_core.train.config import load_config
    from hyperlora_core.train.fit import close_session, open_session
    from hyperlora_core.train.objective import HyperStep, StepRunner
    from hyperlora_core.train.setup import new_hyperlora, set_trainable
    from hyperlora_core.train.synthetic import write_synthetic_dataset

    backbone = tiny_backbone(0, name)
    assert backbone.profile is profile_named(name) and profile_of(backbone.unet) is backbone.profile
    write_synthetic_dataset(tmp_path / "data", backbone, identities=4, photos=3)
    cfg = load_config(TINY_TRAIN_CONFIG, {
        "run_dir": str(tmp_path / "run"), "data": {"shards": str(tmp_path / "data")}, "model": {"base": name},
        "train": {"log": {"progress_bar": False}, "dropout": {"text": 0.0, "face": 0.0, "base_lora": 0.0},
                  "samples": {"every": -1}}})
    session = open_session(cfg)
    try:
        assert session.dataset.base is backbone.profile and session.config.base == name
        assert set(session.dataset.empty) == set(backbone.profile.text_keys)
        model = new_hyperlora(session.config, seed=0)
        set_trainable(model, "arcface_id", cfg.trainable("arcface_id"))
        step = HyperStep(model)
        opt = torch.optim.AdamW([p for p in step.parameters() if p.requires_grad], lr=2e-2)
        runner = StepRunner("arcface_id", cfg, session.backbone, session.denoiser, session.hook_state, session.info.device)
        batch = session.source.batch("arcface_id", 0, with_base=True)
        assert set(batch.cond) >= set(backbone.profile.text_keys)
        losses = []
        for _ in range(12):
            loss = runner.loss(step, batch)
            loss.backward()
            session.hook_state.clear()
            opt.step()
            opt.zero_grad()
            losses.append(loss.item())
    finally:
        close_session(session)
    assert losses[-1] < 0.6 * losses[0], losses
    assert sum(b < a for a, b in zip(losses, losses[1:])) >= 8, losses
