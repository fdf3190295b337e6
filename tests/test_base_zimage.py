"""The Z-Image profile (`comfy_bridge/bases/zimage.py`) on the real host: Z-Image-Turbo at full size on `meta`,
and tiny random NextDiT transformers and Qwen3 text encoders built from ComfyUI's own classes (CPU).

What each test guards: detection (ZImage yes, plain Lumina2 no); the target sets and basis sizes the profile's
docstring states; Generate -> Apply changing exactly the target weights, fused `qkv` included; ComfyUI's stock
LoraLoaderModelOnly reading our saved LoRA to the same weights; the conditioning Qwen3 gives; the flow schedule
with shift 3; the trainer's sampler against the KSampler node; a short fit whose loss falls; LoRA gradients
through NextDiT; prepare -> fit -> export; the error naming both bases. Two gloo processes (DDP, FSDP2)
against one and SIGKILL + resume: tests/test_bases_training.py, for every base. Nothing here needed a change outside `bases/zimage.py` and its registry entry.
"""

from __future__ import annotations

from pathlib import Path

import comfy.model_detection
import comfy.supported_models
import numpy as np
import pytest
import torch
from fixtures.bases import base_hyperlora, id_lora, in_out, tiny_model
from fixtures.training import TINY_TRAIN_CONFIG
from PIL import Image

from hyperlora_core import HyperLoRA, HyperLoRAError
from hyperlora_core.comfy_bridge import unet_lora_key_map
from hyperlora_core.comfy_bridge.backbone import tiny_backbone
from hyperlora_core.comfy_bridge.bases import profile_named, profile_of
from hyperlora_core.comfy_bridge.bases import unet as unet_bases
from hyperlora_core.comfy_bridge.bases.zimage import CAPTION_TOKENS, TINY_TEXT_WIDTH, UNET_CONFIG
from hyperlora_core.comfy_bridge.diffusion import Denoiser, euler_sample, ksample, ksampler_noise
from hyperlora_core.comfy_bridge.lora_hooks import LoRASet, attach_lora_hooks, deactivate, layer_module_paths
from hyperlora_core.comfy_bridge.random_init import init_weights
from hyperlora_core.lora import lora_file, lora_modules
from hyperlora_core.standins.face_models import write_tiny_face_pack
from hyperlora_core.train.__main__ import main
from hyperlora_core.train.config import load_config
from hyperlora_core.train.fit import close_session, open_session
from hyperlora_core.train.objective import HyperStep, StepRunner
from hyperlora_core.train.setup import hyper_config, new_hyperlora, set_trainable
from hyperlora_core.train.shards import ShardDataset
from hyperlora_core.train.synthetic import write_synthetic_dataset

pytestmark = pytest.mark.usefixtures("one_thread")

ROOT = Path(__file__).resolve().parents[1]

ZIMAGE = profile_named("zimage")
KR = 128 * 8
"""Basis numbers per unit of (in + out) at the published K 128, rank 8."""


@pytest.fixture(scope="module")
def tiny():
    return tiny_model("zimage")


