"""Training from split model files (how FLUX and Z-Image ship: a diffusion model, text encoder files, a VAE),
through ComfyUI's own loaders, on the real host.

- FLUX: a tiny FLUX.1 saved as a diffusion-model file is detected as FLUX, and `fit` through the split form
  equals `fit` on the same weights through an all-in-one checkpoint (the trainer's existing path), within
  fixtures/training.py's bounds. ComfyUI's detection fixes FLUX's heads at 24 of 128 wide, so the model has
  FLUX.1's full width (3072) but one double and one single block (531 M parameters, stored in bf16); its
  text widths are the tiny text encoders' (ComfyUI builds T5-XXL at full size from a fixed config, too big to
  run here, so FLUX's shards come from the tiny encoders).
- `prepare` through split files on SD1.5, the one base whose text encoder ComfyUI builds at a size a CPU test
  affords: a full-size CLIP-L (123 M, random weights) through `comfy.sd.load_clip`, a TAESD VAE file, and a
  small SD1.5-detected UNet that prepare never loads (its header names the base).
- Every mistake in the split form is one error naming the file and the fix, raised before anything loads.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import comfy.sd
import comfy.sd1_clip
import comfy.taesd.taesd
import comfy.utils
import pytest
import torch
import yaml
from fixtures.training import SGD, TINY_TRAIN_CONFIG, assert_same_losses, assert_same_training
from safetensors.torch import load_file, save_file

from hyperlora_core.comfy_bridge import backbone
from hyperlora_core.comfy_bridge.bases import flux, profile_named, sd15
from hyperlora_core.comfy_bridge.random_init import init_weights
from hyperlora_core.errors import HyperLoRAError
from hyperlora_core.train.config import load_config, parse_config
from hyperlora_core.train.fit import build_backbone, fit
from hyperlora_core.train.observe import read_losses
from hyperlora_core.train.prepare import prepare
from hyperlora_core.train.setup import hyper_config, new_hyperlora
from hyperlora_core.train.shards import ShardDataset
from hyperlora_core.train.synthetic import write_synthetic_dataset

pytestmark = pytest.mark.usefixtures("one_thread")

FLUX = profile_named("flux")
SD15 = profile_named("sd15")
FLUX_CONFIG = {**flux.UNET_CONFIG, "vec_in_dim": flux.TINY_POOLED_WIDTH, "context_in_dim": flux.TINY_TEXT_WIDTH,
               "depth": 1, "depth_single_blocks": 1}
"""FLUX.1-dev's blocks at full width (what ComfyUI's detection reads back), one of each, tiny text widths."""
SD15_CONFIG = {**sd15.UNET_CONFIG, "num_res_blocks": [1], "channel_mult": [1], "transformer_depth": [1],
               "transformer_depth_output": [1, 1]}
"""SD1.5's widths (320 channels, 768-wide context: what ComfyUI recognises SD1.5 by) at one level (26 M)."""
NAME = "tiny_flux.safetensors"
STEPS = 3


def _taesd(channels: int, seed: int) -> dict[str, torch.Tensor]:
    """A random TAESD as a VAE file holds it (ComfyUI's VAELoader reads TAESD weights by their keys)."""
    taesd = comfy.taesd.taesd.TAESD(latent_channels=channels)
    init_weights(taesd, seed=seed, std=0.05)
    with torch.no_grad():
        taesd.vae_scale.fill_(1.0)
        taesd.vae_shift.fill_(0.0)
    return {k: v.contiguous() for k, v in taesd.state_dict().items()}


@pytest.fixture(scope="module")
def tiny_flux() -> backbone.Backbone:
    """The tiny FLUX backbone: its text encoders write the FLUX shards, its CLIP ViT reads the face crops."""
    return backbone.tiny_backbone(0, base="flux")


