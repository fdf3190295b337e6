"""The toy world's second base, a DiT (the FLUX profile's tiny transformer, flow matching), at smoke size: the build
(`--base dit`) trains it by the UNet's base loop and its HyperLoRA by `python -m hyperlora_core.train fit` with the
same recipe, writes its files beside the shared parts; the one batched hook sampler makes the KSampler path's
images on it; the exported HyperLoRA's LoRA, through the nodes, patches exactly the DiT's target layers (and
ComfyUI's own LoRA loader reads the saved file the same way); the Toy World Loader offers both bases.

One smoke build (about 30 s on one thread) serves every test here."""

from __future__ import annotations

import dataclasses

import folder_paths
import numpy as np
import pytest
import torch
from fixtures.bases import patched_weights
from fixtures.nodes_env import model_folder, output_folder, run_node
from fixtures.pack import load_pack
from fixtures.toy import assert_hook_sampler_equals_ksampler

from hyperlora_core import HyperLoRAError
from hyperlora_core.comfy_bridge import unet_lora_key_map
from hyperlora_core.comfy_bridge.bases import FLUX, profile_of
from hyperlora_core.comfy_bridge.host_nodes import comfy_nodes
from hyperlora_core.lora import lora_modules
from hyperlora_core.toy import files

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A smoke-size world with every shared part and the DiT base (no UNet), and the build's records."""
    from hyperlora_core.toy.build import STAGES, main

    out = tmp_path_factory.mktemp("dit_world") / "toy_world"
    threads = torch.get_num_threads()
    try:
        # every stage: a fresh folder has no shared parts (`--base dit` alone trains only the DiT's base, hyper, eval)
        stats = main(["--smoke", "--threads", "1", "--base", "dit", "--stages", ",".join(STAGES), "--out", str(out)])
    finally:
        torch.set_num_threads(threads)
    return out, stats


@pytest.fixture(scope="module")
def toy(built):
    from hyperlora_core.toy.world_loader import ToyWorld

    return ToyWorld.load(built[0], base="dit")


def test_the_smoke_build_writes_the_dit_beside_the_shared_parts(built, toy):
    out, stats = built
    for part in files.DIT_FILES:
        assert files.part_path(part, out).is_file(), part
    for part in ("judge", "base_judge", "arcface", "clip_vision", "vae"):  # the parts both bases share
        assert files.part_path(part, out).is_file(), part
    assert not files.part_path("unet", out).exists()  # --base dit trains no UNet
    assert {"dit_base", "dit_hyper"} <= set(stats["stages"]) and "base" not in stats["stages"]
    dit_base = stats["stages"]["dit_base"]
    assert dit_base["steps"] == 3 and dit_base["minutes"] >= 0 and len(dit_base["fidelity_curve"]) == 1
    assert len(dit_base["fidelity_curve"][0]["per_attribute"]) == 9  # measured as the UNet's: 6 attributes + 3 base
    assert stats["dit_eval"]["identities"] == 2 and "heldout_match_with_lora=" in stats["dit_eval"]["summary_line"]
    from hyperlora_core.train.config import load_config

    cfg = load_config(out / "toy_dit_train.yaml")  # the config its HyperLoRA was trained with, as written
    assert cfg.model.backbone == "toy" and cfg.model.base == "flux"
    assert cfg.stage_names() == ["base", "clip_id", "arcface_id"]  # the UNet world's recipe

    # the DiT is ComfyUI's FLUX, reading the shared VAE's 4 latent channels in SDXL's latent format
    assert profile_of(toy.unet) is FLUX and toy.base.name == "dit"
    dm = toy.unet.model.diffusion_model
    assert dm.img_in.in_features == 4 * 2 * 2 and toy.unet.model.latent_format.latent_channels == 4
    assert toy.unet.model.model_sampling.sigmas[-1] == 1.0  # the flow schedule (sigma 1 is pure noise)
    # its HyperLoRA is made for FLUX and targets the profile's default set on the toy DiT
    hl = toy.hyperlora
    assert hl.config.base == "flux" and hl.config.has_base
    assert [m.name for m in hl.config.modules] == [m.name for m in FLUX.module_specs(toy.unet)]
    assert len(hl.config.layer_names()) == 2 * 2 + 4 * 2  # image qkv + proj of 2 double, linear1 + 2 of 4 single
    ups = [v for k, v in toy.lora_for(*toy.conditioner(torch.rand(2, 3, 32, 32))).items() if k.endswith("lora_up.weight")]
    assert sum(float(u.abs().sum()) for u in ups) > 0, "the exported HyperLoRA's LoRA is still zero: nothing trained"

    # the DiT's files are full size at smoke size too (only the steps differ): with the shipped UNet world's parts the
    # repository's world stays within its 32 MiB fp16 budget
    dit_bytes = sum(files.part_path(part, out).stat().st_size for part in files.DIT_FILES)
    shipped = sum(p.stat().st_size for p in (files.part_path(part, files.DEFAULT_DIR) for part in files.FILES) if p.is_file())
    assert dit_bytes + shipped <= 32 * 2**20, (dit_bytes, shipped)