def test_zimage_turbo_at_full_size_is_recognised_and_its_target_sets_have_the_stated_sizes():
    full = ZIMAGE.build(device="meta")
    assert profile_of(full) is ZIMAGE
    weights = full.model.diffusion_model.state_dict()  # shapes only (meta): what ComfyUI's loader detects from
    assert comfy.model_detection.detect_unet_config(weights, "") == UNET_CONFIG
    assert type(comfy.model_detection.model_config_from_unet_config(UNET_CONFIG, weights)) is comfy.supported_models.ZImage
    assert sum(p.numel() for p in full.model.diffusion_model.parameters()) == pytest.approx(6.15e9, rel=0.01)
    assert float(full.model.model_sampling.shift) == 3.0 and full.model.model_type.name == "FLOW"
    key_map = unet_lora_key_map(full)
    sizes = {}
    for name in ZIMAGE.target_sets:
        specs = ZIMAGE.module_specs(full, [name])
        names = [n for s in specs for n in s.layer_names()]
        assert len(names) == len(set(names)) and set(names) <= set(key_map), name  # ComfyUI's key map has each
        assert all(key_map[n].endswith(".weight") for n in names)  # the whole (fused) weight, no slice
        sizes[name] = (len(names), in_out(specs))
    # the table in bases/zimage.py's docstring
    assert sizes == {"attention": (60, 691_200), "attention_refiner": (64, 737_280), "attention_mlp": (150, 1_958_400)}
    assert ZIMAGE.module_specs(full) == ZIMAGE.module_specs(full, ["attention"])  # the default set
    widths = {x.suffix: (x.in_features, x.out_features) for s in ZIMAGE.module_specs(full, ["attention_mlp"])
              for x in s.layers}
    assert widths == {"qkv": (3840, 3 * 3840), "out": (3840, 3840), "w1": (3840, 10240), "w2": (10240, 3840),
                      "w3": (3840, 10240)}
    sdxl = profile_named("sdxl")
    sdxl_basis = in_out(sdxl.module_specs(sdxl.build(device="meta"))) * KR
    assert sdxl_basis == 1_486_356_480  # the published ID basis (560 layers)
    assert sizes["attention"][1] * KR == 707_788_800 and sizes["attention_mlp"][1] * KR <= 2 * sdxl_basis


def test_zimage_yaml_builds_the_hypernetwork_its_memory_plan_counts():
    """configs/zimage.yaml's comment derives its memory plan from these sizes."""
    cfg = load_config(TINY_TRAIN_CONFIG.parent / "zimage.yaml")
    assert cfg.model.base == "zimage" and cfg.lora.targets == ("attention",)
    specs = ZIMAGE.module_specs(ZIMAGE.build(device="meta"), cfg.lora.targets)
    with torch.device("meta"):
        hl = HyperLoRA(hyper_config(cfg, specs, 1024, "zimage"))
    parts: dict[str, int] = {}
    for name, p in hl.named_parameters():
        parts[name.split(".")[0]] = parts.get(name.split(".")[0], 0) + p.numel()
    assert parts["id_basis"] == 691_200 * KR and parts["base_basis"] == 691_200 * KR // 2
    assert sum(parts.values()) == pytest.approx(1.204e9, rel=1e-3)
    trained_in_id_stages = parts["id_basis"] + parts["resampler"] + parts["id_projector"]
    assert trained_in_id_stages == pytest.approx(0.790e9, rel=1e-3)
    assert parts["base_basis"] + parts["base_resampler"] == pytest.approx(0.414e9, rel=1e-3)


def test_lumina2_is_refused_by_name():
    """Lumina Image 2.0 (width 2304, Gemma-2 text encoder) shares ZImage's parent class, not its profile."""
    model = unet_bases.build_unet(comfy.supported_models.Lumina2, {**ZIMAGE.tiny_config(), "z_image_modulation": False},
                                  device="meta")
    assert isinstance(model.model.model_config, comfy.supported_models.Lumina2)
    with pytest.raises(HyperLoRAError, match=r"a Lumina2 model, which HyperLoRA does not support; it works with .*"
                                             r"Z-Image \('zimage'\)"):
        profile_of(model)


def test_target_sets_are_data_on_the_tiny_model(tiny):
    _, model = tiny  # 2 noise refiners, 2 joint layers
    layers = {name: [n for s in ZIMAGE.module_specs(model, [name]) for n in s.layer_names()]
              for name in ZIMAGE.target_sets}
    assert layers["attention"] == [f"lora_unet_layers_{i}_attention_{p}" for i in range(2) for p in ("qkv", "out")]
    assert layers["attention_refiner"] == [f"lora_unet_noise_refiner_{i}_attention_{p}" for i in range(2)
                                           for p in ("qkv", "out")] + layers["attention"]
    assert len(layers["attention_mlp"]) == 2 * 5
    refiner = ZIMAGE.module_specs(model, [r"_context_refiner_"])  # not a candidate: the text-only blocks
    assert refiner == []
    with pytest.raises(HyperLoRAError, match=r"'qkv\[' is neither a target set of Z-Image"):
        ZIMAGE.module_specs(model, ["qkv["])