@pytest.fixture(scope="module")
def files(tmp_path_factory, tiny_flux) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("split")
    model = FLUX.build(FLUX_CONFIG)
    init_weights(model.model, seed=0, std=0.02)
    weights = {k: v.to(torch.bfloat16).contiguous() for k, v in model.model.diffusion_model.state_dict().items()}
    del model
    out = {"flux": root / "diffusion_models" / NAME, "flux_checkpoint": root / "checkpoints" / NAME,
           "flux_vae": root / "vae" / "tiny_flux_vae.safetensors", "sd15": root / "diffusion_models" / "sd15.safetensors",
           "clip_l": root / "text_encoders" / "clip_l.safetensors", "sd15_vae": root / "vae" / "taesd.safetensors"}
    for path in out.values():
        path.parent.mkdir(exist_ok=True)
    save_file(weights, out["flux"])
    flux_vae = _taesd(16, seed=2)
    save_file(flux_vae, out["flux_vae"])
    save_file({**{f"model.diffusion_model.{k}": v for k, v in weights.items()},
               **{f"vae.{k}": v for k, v in flux_vae.items()}}, out["flux_checkpoint"])
    del weights
    unet = SD15.build(SD15_CONFIG)
    init_weights(unet.model, seed=0, std=0.02)
    save_file({k: v.half().contiguous() for k, v in unet.model.diffusion_model.state_dict().items()}, out["sd15"])
    clip_l = comfy.sd1_clip.SDClipModel(device="cpu", dtype=torch.float32)  # ComfyUI's CLIP-L, full size
    init_weights(clip_l.transformer, seed=1)
    save_file({k: v.half().contiguous() for k, v in clip_l.transformer.state_dict().items()}, out["clip_l"])
    save_file(_taesd(4, seed=3), out["sd15_vae"])
    return out


def _config(tmp: Path, model: dict, extra: list[str] = ()):
    sets = [f"run_dir={tmp / 'run'}", f"data.shards={tmp / 'data'}", "model.backbone=checkpoint",
            *[f"model.{k}={v}" for k, v in model.items()], *extra]
    return load_config(TINY_TRAIN_CONFIG, sets)


# -- fit: split files equal the all-in-one checkpoint ----------------------------------------------------------
@pytest.fixture
def tiny_vision_checkpoint_kind(monkeypatch, tiny_flux) -> str:
    """The `checkpoint` backbone with the tiny CLIP ViT in place of a CLIP vision file (ComfyUI's
    `clip_vision.load` knows only full-size ViTs); everything else is the real kind's."""
    monkeypatch.setattr(backbone, "_KINDS", dict(backbone._KINDS))
    real = backbone.backbone_kind("checkpoint")

    def load(**model) -> backbone.Backbone:
        return dataclasses.replace(real.load(**model), clip_vision=tiny_flux.clip_vision)

    backbone.register_backbone(dataclasses.replace(real, name="checkpoint_tiny_vision", load=load))
    return "checkpoint_tiny_vision"


def test_fit_from_a_flux_diffusion_model_file_equals_fit_from_its_checkpoint(
        files, tiny_flux, tiny_vision_checkpoint_kind, tmp_path):
    assert backbone.diffusion_model_profile(files["flux"]) is FLUX
    data = tmp_path / "data"
    shards_from = dataclasses.replace(tiny_flux, unet=None, name=NAME)  # the name fit checks the shards against
    write_synthetic_dataset(data, shards_from, identities=2, photos=2, size=32)
    raw = yaml.safe_load(TINY_TRAIN_CONFIG.read_text())
    raw["stages"] = {"clip_id": {"steps": STEPS}}  # one stage, no Base-LoRA branch: the fewest steps through FLUX
    sets = [f"data.shards={data}", f"model.backbone={tiny_vision_checkpoint_kind}", "hypernetwork.base_rank=null",
            "train.samples.every=-1", "train.log.progress_bar=false", "train.log.tensorboard=false",
            "train.batch={identities: 1, photos_per_identity: 2}",
            "train.optimizer={" + ", ".join(f"{k}: {v}" for k, v in SGD.items()) + "}"]
    # split: the diffusion model alone (fit without sample grids needs neither text encoders nor VAE)
    split = parse_config(yaml.safe_dump(raw), overrides=[f"run_dir={tmp_path / 'split'}", *sets,
                                                          f"model.diffusion_model={files['flux']}"])
    whole = parse_config(yaml.safe_dump(raw), overrides=[f"run_dir={tmp_path / 'whole'}", *sets,
                                                          f"model.checkpoint={files['flux_checkpoint']}"])
    fit(split)
    fit(whole)
    one, two = tmp_path / "whole" / "clip_id", tmp_path / "split" / "clip_id"
    losses = [r["loss"] for r in read_losses(one)]
    assert len(losses) == STEPS and all(0 < x < 1e3 for x in losses), losses
    assert_same_losses(losses, [r["loss"] for r in read_losses(two)], "split vs checkpoint")
    specs = FLUX.module_specs(FLUX.build(FLUX_CONFIG, device="meta"), whole.lora.targets)
    init = new_hyperlora(hyper_config(whole, specs, backbone.TINY_CLIP_VISION["hidden_size"], "flux"), whole.seed)
    init.save_single_file(tmp_path / "init.safetensors", dtype=None)
    assert_same_training(load_file(one / "final.safetensors"), load_file(two / "final.safetensors"),
                         load_file(tmp_path / "init.safetensors"), "split vs checkpoint")