def test_the_hook_sampler_gives_the_ksampler_images_on_the_dit(built):
    """ID-LoRA + Base-LoRA at two strengths, an editing caption and CFG 2, and the bare model: the batch (the DiT's
    per-sample hooks, the bridge's Euler with FLUX's scheduler) equals Apply -> KSampler -> VAEDecode per identity.
    Three smoke steps leave the DiT as it starts (adaLN-Zero: every block's gate and the output layer zero, so
    nothing a LoRA changes reaches the image), so the world's DiT gets seeded random weights and a random
    HyperLoRA of the same table: captions, CFG and LoRAs all change the images."""
    from hyperlora_core.comfy_bridge.random_init import init_weights
    from hyperlora_core.toy.world_loader import ToyWorld

    toy = ToyWorld.load(built[0], base="dit")  # its own copy: the random weights stay in this test
    init_weights(toy.unet.model.diffusion_model, seed=0, std=0.1)
    from hyperlora_core.standins import random_hyperlora

    world = dataclasses.replace(toy, hyperlora=random_hyperlora(toy.hyperlora.config, seed=4).eval())
    assert_hook_sampler_equals_ksampler(world, identities=4, steps=8)


@pytest.fixture(scope="module")
def pack():
    return load_pack("auto")[1]


def test_the_dit_lora_patches_exactly_its_target_layers_through_the_nodes(pack, built, tmp_path, monkeypatch):
    """Toy World Loader (base dit) -> Toy Encode -> Generate ID LoRA -> Apply: exactly the DiT's target weights
    change (every other weight bit-identical); Save's file through ComfyUI's LoraLoaderModelOnly patches the same."""
    out, _ = built
    with model_folder("toy_world", out):
        model, _, _, hyper_lora = run_node(pack["HyperLoRAToyWorldLoader"], world="toy_world", base="dit")[0]
        photos = torch.from_numpy(files_photos()).float() / 255.0
        (cond, _), _ = run_node(pack["HyperLoRAToyEncode"], photos=photos, world="toy_world", weights="")
    assert profile_of(model) is FLUX
    (lora,), _ = run_node(pack["HyperLoRAGenerateID"], hyper_lora=hyper_lora, id_cond=cond, allow_other_face_pack=False)
    assert lora.base == "flux"
    (patched,), _ = run_node(pack["HyperLoRAApply"], model=model, lora=lora, strength=1.0, base_strength=0.0)
    before, after = patched_weights(model), patched_weights(patched)
    key_map = unet_lora_key_map(model)
    targets = {key_map[n] for n in lora_modules(lora)}
    assert targets == {f"diffusion_model.{n}.weight" for n in
                       ("double_blocks.0.img_attn.qkv", "double_blocks.0.img_attn.proj", "double_blocks.1.img_attn.qkv",
                        "double_blocks.1.img_attn.proj", *(f"single_blocks.{i}.linear{k}" for i in range(4) for k in (1, 2)))}
    changed = {k for k in after if not torch.equal(after[k], before[k])}
    assert changed == targets  # exactly the DiT's target weights, every other weight bit-identical

    with output_folder(tmp_path / "out") as saved_dir:
        _, ui = run_node(pack["HyperLoRASave"], lora=lora, filename_prefix="dit/person", dtype="fp32")
    saved = saved_dir / ui["loras"][0]["subfolder"] / ui["loras"][0]["filename"]
    monkeypatch.setitem(folder_paths.folder_names_and_paths, "loras",
                        ([str(saved.parent)], folder_paths.folder_names_and_paths["loras"][1]))
    (stock,), _ = run_node(comfy_nodes().LoraLoaderModelOnly, model=model, lora_name=saved.name, strength_model=1.0)
    theirs = patched_weights(stock)
    for key in targets:
        torch.testing.assert_close(theirs[key], after[key], rtol=1e-5, atol=1e-6)


def files_photos() -> np.ndarray:
    """Two photos of one held-out identity, uint8 `[2, 32, 32, 3]`."""
    from hyperlora_core.toy.install import heldout_photos

    return heldout_photos(0, 2)[0]


def test_the_toy_world_loader_offers_both_bases(pack, built):
    out, _ = built
    node = next(d for d in pack_defs() if d.node_id == "HyperLoRAToyWorldLoader")
    base = next(i for i in node.inputs if i.name == "base")
    assert base.option_list() == ["unet", "dit"] and base.default == "unet" and base.optional
    with model_folder("toy_world", out):
        from hyperlora_core.toy.files import world_choices

        assert "toy_world" in world_choices()  # a world with only a DiT is listed
        (model, clip, vae, _), _ = run_node(pack["HyperLoRAToyWorldLoader"], world="toy_world", base="dit")
        assert profile_of(model) is FLUX
        with pytest.raises(HyperLoRAError, match=r"has no tiny SDXL-class UNet \(toy_unet.safetensors\).*make toy-world"):
            run_node(pack["HyperLoRAToyWorldLoader"], world="toy_world", base="unet")


def pack_defs():
    from fixtures.pack import pack_submodule

    return pack_submodule("nodes.registry").node_defs()