def test_its_targets_and_file_names_are_the_profiles(tiny):
    """What tests/test_bases.py checks on every base (Apply changes exactly the targets, ComfyUI's loader agrees,
    the cross-base error), plus this base's own facts: the fused qkv are among the 4 patched weights, and the
    saved file carries its kohya and model-spec names."""
    profile, model = tiny
    lora = id_lora(base_hyperlora(profile, model))
    key_map = unet_lora_key_map(model)
    targets = {key_map[name] for name in lora_modules(lora)}
    assert len(targets) == 4 and {k.split(".")[-2] for k in targets} == {"qkv", "out"}
    _, meta = lora_file(lora, torch.float32, {}, base_metadata=profile.kohya_metadata())
    assert meta["ss_base_model_version"] == "zimage" and meta["modelspec.architecture"] == "z-image-turbo/lora"
    assert meta["hyperlora.base"] == "zimage"


def test_text_conditioning_is_what_qwen3_gives_and_drives_the_model(tiny):
    _, model = tiny
    clip = ZIMAGE.tiny_clip()
    init_weights(clip.cond_stage_model, seed=1)
    cond = ZIMAGE.text_conditioning(clip, ["a photo of a person", "a person at the beach"])
    assert set(cond) == set(ZIMAGE.text_keys) == {"context"}
    assert cond["context"].shape == (2, CAPTION_TOKENS, TINY_TEXT_WIDTH)
    features = clip.encode_from_tokens(clip.tokenize("a person at the beach"))  # CLIPTextEncode's tensor
    n = features.shape[1]
    assert 5 < n < CAPTION_TOKENS  # the chat template's tokens + the caption's
    torch.testing.assert_close(cond["context"][1, :n], features[0].float(), rtol=0, atol=0)
    assert torch.equal(cond["context"][1, n:], torch.zeros(CAPTION_TOKENS - n, TINY_TEXT_WIDTH))
    den = Denoiser(model)
    assert den.context_dim == TINY_TEXT_WIDTH
    x = torch.randn(2, 16, 8, 8, generator=torch.Generator().manual_seed(0))
    sigma = den.sigmas[[500, 500]]
    out = den.denoise(x, sigma, den.inputs(cond))
    assert out.shape == x.shape and torch.isfinite(out).all()
    other = den.denoise(x, sigma, den.inputs({"context": cond["context"].flip(0)}))
    assert not torch.allclose(out, other)  # the caption is read


def test_training_timesteps_are_the_flow_schedule_with_shift_3(tiny):
    """ZImage's `sampling_settings` (shift 3, multiplier 1): the trainer's 1000 sigmas are 3t / (1 + 2t) at
    t = 1/1000 .. 1, the last pure noise."""
    _, model = tiny
    den = Denoiser(model)
    t = torch.arange(1, 1001, dtype=torch.float64) / 1000
    torch.testing.assert_close(den.sigmas.double(), 3 * t / (1 + 2 * t), rtol=1e-6, atol=1e-7)
    assert float(den.sigmas[499]) == pytest.approx(0.75, rel=1e-5)  # the middle timestep: shift 3, not FLUX's 1.15
    x0, noise = torch.ones(1, 16, 8, 8), torch.zeros(1, 16, 8, 8)
    assert torch.equal(den.noisy(den.sigmas[-1:], noise, x0), noise)  # CONST: x = sigma * noise + (1 - sigma) * x0


@pytest.mark.parametrize("cfg", [1.0, 2.0])
def test_the_trainers_sampler_on_zimage_is_ksamplers_euler_simple(tiny, cfg):
    """The sample grids' `euler_sample` = the KSampler node (euler, `simple`, Z-Image's flow sampling) fed the
    same caption features (Lumina2's `extra_conds` turns a CONDITIONING tensor into context + num_tokens)."""
    _, model = tiny
    clip = ZIMAGE.tiny_clip()
    init_weights(clip.cond_stage_model, seed=1)
    pos, neg = (ZIMAGE.text_conditioning(clip, [t]) for t in ("a photo of a person", ""))
    latent = torch.zeros(1, 16, 8, 8)
    theirs = ksample(model, [[pos["context"], {}]], [[neg["context"], {}]], latent, seed=0, steps=4, cfg=cfg,
                     scheduler=ZIMAGE.scheduler)
    den = Denoiser(model)
    model.patch_model()
    try:
        ours = den.latent_out(euler_sample(den, ksampler_noise(latent, 0), den.inputs(pos), den.inputs(neg),
                                           steps=4, cfg=cfg))
    finally:
        model.unpatch_model()
    assert torch.isfinite(ours).all() and ours.abs().max() > 0
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-5)


