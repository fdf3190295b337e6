"""End to end on CPU: photos -> prepare -> fit (all four stages) -> export -> the pack loads the export,
makes a LoRA from a photo, and that LoRA changes the tiny SDXL-architecture model's output."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from fixtures.training import TINY_TRAIN_CONFIG as TINY
from PIL import Image

from hyperlora_core.comfy_bridge.backbone import tiny_backbone
from hyperlora_core.comfy_bridge.clip_vision import ComfyClipEncoder
from hyperlora_core.comfy_bridge.diffusion import Denoiser
from hyperlora_core.comfy_bridge.lora_apply import apply_lora
from hyperlora_core.encode import encode_id
from hyperlora_core.errors import HyperLoRAError
from hyperlora_core.face.analyzer import FaceAnalyzer
from hyperlora_core.model import HyperLoRA
from hyperlora_core.standins.face_models import write_tiny_face_pack
from hyperlora_core.train.__main__ import main
from hyperlora_core.train.observe import read_losses
from hyperlora_core.train.prepare import REPORT

pytestmark = pytest.mark.usefixtures("one_thread")


def _photo(rng: np.random.Generator, tint: np.ndarray, size: int = 128) -> np.ndarray:
    """A dark textured scene with a bright square: the stand-in face pack's 'face'."""
    img = (rng.uniform(0, 0.25, (size, size, 3)) + 0.1 * tint) * 255
    x, y = rng.integers(20, 60), rng.integers(30, 50)
    img[y : y + 40, x : x + 40] = 200 + 55 * tint
    return np.clip(img, 0, 255).astype(np.uint8)


def _write_photos(folder: Path) -> None:
    rng = np.random.default_rng(0)
    for person in range(3):
        tint = rng.uniform(0, 1, 3)
        (folder / f"person{person}").mkdir(parents=True)
        for j in range(3):
            Image.fromarray(_photo(rng, tint)).save(folder / f"person{person}" / f"{j}.png")
        (folder / f"person{person}" / "0.txt").write_text("a photo of a person in a garden")
    Image.fromarray(np.full((128, 128, 3), 20, np.uint8)).save(folder / "person0" / "dark.png")  # no face
    group = np.zeros((512, 640, 3), np.uint8)  # two squares that fit the stand-in detector's windows exactly
    group[104:168, 56:120] = 255
    group[208:336, 400:528] = 255
    Image.fromarray(group).save(folder / "person1" / "group.png")
    (folder / "person2" / "broken.jpg").write_bytes(b"not an image")


@pytest.fixture(scope="module")
def face_pack(tmp_path_factory) -> Path:
    return write_tiny_face_pack(tmp_path_factory.mktemp("insightface") / "antelopev2")


