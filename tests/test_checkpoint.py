"""Loading and saving both checkpoint formats, with every setting inferred from shapes."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from hyperlora_core import HyperLoRA, HyperLoRAError
from hyperlora_core import config as C  # noqa: N812 - the config module's names, as C.Name
from hyperlora_core.checkpoint import find_checkpoint
from hyperlora_core.standins import random_hyperlora, small_config


@pytest.fixture(scope="module")
def model():
    return random_hyperlora(small_config(basis_size=8, rank=4, dim=64, depth=2, heads=2, id_tokens=4, ff_mult=2), seed=1)


@pytest.fixture()
def folder(model, tmp_path):
    out = tmp_path / "sdxl_hyper_id_lora_test"
    model.save_pretrained(out, dtype=torch.float16)
    return out


def test_published_layout_files_and_keys(folder):
    names = sorted(p.name for p in folder.iterdir())
    assert names == ["hyper_lora_modules.json", "hyper_lora_modules.safetensors", "id_projector.safetensors", "resampler.safetensors"]
    modules = json.loads((folder / "hyper_lora_modules.json").read_text())
    assert len(modules) == 140
    basis = load_file(str(folder / "hyper_lora_modules.safetensors"))
    assert basis["0.to_q.id_down_basis"].shape == (8, 640, 4)
    assert basis["1.to_k.id_down_basis"].shape == (8, 2048, 4)
    assert basis["139.to_out.id_up_basis"].shape == (8, 4, 1280)
    assert basis["0.to_q.id_down_basis"].dtype == torch.float16
    proj = load_file(str(folder / "id_projector.safetensors"))
    assert proj["0.weight"].shape == (4 * 64, 512) and proj["2.weight"].shape == (64,)


def test_every_setting_is_inferred(folder, model):
    hl = HyperLoRA.from_pretrained(folder)
    cfg = hl.config
    assert (cfg.basis_size, cfg.rank, cfg.base_rank) == (8, 4, None)
    rs = cfg.resampler
    assert (rs.dim, rs.depth, rs.num_queries, rs.output_dim, rs.ff_mult) == (64, 2, 1120, 8, 2)
    assert (rs.heads, rs.dim_head, rs.input_dims) == (2, 64, (64, 1024))
    assert (cfg.id_projector.embed_dim, cfg.id_projector.num_tokens, cfg.id_projector.token_dim) == (512, 4, 64)
    assert cfg.modules == model.config.modules
    assert HyperLoRA.from_pretrained(folder, dim_head=32).config.resampler.heads == 4


def test_base_part_is_inferred(tmp_path):
    random_hyperlora(small_config(base_rank=2), seed=2).save_pretrained(tmp_path, dtype=torch.float32)
    cfg = HyperLoRA.from_pretrained(tmp_path).config
    assert cfg.base_rank == 2 and cfg.base_resampler.input_dims == (1024,) and cfg.base_resampler.depth == 1


def test_single_file_round_trips_to_identical_tensors(folder, tmp_path):
    a = HyperLoRA.from_pretrained(folder)
    single = tmp_path / "one.safetensors"
    a.save_single_file(single, dtype=None)
    b = HyperLoRA.from_pretrained(single)
    assert a.config == b.config
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    # and back to the published layout, byte-identical tensors
    b.save_pretrained(tmp_path / "again", dtype=None)
    for name in ("hyper_lora_modules.safetensors", "resampler.safetensors", "id_projector.safetensors"):
        x, y = load_file(str(folder / name)), load_file(str(tmp_path / "again" / name))
        assert x.keys() == y.keys() and all(torch.equal(x[k], y[k].to(x[k].dtype)) for k in x)


def test_nested_folder_and_file_inside_are_found(folder, tmp_path):
    outer = tmp_path / "downloads"
    shutil.copytree(folder, outer / "sdxl_hyper_id_lora_test")
    assert find_checkpoint(outer) == outer / "sdxl_hyper_id_lora_test"
    assert find_checkpoint(folder / "resampler.safetensors") == folder


# -- bad inputs ---------------------------------------------------------------------------------
def test_missing_json(folder):
    (folder / "hyper_lora_modules.json").unlink()
    with pytest.raises(HyperLoRAError, match=r"hyper_lora_modules.json is missing.*copy it"):
        HyperLoRA.from_pretrained(folder)


def test_missing_safetensors(folder):
    (folder / "resampler.safetensors").unlink()
    with pytest.raises(HyperLoRAError, match=r"resampler.safetensors is missing"):
        HyperLoRA.from_pretrained(folder)
    (folder / "id_projector.safetensors").unlink()
    (folder / "hyper_lora_modules.json").unlink()
    (folder / "hyper_lora_modules.safetensors").unlink()
    with pytest.raises(HyperLoRAError, match=r"no hyper_lora_modules.json here.*put those four files"):
        HyperLoRA.from_pretrained(folder)


def test_git_lfs_pointer(folder):
    (folder / "hyper_lora_modules.safetensors").write_text(
        "version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 2970000000\n"
    )
    with pytest.raises(HyperLoRAError, match=r"hyper_lora_modules.safetensors: this is a Git-LFS pointer"):
        HyperLoRA.from_pretrained(folder)


def test_truncated_file(folder):
    path = folder / "resampler.safetensors"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(HyperLoRAError, match=r"resampler.safetensors: file is truncated.*bytes missing"):
        HyperLoRA.from_pretrained(folder)


def test_json_and_basis_disagree(folder):
    modules = json.loads((folder / "hyper_lora_modules.json").read_text())
    first = next(iter(modules))
    modules[first]["hidden_size"] = 1280
    (folder / "hyper_lora_modules.json").write_text(json.dumps(modules))
    with pytest.raises(HyperLoRAError, match=r"'0.to_q.id_down_basis' has shape \[8, 640, 4\].*needs \[8, 1280, 4\]"):
        HyperLoRA.from_pretrained(folder)
    del modules[first]
    (folder / "hyper_lora_modules.json").write_text(json.dumps(modules))
    with pytest.raises(HyperLoRAError, match=r"the JSON lists 139"):
        HyperLoRA.from_pretrained(folder)


def test_unknown_keys(folder):
    path = folder / "resampler.safetensors"
    tensors = load_file(str(path))
    tensors["layers.0.attn1.extra.weight"] = torch.zeros(2)
    save_file(tensors, str(path))
    with pytest.raises(HyperLoRAError, match=r"unexpected \['layers.0.attn1.extra.weight'\]"):
        HyperLoRA.from_pretrained(folder)
    basis_path = folder / "hyper_lora_modules.safetensors"
    basis = load_file(str(basis_path))
    basis["0.to_q.lora_magic"] = torch.zeros(1)
    save_file(basis, str(basis_path))
    with pytest.raises(HyperLoRAError, match=r"unexpected keys \['0.to_q.lora_magic'\]"):
        HyperLoRA.from_pretrained(folder)


def test_resampler_from_another_checkpoint(folder, tmp_path):
    other = tmp_path / "other"
    random_hyperlora(small_config(basis_size=16), seed=4).save_pretrained(other)
    shutil.copy(other / "resampler.safetensors", folder / "resampler.safetensors")
    with pytest.raises(HyperLoRAError, match=r"emits 16 coefficients per token but the basis has 8"):
        HyperLoRA.from_pretrained(folder)


def test_not_a_checkpoint(tmp_path):
    lora = tmp_path / "some_lora.safetensors"
    save_file({"x.lora_down.weight": torch.zeros(2, 2)}, str(lora))
    with pytest.raises(HyperLoRAError, match=r"not a HyperLoRA single-file checkpoint"):
        HyperLoRA.from_pretrained(lora)
    with pytest.raises(HyperLoRAError, match=r"no such file or folder"):
        HyperLoRA.from_pretrained(tmp_path / "nope")


# -- every checkpoint variant, both formats (spandrel-style: build, save, load, compare) -----------------
_MODULES = (C.ModuleSpec.attention("lora_unet_a_attn1", 64, None), C.ModuleSpec.attention("lora_unet_a_attn2", 64, 32),
            C.ModuleSpec.attention("lora_unet_b_attn1", 128, None))
_STREAMS = {"clip_only": (False, 1), "face_only": (True, 1), "dual": (True, 2)}
"""name -> (ID projector, condition streams): published = dual (ArcFace tokens, then CLIP tokens)."""


def _variant(streams: str, base: bool, dim_head: int) -> C.HyperLoRAConfig:
    projector, n = _STREAMS[streams]
    dim, clip = 64, 48
    inputs = {"clip_only": (clip,), "face_only": (dim,), "dual": (dim, clip)}[streams]
    queries = C.TOKENS_PER_MODULE * len(_MODULES)
    rs = C.ResamplerConfig(dim=dim, depth=2, num_queries=queries, output_dim=6, ff_mult=2, heads=dim // dim_head,
                           dim_head=dim_head, input_dims=inputs)
    base_rs = C.ResamplerConfig(dim=dim, depth=1, num_queries=queries, output_dim=6, ff_mult=2, heads=dim // dim_head,
                                dim_head=dim_head, input_dims=(clip,)) if base else None
    assert rs.num_conditions == n
    return C.HyperLoRAConfig(modules=_MODULES, basis_size=6, rank=2, resampler=rs,
                             id_projector=C.IDProjectorConfig(embed_dim=24, num_tokens=3, token_dim=dim) if projector else None,
                             base_rank=3 if base else None, base_resampler=base_rs, face_pack="buffalo_l")


@pytest.mark.parametrize("fmt", ["folder", "single"])
@pytest.mark.parametrize("dim_head", [C.DEFAULT_DIM_HEAD, 16])
@pytest.mark.parametrize("base", [False, True])
@pytest.mark.parametrize("streams", list(_STREAMS))
def test_every_variant_round_trips_with_its_settings_read_from_the_shapes(tmp_path, streams, base, dim_head, fmt):
    config = _variant(streams, base, dim_head)
    model = random_hyperlora(config, seed=11)
    path = tmp_path / ("ckpt" if fmt == "folder" else "ckpt.safetensors")
    if fmt == "folder":
        model.save_pretrained(path, dtype=torch.float32)
    else:
        model.save_single_file(path, dtype=torch.float32)
    # the published layout cannot tell heads from dim_head (only their product): the caller says it;
    # our single file stores it
    loaded = HyperLoRA.from_pretrained(path, dim_head=dim_head if fmt == "folder" else None)
    assert loaded.config == config  # the face pack too: both formats carry it in the metadata
    assert loaded.state_dict().keys() == model.state_dict().keys()
    assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in model.state_dict().items())
    g = torch.Generator().manual_seed(0)
    clip = torch.randn(2, 5, 48, generator=g) if streams != "face_only" else None
    face = torch.nn.functional.normalize(torch.randn(2, 24, generator=g), dim=-1) if config.id_projector else None
    if clip is None:
        clip = torch.randn(2, 5, 48, generator=g)  # unread by a face-only model; the API still takes the photos' tokens
    for a, b in ((model.generate_id_lora(clip, face), loaded.generate_id_lora(clip, face)),
                 *(((model.generate_base_lora(clip), loaded.generate_base_lora(clip)),) if base else ())):
        assert a.keys() == b.keys() and len(a) == 3 * 4 * len(_MODULES)
        assert all(torch.equal(a[k], b[k]) for k in a)
