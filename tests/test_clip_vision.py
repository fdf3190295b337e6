"""CLIP vision through ComfyUI's loader: equal to transformers' `hidden_states[-2]` on our pixels.

One random full-size ViT-L/14 (ComfyUI's loader only recognises real shapes) is built per
session, saved in the published HF layout, run once through transformers for the reference,
then freed; ComfyUI loads it in fp32 (`dtype=torch.float32`, i.e. its `--fp32-text-enc` flag set
for the load only: ComfyUI would otherwise store CLIP vision in fp16, even on the CPU).
"""

from __future__ import annotations

import gc
import warnings

import comfy.cli_args
import numpy as np
import pytest
import torch
from skimage import data

from hyperlora_core.comfy_bridge.clip_vision import ComfyClipEncoder, load_clip_vision, resolve_clip_file
from hyperlora_core.encode import encode_id, prepare_id
from hyperlora_core.errors import HyperLoRAError
from hyperlora_core.face import FaceAnalyzer
from hyperlora_core.face.clip_pixels import clip_normalize
from hyperlora_core.safetensors_io import save_tensors_atomic
from hyperlora_core.standins import write_tiny_face_pack

VITL = dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16, image_size=224,
            patch_size=14, projection_dim=768, hidden_act="quick_gelu")  # fmt: skip


def _transformers():
    # The shared env's torchaudio was built for another torch; transformers imports it eagerly
    # (processing_utils -> audio_utils). Tell transformers it is absent; nothing here needs audio.
    import transformers.utils as tu
    import transformers.utils.import_utils as iu

    tu.is_torchaudio_available = iu.is_torchaudio_available = lambda: False
    import transformers

    return transformers


@pytest.fixture(scope="module")
def analyzer(tmp_path_factory) -> FaceAnalyzer:
    root = tmp_path_factory.mktemp("insightface")
    write_tiny_face_pack(root / "models" / "antelopev2")
    return FaceAnalyzer.load("antelopev2", roots=[root], providers="cpu")


@pytest.fixture(scope="session")
def vitl(tmp_path_factory):
    """(HF folder, reference pixels [1,224,224,3], transformers hidden_states[-2] for them)."""
    t = _transformers()
    folder = tmp_path_factory.mktemp("clip_vit") / "clip_vit_large_14"
    torch.manual_seed(0)
    model = t.CLIPVisionModelWithProjection(t.CLIPVisionConfig(**VITL)).eval()
    model.save_pretrained(folder)
    root = tmp_path_factory.mktemp("insightface_ref")
    write_tiny_face_pack(root / "models" / "antelopev2")
    ref_analyzer = FaceAnalyzer.load("antelopev2", roots=[root], providers="cpu")
    pixels = prepare_id([data.astronaut()], ref_analyzer).pixels
    with torch.no_grad():
        reference = model(clip_normalize(pixels), output_hidden_states=True).hidden_states[-2]
    del model
    gc.collect()
    return folder, pixels, reference


@pytest.fixture(scope="module")
def clip_vision(vitl):
    model = load_clip_vision(vitl[0], dtype=torch.float32)
    yield model
    del model
    gc.collect()


def test_comfy_loader_equals_transformers_penultimate(vitl, clip_vision, analyzer):
    folder, pixels, reference = vitl
    assert clip_vision.model.vision_model.embeddings.class_embedding.dtype == torch.float32
    assert not comfy.cli_args.args.fp32_text_enc  # the flag was only set during the load
    # the whole ID path with ComfyUI's CLIP_VISION wrapped as the nodes wrap it
    cond = encode_id([data.astronaut()], analyzer, ComfyClipEncoder(clip_vision))
    assert cond.clip_tokens.shape == (1, 257, 1024)
    torch.testing.assert_close(cond.clip_tokens, reference.float(), atol=1e-4, rtol=0)
    with pytest.raises(HyperLoRAError, match="wrap it as hyperlora_core.comfy_bridge.clip_vision.ComfyClipEncoder"):
        encode_id([data.astronaut()], analyzer, clip_vision)  # the core never reaches into the bridge itself