# -- prepare: text encoders and VAE from their own files --------------------------------------------------------
def test_prepare_from_split_sd15_files_encodes_with_comfyuis_loaders_and_never_loads_the_unet(files, tmp_path):
    cfg = _config(tmp_path, {"diffusion_model": files["sd15"], "text_encoders": f"[{files['clip_l']}]",
                             "vae": files["sd15_vae"]})
    made = build_backbone(cfg, ("text_encoders", "vae"))
    assert made.unet is None and made.profile is SD15 and made.name == "sd15.safetensors"
    del made
    prepare(cfg, None, synthetic=True, resolution=64)
    # the same dataset from the encoders ComfyUI's CLIPLoader (type stable_diffusion) and VAELoader make of the files
    reference = backbone.Backbone(
        unet=None, clip=comfy.sd.load_clip([str(files["clip_l"])], clip_type=comfy.sd.CLIPType.STABLE_DIFFUSION),
        vae=comfy.sd.VAE(sd=comfy.utils.load_torch_file(str(files["sd15_vae"]))), clip_vision=None,
        name="sd15.safetensors", profile=SD15)
    write_synthetic_dataset(tmp_path / "reference", reference, size=64)
    ours, theirs = ShardDataset(tmp_path / "data"), ShardDataset(tmp_path / "reference")
    assert ours.base is SD15 and ours.info["backbone"] == theirs.info["backbone"] == "sd15.safetensors"
    assert ours.tensors["empty_text"].shape[-1] == 768  # ComfyUI built the full CLIP-L from the file
    assert ours.tensors.keys() == theirs.tensors.keys()
    for key in ours.tensors:
        assert torch.equal(ours.tensors[key], theirs.tensors[key]), key
    assert len(ours.samples) == len(theirs.samples) == 12
    for i in range(len(ours.samples)):
        a, b = ours.load(i, with_base=True), theirs.load(i, with_base=True)
        assert torch.equal(a["latent"], b["latent"]) and a["latent"].shape[0] == 4
        assert a["cond"].keys() == b["cond"].keys() == {"context"}
        assert torch.equal(a["cond"]["context"], b["cond"]["context"])
    ours.close()
    theirs.close()


# -- mistakes: one error naming the file and the fix, before anything loads ----------------------------------
def _refused(cfg, parts=("diffusion_model", "text_encoders", "vae")) -> str:
    with pytest.raises(HyperLoRAError) as caught:
        build_backbone(cfg, parts)
    return str(caught.value)


def test_a_diffusion_model_of_another_base_than_the_configs_is_refused(files, tmp_path):
    message = _refused(_config(tmp_path, {"diffusion_model": files["flux"], "base": "sd15"}), ("diffusion_model",))
    assert str(files["flux"]) in message and "FLUX.1 model" in message and "'sd15'" in message
    assert "set model.base to 'flux' or leave it out" in message


def test_a_file_that_is_no_diffusion_model_is_refused(files, tmp_path):
    message = _refused(_config(tmp_path, {"diffusion_model": files["clip_l"]}), ("diffusion_model",))
    assert f"ComfyUI does not recognise '{files['clip_l']}' as a diffusion model" in message
    assert "models/diffusion_models" in message


