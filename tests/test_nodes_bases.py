"""The pack's nodes on every base of the registry, called as ComfyUI calls them: a HyperLoRA checkpoint for that
base written to a model folder, loaded by the Loader node, Generate -> Mix / Interpolate / Slider -> Apply -> Save,
and the saved file read back by ComfyUI's stock LoraLoaderModelOnly (tiny random models from ComfyUI's classes)."""

from __future__ import annotations

import folder_paths
import pytest
import torch
from fixtures.bases import CLIP_WIDTH, base_hyperlora, patched_weights, tiny_model
from fixtures.nodes_env import model_folder, output_folder, run_node
from fixtures.pack import load_pack
from safetensors import safe_open

from hyperlora_core import HyperLoRAError
from hyperlora_core.comfy_bridge import unet_lora_key_map
from hyperlora_core.comfy_bridge.bases import PROFILES, profile_named
from hyperlora_core.comfy_bridge.host_nodes import comfy_nodes
from hyperlora_core.conditions import IDCondition
from hyperlora_core.lora import lora_modules

pytestmark = pytest.mark.usefixtures("one_thread")

@pytest.fixture(scope="module")
def pack():
    return load_pack("auto")[1]




def _cond(n: int, seed: int) -> IDCondition:
    """What Encode ID hands on (random tokens and embeddings in place of encoded photos)."""
    g = torch.Generator().manual_seed(seed)
    return IDCondition(
        clip_tokens=torch.randn(n, 50, CLIP_WIDTH, generator=g),
        id_embeds=torch.nn.functional.normalize(torch.randn(n, 512, generator=g), dim=-1),
        weights=None, face_crops=torch.zeros(n, 8, 8, 3), photo_indices=tuple(range(n)), face_counts=(1,) * n,
        embedding_space="antelopev2",
    )


def _loaded(pack, name: str, folder):
    """(the Loader node's HyperLoRA for base `name`, a tiny model of that base, the checkpoint's config)."""
    profile, model = tiny_model(name)
    hl = base_hyperlora(profile, model)
    hl.save_single_file(folder / f"tiny_{name}.safetensors")
    with model_folder("hyper_lora", folder):
        (hyper_lora,), _ = run_node(pack["HyperLoRACheckpointLoader"], checkpoint=f"tiny_{name}.safetensors",
                                    dtype="auto")
    return hyper_lora, model, hl.config


@pytest.mark.parametrize("name", list(PROFILES))
def test_every_lora_node_works_on_the_base_and_comfyuis_loader_reads_what_save_wrote(pack, name, tmp_path,
                                                                                     monkeypatch):
    profile = profile_named(name)
    hyper_lora, model, config = _loaded(pack, name, tmp_path / "models")
    (a,), _ = run_node(pack["HyperLoRAGenerateID"], hyper_lora=hyper_lora, id_cond=_cond(2, 0))
    (b,), _ = run_node(pack["HyperLoRAGenerateID"], hyper_lora=hyper_lora, id_cond=_cond(1, 1))
    (mixed,), _ = run_node(pack["HyperLoRAMix"], mode="factors", normalize=True, lora_1=a, weight_1=1.0, lora_2=b,
                           weight_2=1.0, weight_3=1.0, weight_4=1.0)
    (half,), _ = run_node(pack["HyperLoRAInterpolate"], lora_a=a, lora_b=b, t=0.5, mode="factors")
    (slide,), _ = run_node(pack["HyperLoRAConceptSlider"], lora_a=a, lora_b=b, scale=1.0)
    for lora in (a, mixed, half, slide):
        assert lora.base == name  # every LoRA node keeps the base it was made for

    (patched,), _ = run_node(pack["HyperLoRAApply"], model=model, lora=mixed, strength=0.8, base_strength=0.0)
    before, after = patched_weights(model), patched_weights(patched)
    key_map = unet_lora_key_map(model)
    targets = {key_map[n] for n in lora_modules(mixed)}
    assert len(targets) == len(config.layer_names())
    changed = {k for k in after if not torch.equal(after[k], before[k])}
    assert changed == targets  # exactly the profile's target weights, every other weight bit-identical

    with output_folder(tmp_path / "out") as out:
        _, ui = run_node(pack["HyperLoRASave"], lora=mixed, filename_prefix=f"{name}/person", dtype="fp32")
    saved = out / ui["loras"][0]["subfolder"] / ui["loras"][0]["filename"]
    with safe_open(str(saved), "pt") as f:
        meta = f.metadata()
    assert meta["ss_base_model_version"] == profile.kohya_version and meta["hyperlora.base"] == name
    monkeypatch.setitem(folder_paths.folder_names_and_paths, "loras",
                        ([str(saved.parent)], folder_paths.folder_names_and_paths["loras"][1]))
    (stock,), _ = run_node(comfy_nodes().LoraLoaderModelOnly, model=model, lora_name=saved.name, strength_model=0.8)
    theirs = patched_weights(stock)
    assert set(stock.patches) == set(patched.patches)
    for key in targets:
        torch.testing.assert_close(theirs[key], after[key], rtol=1e-5, atol=1e-6)


def test_the_apply_node_names_both_bases_and_leaves_the_model_alone(pack, tmp_path):
    names = list(PROFILES)
    made_for, model_of = names[-1], names[0]
    hyper_lora, _, _ = _loaded(pack, made_for, tmp_path)
    (lora,), _ = run_node(pack["HyperLoRAGenerateID"], hyper_lora=hyper_lora, id_cond=_cond(1, 0))
    _, model = tiny_model(model_of)
    with pytest.raises(HyperLoRAError, match=rf"made for {profile_named(made_for).display_name} \('{made_for}'\) but "
                                             rf"the MODEL is {profile_named(model_of).display_name}"):
        run_node(pack["HyperLoRAApply"], model=model, lora=lora, strength=0.8, base_strength=0.0)
    assert not model.patches