def test_dtype_flags_are_restored_after_the_load_even_on_error():
    """ComfyUI reads its text/vision-encoder dtype flags globally: a load with a dtype sets one only
    for its own duration and puts every flag back as it was, also when the load fails."""
    from hyperlora_core.comfy_bridge.clip_vision import _DTYPE_FLAGS, _text_encoder_dtype

    args = comfy.cli_args.args
    before = {name: getattr(args, name, False) for name in _DTYPE_FLAGS}
    args.fp16_text_enc = True  # as if the user started ComfyUI with --fp16-text-enc
    try:
        with pytest.raises(RuntimeError, match="load failed"), _text_encoder_dtype(torch.bfloat16):
            assert args.bf16_text_enc and not args.fp16_text_enc and not args.fp32_text_enc
            raise RuntimeError("load failed")
        assert args.fp16_text_enc and not args.bf16_text_enc and not args.fp32_text_enc
        with pytest.raises(HyperLoRAError, match="not supported"), _text_encoder_dtype(torch.float64):
            pass
        assert args.fp16_text_enc
    finally:
        for name, value in before.items():
            setattr(args, name, value)


def test_encoder_input_checks(clip_vision):
    enc = ComfyClipEncoder(clip_vision)
    assert enc.image_size == 224
    with pytest.raises(HyperLoRAError, match=r"CLIP input must be uint8 \[N, 224, 224, 3\]"):
        enc(np.zeros((1, 256, 256, 3), np.uint8))
    with pytest.raises(HyperLoRAError, match="expected ComfyUI's CLIP_VISION"):
        ComfyClipEncoder(object())


def test_clip_file_errors(tmp_path, vitl):
    assert resolve_clip_file(vitl[0]) == vitl[0] / "model.safetensors"
    assert resolve_clip_file(vitl[0] / "model.safetensors") == vitl[0] / "model.safetensors"
    with pytest.raises(HyperLoRAError, match="not found"):
        resolve_clip_file(tmp_path / "missing.safetensors")
    hf = tmp_path / "clip_folder"
    hf.mkdir()
    (hf / "pytorch_model.bin").write_bytes(b"x")
    with pytest.raises(HyperLoRAError, match="has no model.safetensors.*Pickle files"):
        resolve_clip_file(hf)
    with pytest.raises(HyperLoRAError, match="only .safetensors CLIP vision files"):
        resolve_clip_file(hf / "pytorch_model.bin")
    pointer = tmp_path / "pointer.safetensors"
    pointer.write_text("version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 1215912728\n")
    with pytest.raises(HyperLoRAError, match="Git-LFS pointer"):
        resolve_clip_file(pointer)
    other = tmp_path / "not_clip.safetensors"
    save_tensors_atomic({"weight": torch.zeros(2, 2)}, other)
    with pytest.raises(HyperLoRAError, match="not a CLIP vision model ComfyUI recognises"):
        load_clip_vision(other, dtype=torch.float32)
    assert not comfy.cli_args.args.fp32_text_enc
    with pytest.raises(HyperLoRAError, match="dtype"):
        load_clip_vision(vitl[0], dtype=torch.int8)


def test_encoding_outside_the_executor_keeps_no_autograd_graph(clip_vision):
    """ComfyUI's executor runs nodes in inference mode; scripts and the Python API do not. ComfyUI's CLIP
    vision weights require grad, so an encode with grad on kept every activation alive (found on a GPU:
    6 GB per ViT-L/14 encode, never freed)."""

    def graph_tensors() -> int:
        gc.collect()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # probing every object touches deprecated module attributes
            return sum(1 for o in gc.get_objects() if isinstance(o, torch.Tensor) and o.grad_fn is not None)

    encoder = ComfyClipEncoder(clip_vision)
    pixels = np.random.default_rng(0).integers(0, 256, (2, encoder.image_size, encoder.image_size, 3), dtype=np.uint8)
    assert torch.is_grad_enabled()
    before = graph_tensors()
    tokens = encoder(pixels)
    assert tokens.grad_fn is None and not tokens.requires_grad
    assert graph_tensors() == before
