"""Loader, Generate, Mix, Apply and Save nodes, called as ComfyUI calls them (V3 classes loaded through
ComfyUI's custom-node loader), on a tiny checkpoint written to disk and loaded back."""

from __future__ import annotations

import pytest
import torch
from fixtures.nodes_env import assert_progress, model_folder, output_folder, progress_events, run_node, validate_node
from fixtures.pack import load_pack
from safetensors import safe_open

from hyperlora_core import HyperLoRA, HyperLoRAError, standins
from hyperlora_core.conditions import IDCondition
from hyperlora_core.lora import interpolate_loras, mix_loras, slider_lora


@pytest.fixture(scope="module")
def pack():
    return load_pack("auto")[1]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models") / "hyper_lora"
    standins.write_tiny_checkpoint(root / "tiny_single.safetensors", seed=3)
    standins.write_tiny_checkpoint(root / "hyper_lora" / "tiny_published", seed=3, published_layout=True)
    (root / "notes.txt").write_text("not a checkpoint")
    with model_folder("hyper_lora", root):
        yield root


@pytest.fixture(scope="module")
def hyper_lora(pack, models):
    return run_node(pack["HyperLoRACheckpointLoader"], checkpoint="tiny_single.safetensors", dtype="auto")[0][0]


def _cond(n: int, seed: int = 0, weights=None, space: str = "antelopev2") -> IDCondition:
    """What an Encode node hands on (random tokens and embeddings in place of encoded photos)."""
    g = torch.Generator().manual_seed(seed)
    return IDCondition(
        clip_tokens=torch.randn(n, 257, standins.TINY_VISION_WIDTH, generator=g),
        id_embeds=torch.nn.functional.normalize(torch.randn(n, 512, generator=g), dim=-1),
        weights=None if weights is None else torch.tensor(weights),
        face_crops=torch.zeros(n, 8, 8, 3), photo_indices=tuple(range(n)), face_counts=(1,) * n,
        embedding_space=space,
    )


def _core(path) -> HyperLoRA:
    return HyperLoRA.from_pretrained(path)


def _assert_same_lora(a, b, atol=1e-6):
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k].float(), b[k].float(), atol=atol, rtol=1e-5, msg=k)


def test_loader_lists_published_folders_and_single_files(pack, models):
    options = pack["HyperLoRACheckpointLoader"].INPUT_TYPES()["required"]["checkpoint"]
    names = options[1]["options"] if options[0] == "COMBO" else options[0]
    # The published place (hyper_lora/hyper_lora/<name>/) lists by the folder's main file, the name the
    # workflows' download entries carry.
    published = "tiny_published/hyper_lora_modules.safetensors"
    assert "tiny_single.safetensors" in names and published in names
    assert not any(n.endswith(("resampler.safetensors", "notes.txt")) for n in names)
    a = run_node(pack["HyperLoRACheckpointLoader"], checkpoint=published, dtype="fp32")[0][0]
    older = run_node(pack["HyperLoRACheckpointLoader"], checkpoint="hyper_lora/tiny_published", dtype="fp32")[0][0]
    b = run_node(pack["HyperLoRACheckpointLoader"], checkpoint="tiny_single.safetensors", dtype="fp32")[0][0]
    cond = _cond(1)
    gen = pack["HyperLoRAGenerateID"]
    lora = run_node(gen, hyper_lora=a, id_cond=cond)[0][0]
    _assert_same_lora(lora, run_node(gen, hyper_lora=b, id_cond=cond)[0][0])
    _assert_same_lora(lora, run_node(gen, hyper_lora=older, id_cond=cond)[0][0])  # an older workflow's folder name


def test_loader_explains_a_missing_checkpoint(pack, models):
    with pytest.raises(HyperLoRAError, match="not found in models/hyper_lora"):
        run_node(pack["HyperLoRACheckpointLoader"], checkpoint="gone.safetensors", dtype="auto")


def test_generate_equals_the_core_and_reports_progress(pack, models, hyper_lora):
    core = _core(models / "tiny_single.safetensors")
    cond = _cond(3, seed=1, weights=[2.0, 1.0, 1.0])
    with progress_events() as events:
        (lora,), _ = run_node(pack["HyperLoRAGenerateID"], hyper_lora=hyper_lora, id_cond=cond)
    expected = core.generate_id_lora(cond.clip_tokens, cond.id_embeds, cond.weights)
    _assert_same_lora(lora, expected, atol=1e-5)
    assert_progress(events, 4)  # one step per photo, one for the basis mix
    unweighted = core.generate_id_lora(cond.clip_tokens, cond.id_embeds)
    diff = max((unweighted[k].float() - lora[k].float()).abs().max().item() for k in lora if k.endswith("up.weight"))
    assert diff > 1e-4  # the weights were used


def test_generate_refuses_face_embeddings_from_another_pack(pack, hyper_lora):
    cond = _cond(1, space="buffalo_l")
    with pytest.raises(HyperLoRAError, match='trained on "antelopev2" face embeddings.*"buffalo_l"'):
        run_node(pack["HyperLoRAGenerateID"], hyper_lora=hyper_lora, id_cond=cond)
    (lora,), _ = run_node(pack["HyperLoRAGenerateID"], hyper_lora=hyper_lora, id_cond=cond, allow_other_face_pack=True)
    ups = [v for k, v in lora.items() if k.endswith("lora_up.weight")]
    assert ups and len(lora) == 3 * len(ups) and any(u.abs().sum() > 0 for u in ups)  # a whole LoRA was made