def test_text_encoders_of_the_wrong_kind_or_number_are_refused(files, tmp_path):
    flux_files = {"diffusion_model": files["flux"], "vae": files["flux_vae"]}
    message = _refused(_config(tmp_path, {**flux_files, "text_encoders": f"[{files['clip_l']}]"}))
    assert message.startswith("model.text_encoders lists CLIP-L, but FLUX.1 reads captions with CLIP-L and T5-XXL, "
                              "one file each"), message
    twice = _refused(_config(tmp_path, {**flux_files, "text_encoders": f"[{files['clip_l']}, {files['clip_l']}]"}))
    assert twice.startswith("model.text_encoders lists CLIP-L, CLIP-L, but FLUX.1"), twice
    other = _refused(_config(tmp_path, {**flux_files, "text_encoders": f"[{files['clip_l']}, {files['flux_vae']}]"}))
    assert f"'{files['flux_vae']}' is not a text encoder ComfyUI recognises" in other
    assert "list its CLIP-L and T5-XXL files (ComfyUI's models/text_encoders)" in other


def test_a_vae_of_another_base_is_refused(files, tmp_path):
    cfg = _config(tmp_path, {"diffusion_model": files["sd15"], "text_encoders": f"[{files['clip_l']}]",
                             "vae": files["flux_vae"]})
    message = _refused(cfg, ("vae",))
    assert f"model.vae: '{files['flux_vae']}' is a VAE of 16-channel latents, but SD1.5 denoises 4-channel" in message


def test_a_missing_file_or_a_missing_part_the_command_needs_is_named(files, tmp_path):
    gone = tmp_path / "nowhere" / "t5xxl_fp16.safetensors"
    message = _refused(_config(tmp_path, {"diffusion_model": files["flux"], "text_encoders": f"[{files['clip_l']}, {gone}]"}))
    assert message == f"model.text_encoders '{gone}' does not exist; fix the path in the config (model section)."
    message = _refused(_config(tmp_path, {"diffusion_model": files["flux"]}), ("text_encoders", "vae"))
    assert message.startswith("model.text_encoders is not set, but this command encodes captions (prepare, ")
    assert "list FLUX.1's CLIP-L and T5-XXL files" in message
    message = _refused(_config(tmp_path, {"diffusion_model": files["sd15"], "text_encoders": f"[{files['clip_l']}]"}),
                       ("text_encoders", "vae"))
    assert message.startswith("model.vae is not set, but this command encodes or decodes images")


def test_the_config_takes_one_checkpoint_or_split_files(tmp_path):
    with pytest.raises(HyperLoRAError, match="model.checkpoint and model.diffusion_model are both set"):
        _config(tmp_path, {"checkpoint": "a.safetensors", "diffusion_model": "b.safetensors"})
    with pytest.raises(HyperLoRAError, match="model.text_encoders and model.vae belong to split files"):
        _config(tmp_path, {"checkpoint": "a.safetensors", "vae": "ae.safetensors"})
    with pytest.raises(HyperLoRAError, match=r"neither model.checkpoint \(one file\) nor model.diffusion_model"):
        _config(tmp_path, {"text_encoders": "[]"})
    with pytest.raises(HyperLoRAError, match="model.diffusion_model set, but backbone 'tiny' reads no split"):
        load_config(TINY_TRAIN_CONFIG, [f"run_dir={tmp_path}", "model.diffusion_model=b.safetensors"])
    cfg = _config(tmp_path, {"diffusion_model": "dm/flux.safetensors", "text_encoders": "[te/clip_l.safetensors]",
                             "vae": "vae/ae.safetensors"})
    folder = TINY_TRAIN_CONFIG.parent  # relative paths are the config file's
    assert cfg.model.diffusion_model == str((folder / "dm/flux.safetensors").resolve())
    assert cfg.model.text_encoders == (str((folder / "te/clip_l.safetensors").resolve()),)
    assert cfg.model.vae == str((folder / "vae/ae.safetensors").resolve())