@pytest.fixture(scope="module")
def zimage_data(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("zimage_fit_data")
    write_synthetic_dataset(folder, tiny_backbone(0, base="zimage"), identities=4, photos=3)
    return folder


FITS = {
    ("attention",): (40, 0.9, 30),
    ("attention_refiner", "attention_mlp"): (16, 0.75, 10),
}
"""targets -> (AdamW steps at lr 2e-2 on one fixed batch, loss ratio last / first asked, steps that must fall).
Measured on the tiny Z-Image (2 joint layers, 2 noise refiners): the default set (the joint layers' attention,
4 LoRA layers here) falls to 0.74 of its start by step 40, falling at 38 of 39 steps, then flattens; with the
noise refiners' attention and the feed-forward (14 layers) it falls to 0.50 by step 16 (13 of 15)."""


@pytest.mark.parametrize("targets", list(FITS))
def test_flow_matching_loss_falls_on_a_fixed_batch(tmp_path, zimage_data, targets):
    steps, ratio, falls = FITS[targets]
    cfg = load_config(TINY_TRAIN_CONFIG, {
        "run_dir": str(tmp_path / "run"), "data": {"shards": str(zimage_data)}, "model": {"base": "zimage"},
        "lora": {"targets": list(targets)},
        "train": {"log": {"progress_bar": False}, "samples": {"every": -1},
                  "dropout": {"text": 0.0, "face": 0.0, "base_lora": 0.0}, "gradient_checkpointing": False},
    })
    session = open_session(cfg)
    try:
        assert session.backbone.profile is ZIMAGE and session.denoiser.model.model_type.name == "FLOW"
        assert session.config.base == "zimage"
        assert len(session.config.layer_names()) == {("attention",): 4}.get(targets, 14)
        model = new_hyperlora(session.config, seed=0)
        set_trainable(model, "arcface_id", cfg.trainable("arcface_id"))
        step = HyperStep(model)
        opt = torch.optim.AdamW([p for p in step.parameters() if p.requires_grad], lr=2e-2)
        runner = StepRunner("arcface_id", cfg, session.backbone, session.denoiser, session.hook_state, session.info.device)
        batch = session.source.batch("arcface_id", 0, with_base=True)
        losses = []
        for _ in range(steps):
            loss = runner.loss(step, batch)
            loss.backward()
            session.hook_state.clear()
            opt.step()
            opt.zero_grad()
            losses.append(loss.item())
    finally:
        close_session(session)
    assert losses[-1] < ratio * losses[0], losses
    assert sum(b < a for a, b in zip(losses, losses[1:])) >= falls, losses


@pytest.mark.parametrize("checkpointing", [False, True])
def test_lora_gradients_through_zimages_blocks_match_finite_differences(checkpointing):
    """In float64 the training hooks' gradient on every target layer (fused qkv included), through NextDiT's
    refiners and joint layers, with and without checkpointing, equals the loss's slope along a random direction."""
    model = ZIMAGE.build(ZIMAGE.tiny_config(), device="cpu", dtype=torch.float64)
    init_weights(model.model, seed=0, std=0.1)
    specs = ZIMAGE.module_specs(model, ["attention_refiner", "attention_mlp"])
    g = torch.Generator().manual_seed(0)
    shapes = [(x.in_features, x.out_features) for s in specs for x in s.layers]
    downs = [torch.randn(1, 2, i, generator=g, dtype=torch.float64) * 0.1 for i, _ in shapes]
    ups = [(torch.randn(1, o, 2, generator=g, dtype=torch.float64) * 0.1).requires_grad_() for _, o in shapes]
    x = torch.randn(1, 16, 8, 8, generator=g, dtype=torch.float64)
    inputs = ZIMAGE.model_inputs(model.model, {"context": torch.randn(1, 8, TINY_TEXT_WIDTH, generator=g,
                                                                      dtype=torch.float64)})
    sigma = torch.tensor([0.5], dtype=torch.float64)
    state = attach_lora_hooks(model, layer_module_paths(model, specs), "cpu", checkpointing)
    try:
        def loss(u: list[torch.Tensor]) -> torch.Tensor:
            state.sets = [LoRASet(downs, u, torch.ones(1, dtype=torch.float64))]
            return model.model.apply_model(x, sigma, **inputs).pow(2).sum()

        loss(ups).backward()
        direction = [torch.randn(u.shape, generator=g, dtype=torch.float64) for u in ups]
        slope = sum((u.grad * d).sum() for u, d in zip(ups, direction)).item()
        eps = 1e-3
        with torch.no_grad():
            plus = loss([u + eps * d for u, d in zip(ups, direction)]).item()
            minus = loss([u - eps * d for u, d in zip(ups, direction)]).item()
    finally:
        deactivate(model)
    assert len(ups) == 14 and all(u.grad is not None and u.grad.abs().sum() > 0 for u in ups)
    assert slope == pytest.approx((plus - minus) / (2 * eps), rel=1e-3)


def _write_photos(folder: Path) -> None:
    """Three people, two photos each: a dark textured scene with a bright square (the stand-in pack's face)."""
    rng = np.random.default_rng(0)
    for person in range(3):
        tint = rng.uniform(0, 1, 3)
        (folder / f"person{person}").mkdir(parents=True)
        for j in range(2):
            img = (rng.uniform(0, 0.25, (128, 128, 3)) + 0.1 * tint) * 255
            x, y = rng.integers(20, 60), rng.integers(30, 50)
            img[y : y + 40, x : x + 40] = 200 + 55 * tint
            Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(folder / f"person{person}" / f"{j}.png")


def test_prepare_fit_export_on_tiny_zimage(tmp_path):
    """The trainer's commands with `model.base: zimage`: prepare encodes captions with the tiny Qwen3 (128 tokens)
    and 16-channel latents, fit runs every stage and its sample grids, export writes a checkpoint that records
    Z-Image and makes Z-Image LoRAs."""
    face_pack = write_tiny_face_pack(tmp_path / "insightface" / "antelopev2")
    _write_photos(tmp_path / "photos")
    sets = ["--set", f"run_dir={tmp_path / 'run'}", "--set", f"data.shards={tmp_path / 'data'}",
            "--set", "model.base=zimage", "--set", "train.log.progress_bar=false", "--set", "train.samples.steps=2",
            "--set", "stages={base: {steps: 2}, clip_id: {steps: 2}, arcface_id: {steps: 2}, distill: {steps: 1}}"]
    assert main(["prepare", "--config", str(TINY_TRAIN_CONFIG), "--input", str(tmp_path / "photos"),
                 "--face-models", str(face_pack), *sets]) == 0
    data = ShardDataset(tmp_path / "data")
    assert data.base is ZIMAGE and data.text_keys == ("context",) and len(data.samples) == 6
    sample = data.load(0, with_base=False)
    assert sample["latent"].shape == (16, 8, 8) and sample["cond"]["context"].shape == (CAPTION_TOKENS, TINY_TEXT_WIDTH)
    assert main(["fit", "--config", str(TINY_TRAIN_CONFIG), *sets]) == 0
    assert (tmp_path / "run" / "distill" / "samples" / "step-00000001.png").is_file()
    assert main(["export", "--config", str(TINY_TRAIN_CONFIG), "--out", str(tmp_path / "export"), *sets]) == 0
    exported = HyperLoRA.from_pretrained(tmp_path / "export", dtype=torch.float32)
    assert exported.config.base == "zimage"
    assert exported.config.layer_names() == [n for s in ZIMAGE.module_specs(tiny_model("zimage")[1]) for n in s.layer_names()]
    g = torch.Generator().manual_seed(1)
    lora = exported.generate_id_lora(torch.randn(1, 50, 32, generator=g),
                                     torch.nn.functional.normalize(torch.randn(1, 512, generator=g), dim=-1))
    assert lora.base == "zimage" and len(lora_modules(lora)) == 4