def test_generate_base_lora(pack, models, hyper_lora):
    core = _core(models / "tiny_single.safetensors")
    cond = _cond(2, seed=5)
    (lora,), _ = run_node(pack["HyperLoRAGenerateBase"], hyper_lora=hyper_lora, base_cond=cond)
    _assert_same_lora(lora, core.generate_base_lora(cond.clip_tokens), atol=1e-5)
    assert all(v.shape[0] == 2 for k, v in lora.items() if k.endswith("lora_down.weight"))  # base rank


@pytest.fixture(scope="module")
def two_loras(pack, hyper_lora):
    gen = pack["HyperLoRAGenerateID"]
    return (run_node(gen, hyper_lora=hyper_lora, id_cond=_cond(1, seed=10))[0][0],
            run_node(gen, hyper_lora=hyper_lora, id_cond=_cond(1, seed=11))[0][0])


def test_mix_interpolate_and_slider_nodes(pack, two_loras):
    a, b = two_loras
    (mixed,), _ = run_node(pack["HyperLoRAMix"], mode="factors", normalize=True, lora_1=a, weight_1=3.0,
                           lora_2=b, weight_2=1.0, weight_3=1.0, weight_4=1.0)
    _assert_same_lora(mixed, mix_loras([a, b], [0.75, 0.25], "factors"))
    (raw,), _ = run_node(pack["HyperLoRAMix"], mode="delta", normalize=False, lora_1=a, weight_1=0.5,
                         weight_2=1.0, weight_3=1.0, weight_4=1.0)
    _assert_same_lora(raw, mix_loras([a], [0.5], "delta"))
    (half,), _ = run_node(pack["HyperLoRAInterpolate"], lora_a=a, lora_b=b, t=0.5, mode="factors")
    _assert_same_lora(half, interpolate_loras(a, b, 0.5, "factors"))
    (slide,), _ = run_node(pack["HyperLoRAConceptSlider"], lora_a=a, lora_b=b, scale=2.0)
    _assert_same_lora(slide, slider_lora(a, b, 2.0))
    with pytest.raises(HyperLoRAError, match="sum to 0"):
        run_node(pack["HyperLoRAMix"], mode="factors", normalize=True, lora_1=a, weight_1=1.0, lora_2=b,
                 weight_2=-1.0, weight_3=1.0, weight_4=1.0)


def test_apply_patches_a_clone(pack, two_loras):
    a, b = two_loras
    model = standins.build_tiny_sdxl(0)
    (patched,), _ = run_node(pack["HyperLoRAApply"], model=model, lora=a, strength=0.85, base_strength=0.0)
    assert model.patches == {} and len(patched.patches) == len(a) // 3
    (both,), _ = run_node(pack["HyperLoRAApply"], model=model, lora=a, strength=0.85, base_lora=b, base_strength=0.5)
    assert all(len(p) == 2 for p in both.patches.values())
    (untouched,), _ = run_node(pack["HyperLoRAApply"], model=model, lora=a, strength=0.0, base_strength=0.0)
    assert untouched.patches == {}


def test_save_writes_numbered_files_inside_the_output_folder(pack, two_loras, tmp_path):
    a, _ = two_loras
    save = pack["HyperLoRASave"]
    with output_folder(tmp_path / "out") as out:
        _, ui1 = run_node(save, lora=a, filename_prefix="faces/ann", dtype="fp16", notes="three photos")
        _, ui2 = run_node(save, lora=a, filename_prefix="faces/ann", dtype="fp32")
        _, ui3 = run_node(save, lora=a, filename_prefix="we:ird*name", dtype="fp16")
    first, second = (out / "faces" / ui["loras"][0]["filename"] for ui in (ui1, ui2))
    assert first.name == "ann_00001_.safetensors" and second.name == "ann_00002_.safetensors"
    assert ui1["loras"][0]["subfolder"] == "faces" and ui1["loras"][0]["type"] == "output"
    odd = out / ui3["loras"][0]["filename"]
    assert odd.is_file() and odd.name == "we_ird_name_00001_.safetensors"
    with safe_open(str(first), "pt") as f:
        meta = f.metadata()
        assert f.get_tensor(next(k for k in a if k.endswith("up.weight"))).dtype == torch.float16
    assert meta["hyperlora.trigger_words"] == "fcsks fxhks fhyks, " and meta["hyperlora.notes"] == "three photos"
    assert meta["ss_network_dim"] == str(next(v for k, v in a.items() if k.endswith("down.weight")).shape[0])


@pytest.mark.parametrize("prefix", ["../escape", "/etc/passwd", "a/../../b", "C:/x", " "])
def test_save_refuses_names_outside_the_output_folder(pack, two_loras, tmp_path, prefix):
    save = pack["HyperLoRASave"]
    message = validate_node(save, filename_prefix=prefix)
    assert isinstance(message, str) and "filename_prefix" in message
    with output_folder(tmp_path / "out"), pytest.raises(HyperLoRAError, match="filename_prefix"):
        run_node(save, lora=two_loras[0], filename_prefix=prefix, dtype="fp16")
    assert not any((tmp_path / "out").rglob("*.safetensors"))