def test_photos_to_published_export_to_lora(tmp_path, face_pack, capsys):
    _write_photos(tmp_path / "photos")
    sets = ["--set", f"run_dir={tmp_path / 'run'}", "--set", f"data.shards={tmp_path / 'data'}",
            "--set", "train.log.progress_bar=false", "--set", "train.optimizer.basis_lr=1.0e-2", "--set", "train.samples.steps=2",
            "--set", "stages={base: {steps: 3}, clip_id: {steps: 3}, arcface_id: {steps: 3}, distill: {steps: 2}}"]

    assert main(["prepare", "--config", str(TINY), "--input", str(tmp_path / "photos"), "--face-models", str(face_pack), *sets]) == 0
    out = capsys.readouterr().out
    report = json.loads((tmp_path / "data" / REPORT).read_text())
    assert report["kept"] == 9 and report["identities"] == 3
    reasons = {Path(s["photo"]).name: s["reason"] for s in report["skipped"]}
    assert reasons.keys() == {"dark.png", "group.png", "broken.jpg"}
    assert "no face" in reasons["dark.png"] and "2 faces" in reasons["group.png"] and "cannot be read" in reasons["broken.jpg"]
    assert "left out" in out and "group.png" in out

    assert main(["fit", "--config", str(TINY), *sets]) == 0
    for stage, steps in (("base", 3), ("clip_id", 3), ("arcface_id", 3), ("distill", 2)):
        assert [r["step"] for r in read_losses(tmp_path / "run" / stage)] == list(range(1, steps + 1))
        assert (tmp_path / "run" / stage / "samples" / f"step-{steps:08d}.png").is_file()
        assert list((tmp_path / "run" / "tensorboard" / stage).glob("events.out.tfevents.*"))
    grid = Image.open(tmp_path / "run" / "distill" / "samples" / "step-00000002.png")
    assert grid.size == (3 * 128, 2 * 128)  # reference + 2 prompts, 2 identities

    export = tmp_path / "export"
    assert main(["export", "--config", str(TINY), "--out", str(export), *sets]) == 0
    assert {p.name for p in export.iterdir()} == {"hyper_lora_modules.json", "hyper_lora_modules.safetensors",
                                                  "resampler.safetensors", "id_projector.safetensors",
                                                  "base_resampler.safetensors"}
    published = HyperLoRA.from_pretrained(export, dtype=torch.float32)
    single = HyperLoRA.from_pretrained(export.with_suffix(".safetensors"), dtype=torch.float32)
    trained = HyperLoRA.from_pretrained(tmp_path / "run" / "distill" / "final.safetensors")
    for (k, a), (_, b) in zip(published.state_dict().items(), trained.state_dict().items()):
        torch.testing.assert_close(a, b.float(), rtol=1e-3, atol=1e-3, msg=k)  # fp16 export
    for k, v in single.state_dict().items():
        assert torch.equal(v, published.state_dict()[k]), k

    bb = tiny_backbone(0)  # the pack's inference path: face analysis + CLIP vision -> LoRA
    analyzer = FaceAnalyzer.load(face_pack, providers="cpu")
    photo = np.asarray(Image.open(tmp_path / "photos" / "person0" / "1.png"))
    cond = encode_id([photo], analyzer, ComfyClipEncoder(bb.clip_vision))
    lora = published.generate_id_lora(cond.clip_tokens, cond.id_embeds)
    assert max(v.abs().max().item() for k, v in lora.items() if k.endswith("lora_up.weight")) > 0
    den = Denoiser(bb.unet)
    gen = torch.Generator().manual_seed(0)
    x, sigma = torch.randn(1, 4, 8, 8, generator=gen), den.sigmas[[400]]
    ctx = torch.randn(1, 77, 64, generator=gen)
    inputs = den.inputs({"context": ctx, "pooled": torch.randn(1, 32, generator=gen),
                         "sizes": torch.tensor([[64.0, 64, 0, 0, 64, 64]])})
    outs = []
    for mp in (bb.unet, apply_lora(bb.unet, lora, 1.0)):
        mp.patch_model()
        with torch.no_grad():
            outs.append(Denoiser(mp).denoise(x, sigma, inputs))
        mp.unpatch_model()
    assert (outs[0] - outs[1]).abs().max() > 1e-5


def test_prepare_with_no_usable_photo_writes_nothing(tmp_path, face_pack):
    (tmp_path / "photos").mkdir()
    Image.fromarray(np.full((96, 96, 3), 10, np.uint8)).save(tmp_path / "photos" / "dark.png")
    with pytest.raises(HyperLoRAError, match="none of the 1 photos is usable"):
        from hyperlora_core.train.config import load_config
        from hyperlora_core.train.prepare import prepare

        cfg = load_config(TINY, [f"run_dir={tmp_path / 'run'}", f"data.shards={tmp_path / 'data'}"])
        prepare(cfg, tmp_path / "photos", face_models=str(face_pack), backbone=tiny_backbone(0))
    assert not (tmp_path / "data" / "index.json").exists()
    assert json.loads((tmp_path / "data" / REPORT).read_text())["skipped"][0]["reason"] == "no face found"
